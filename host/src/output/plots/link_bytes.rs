//! Bytes per processed token at each link, grouped by codec.

use std::path::Path;

use plotters::prelude::*;

use super::figure::{chart_on, fail, figure, house_style};
use super::style::{look, Entry, Sample, Shape, COLOURS};
use super::PlotError;
use crate::output::record::CodecRecord;

/// Bytes per processed token at each link, grouped by codec.
pub fn link_bytes(path: &Path, records: &[CodecRecord]) -> Result<(), PlotError> {
    figure(path, (1100, 500), 860, |plot, _| {
        let links = records
            .first()
            .map(|r| r.traffic.links.len())
            .unwrap_or(0)
            .max(1);
        let y_max = records
            .iter()
            .flat_map(|r| r.traffic.links.iter().map(|l| l.bytes_per_processed_token))
            .fold(1.0, f64::max)
            * 1.6; // headroom for the rotated codec names above the bars
        let n = records.len().max(1);
        let mut chart = chart_on(
            plot,
            "Bytes per processed token at each link",
            20,
            (20, 70),
            0.0..n as f64,
            0.0..y_max,
        )?;
        house_style(&mut chart.configure_mesh())
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("B / processed token")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(fail)?;
        // Codec names above their groups, rotated so long labels fit.
        let label_style = ("sans-serif", 12)
            .into_font()
            .transform(FontTransform::Rotate90);
        for (ci, r) in records.iter().enumerate() {
            chart
                .draw_series(std::iter::once(Text::new(
                    r.codec.clone(),
                    (ci as f64 + 0.45, y_max * 0.98),
                    label_style.clone(),
                )))
                .map_err(fail)?;
        }
        let width = 0.8 / links as f64;
        for (ci, r) in records.iter().enumerate() {
            for (li, l) in r.traffic.links.iter().enumerate() {
                let x0 = ci as f64 + 0.1 + li as f64 * width;
                let bar = Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, l.bytes_per_processed_token)],
                    COLOURS[li % COLOURS.len()].filled(),
                );
                chart.draw_series(std::iter::once(bar)).map_err(fail)?;
            }
        }
        let entries: Vec<Entry> = records
            .first()
            .map(|r| {
                r.traffic
                    .links
                    .iter()
                    .enumerate()
                    .map(|(li, l)| {
                        let mut look = look(li % COLOURS.len());
                        look.shape = Shape::Square;
                        (l.name.clone(), look, Sample::Marker)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(entries)
    })
}
