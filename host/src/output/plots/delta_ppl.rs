//! Running ΔPPL against the baseline, batch by batch, one line per codec.

use std::path::Path;

use plotters::prelude::*;

use super::axes::{number, padded, SymLog, Ticked};
use super::figure::{chart_on, fail, figure, house_style};
use super::style::{look, marked_line, Sample};
use super::{Curve, PlotError};
use crate::output::record::CodecRecord;

/// The record of the baseline (`none`), whose running PPL the curves are measured against.
fn baseline_index(records: &[CodecRecord]) -> Option<usize> {
    records.iter().position(|r| r.codec_spec.is_none())
}

/// Running ΔPPL (codec − baseline, batch by batch) against tokens scored, one line per
/// codec; the running PPL itself when the run has no baseline records.
pub fn delta_ppl_curves(
    path: &Path,
    records: &[CodecRecord],
    curves: &[Curve],
) -> Result<(), PlotError> {
    figure(path, (1100, 540), 800, |plot, root| {
        let base = baseline_index(records)
            .and_then(|b| curves.get(b))
            .filter(|c| !c.is_empty());
        let lines: Vec<(usize, Vec<(f64, f64)>)> = curves
            .iter()
            .enumerate()
            .filter(|(i, _)| base.is_none() || Some(*i) != baseline_index(records))
            .map(|(i, curve)| {
                let points = curve
                    .iter()
                    .filter_map(|p| match base {
                        Some(b) => {
                            let at_base = b.iter().find(|q| q.batch == p.batch)?;
                            Some((p.scored, p.ppl - at_base.ppl))
                        }
                        None => Some((p.scored, p.ppl)),
                    })
                    .collect();
                (i, points)
            })
            .collect();
        let x_max = lines
            .iter()
            .flat_map(|(_, c)| c.iter().map(|p| p.0))
            .fold(1.0, f64::max);
        let scale = SymLog::fitting(lines.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)));
        let (y_lo, y_hi) = padded(
            lines
                .iter()
                .flat_map(|(_, c)| c.iter().map(|p| scale.to(p.1)))
                .chain([0.0]),
        );
        let negative = lines.iter().flat_map(|(_, c)| c).any(|p| p.1 < 0.0);
        let (title, y_desc) = if base.is_some() {
            (
                "Running ΔPPL against the uncompressed model",
                "ΔPPL (symlog)",
            )
        } else {
            ("Running perplexity", "PPL (symlog)")
        };
        let mut chart = chart_on(
            plot,
            title,
            20,
            (44, 70),
            0.0..x_max * 1.02,
            Ticked::symlog(scale, (y_lo, y_hi), negative),
        )?;
        house_style(&mut chart.configure_mesh())
            .x_desc("tokens scored")
            .y_desc(y_desc)
            .x_labels(6)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|t| number(scale.from(*t)))
            .draw()
            .map_err(fail)?;
        if base.is_some() {
            let zero = [(0.0, 0.0), (x_max * 1.02, 0.0)];
            chart
                .draw_series(LineSeries::new(zero, BLACK.mix(0.5).stroke_width(1)))
                .map_err(fail)?;
        }
        let mut entries = Vec::new();
        for (i, points) in &lines {
            let look = look(*i);
            let pixels: Vec<(i32, i32)> = points
                .iter()
                .map(|&(x, y)| chart.backend_coord(&(x, scale.to(y))))
                .collect();
            // A few markers per line.
            marked_line(root, &pixels, look, (pixels.len() / 6).max(1), 4).map_err(fail)?;
            entries.push((records[*i].codec.clone(), look, Sample::LineAndMarker));
        }
        Ok(entries)
    })
}
