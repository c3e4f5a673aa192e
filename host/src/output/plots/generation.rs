//! The decode phase (`[generate]`): KL divergence from the uncompressed model at each
//! generated position, teacher-forced along its continuation, one line per codec.

use std::path::Path;

use super::axes::padded;
use super::figure::{chart_on, fail, figure, house_style};
use super::style::{look, marked_line, Sample};
use super::PlotError;
use crate::output::record::CodecRecord;

/// Mean KLD (teacher-forced) by generated position, for every codec with a `generation`
/// other than the uncompressed model.
pub fn kld_by_position(path: &Path, records: &[CodecRecord]) -> Result<(), PlotError> {
    figure(path, (1100, 500), 800, |plot, root| {
        let lines: Vec<(usize, Vec<(f64, f64)>)> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.codec_spec.is_none())
            .filter_map(|(i, r)| {
                let g = r.generation.as_ref()?;
                let points = g
                    .kld_forced_by_position
                    .iter()
                    .enumerate()
                    .map(|(p, &k)| (p as f64, k))
                    .collect();
                Some((i, points))
            })
            .collect();
        let x_max = lines
            .iter()
            .map(|(_, p)| p.len() as f64 - 1.0)
            .fold(1.0, f64::max);
        let (_, y_hi) = padded(
            lines
                .iter()
                .flat_map(|(_, p)| p.iter().map(|q| q.1))
                .chain([0.0]),
        );
        let mut chart = chart_on(
            plot,
            "KLD from the uncompressed model by generated position (teacher-forced)",
            18,
            (44, 80),
            0.0..x_max,
            0.0..y_hi,
        )?;
        house_style(&mut chart.configure_mesh())
            .x_desc("generated position")
            .y_desc("KLD (nats)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.3}"))
            .draw()
            .map_err(fail)?;
        let mut entries = Vec::new();
        for (i, points) in &lines {
            let look = look(*i);
            let pixels: Vec<(i32, i32)> = points.iter().map(|p| chart.backend_coord(p)).collect();
            marked_line(root, &pixels, look, (pixels.len() / 8).max(1), 4).map_err(fail)?;
            entries.push((records[*i].codec.clone(), look, Sample::LineAndMarker));
        }
        Ok(entries)
    })
}
