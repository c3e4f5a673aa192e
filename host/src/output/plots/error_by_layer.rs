//! The hidden state's error against the baseline layer by layer, the links marked.

use std::path::Path;

use plotters::prelude::*;

use super::axes::{number, Ticked};
use super::figure::{chart_on, fail, figure, house_style};
use super::style::{look, marked_line, Sample};
use super::PlotError;
use crate::output::record::CodecRecord;

/// The hidden state's mean relative L2 error against the baseline after each layer, from the
/// first link to the head, one line per codec on a log axis, the links as dashed verticals:
/// a step at a link is the error it injects, the slope after it whether the layers that follow
/// damp or amplify it. Codecs with no error anywhere (identity) are named in the legend only.
pub fn error_by_layer(path: &Path, records: &[CodecRecord]) -> Result<(), PlotError> {
    figure(path, (1100, 540), 800, |plot, root| {
        let curves: Vec<(usize, Vec<(f64, f64)>)> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.failure.is_none())
            .filter_map(|(i, r)| {
                let layers = r.divergence.as_ref()?.error_by_layer.as_ref()?;
                let points = layers
                    .depth
                    .iter()
                    .zip(&layers.relative_l2)
                    .map(|(&d, &v)| (d as f64, v))
                    .collect();
                Some((i, points))
            })
            .collect();
        let positive = || {
            curves
                .iter()
                .flat_map(|(_, c)| c.iter().map(|p| p.1))
                .filter(|v| *v > 0.0 && v.is_finite())
        };
        let (lo, hi) = (
            positive().fold(f64::INFINITY, f64::min),
            positive().fold(f64::NEG_INFINITY, f64::max),
        );
        let (y_lo, y_hi) = if lo <= hi {
            (
                lo.log10().floor(),
                hi.log10().ceil().max(lo.log10().floor() + 1.0),
            )
        } else {
            (-3.0, 0.0)
        };
        let depths = records
            .iter()
            .map(|r| r.plan.layer_to_node.len())
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut chart = chart_on(
            plot,
            "Hidden-state error against the uncompressed model, layer by layer",
            18,
            (44, 70),
            0.0..depths + 0.5,
            Ticked {
                range: y_lo..y_hi,
                ticks: (y_lo as i32..=y_hi as i32).map(f64::from).collect(),
            },
        )?;
        house_style(&mut chart.configure_mesh())
            .disable_x_mesh()
            .x_desc("layers run (a link at depth d sends the state after layer d − 1)")
            .y_desc("mean ‖h − h_base‖ / ‖h_base‖ (log)")
            .x_labels(12)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|t| number(10f64.powf(*t)))
            .draw()
            .map_err(fail)?;
        if let Some(r) = records.first() {
            for link in &r.plan.links {
                let x = link.depth() as f64;
                chart
                    .draw_series(DashedLineSeries::new(
                        [(x, y_lo), (x, y_hi)],
                        6,
                        4,
                        BLACK.mix(0.55).stroke_width(1),
                    ))
                    .map_err(fail)?;
                // The link's name beside its line, reading downwards from the top.
                let (px, py) = chart.backend_coord(&(x, y_hi));
                root.draw(&Text::new(
                    link.name.clone(),
                    (px + 14, py + 4),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&BLACK.mix(0.7))
                        .transform(FontTransform::Rotate90),
                ))
                .map_err(fail)?;
            }
        }
        let mut entries = Vec::new();
        for (i, points) in &curves {
            let look = look(*i);
            let pixels: Vec<(i32, i32)> = points
                .iter()
                .filter(|p| p.1 > 0.0)
                .map(|&(x, y)| chart.backend_coord(&(x, y.log10())))
                .collect();
            let label = if pixels.is_empty() {
                format!("{} (0 at every depth)", records[*i].codec)
            } else {
                records[*i].codec.clone()
            };
            // A marker at every depth.
            marked_line(root, &pixels, look, 1, 3).map_err(fail)?;
            entries.push((label, look, Sample::LineAndMarker));
        }
        Ok(entries)
    })
}
