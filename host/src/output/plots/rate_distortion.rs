//! Rate–distortion: mean KLD and ΔPPL against bits per value on the wire, with the Pareto
//! frontier.

use std::path::Path;

use plotters::prelude::*;

use super::axes::{number, padded, SymLog, Ticked};
use super::figure::{chart_on, fail, figure, house_style, Area};
use super::style::{line, look, marker, Entry, Look, Sample, Shape};
use super::{bits_per_value, PlotError};
use crate::output::record::CodecRecord;

/// The Pareto frontier's dashed grey line.
const FRONTIER: Look = Look {
    colour: RGBColor(120, 120, 120),
    shape: Shape::Circle,
    dash: (6, 4),
};

/// One codec on the rate–distortion plot.
struct RatePoint {
    index: usize,
    bits: f64,
    kld: f64,
    delta_ppl: f64,
    delta_ci: (f64, f64),
}

/// Indices (into `points`) of the Pareto frontier: no other point has fewer or as many bits
/// and a lower value; in order of bits.
fn pareto(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[a].1.total_cmp(&points[b].1))
    });
    let mut best = f64::INFINITY;
    order
        .into_iter()
        .filter(|&i| {
            let keep = points[i].1 < best;
            best = best.min(points[i].1);
            keep
        })
        .collect()
}

/// Mean KLD and ΔPPL (with its paired 95% interval) against bits per value on the wire, one
/// marker per codec, the Pareto frontier dashed. Both y axes are symlog: identical codecs sit
/// on 0, and one bad codec does not flatten the rest.
pub fn rate_distortion(path: &Path, records: &[CodecRecord]) -> Result<(), PlotError> {
    figure(path, (1300, 540), 980, |panels, root| {
        let (left, right) = panels.split_horizontally(490);
        let points: Vec<RatePoint> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.failure.is_none())
            .filter_map(|(index, r)| {
                let d = r.divergence.as_ref()?;
                Some(RatePoint {
                    index,
                    bits: bits_per_value(r),
                    kld: d.kld.mean,
                    delta_ppl: d.paired.delta_ppl,
                    delta_ci: (d.paired.delta_ppl_ci95.lo, d.paired.delta_ppl_ci95.hi),
                })
            })
            .filter(|p| p.bits > 0.0)
            .collect();
        let log2_lo = points
            .iter()
            .map(|p| p.bits.log2())
            .fold(f64::INFINITY, f64::min);
        let log2_hi = points
            .iter()
            .map(|p| p.bits.log2())
            .fold(f64::NEG_INFINITY, f64::max);
        let (x_lo, x_hi) = if log2_lo.is_finite() {
            (log2_lo.floor() - 0.2, log2_hi.ceil() + 0.2)
        } else {
            (0.0, 5.0)
        };
        let x_ticks: Vec<f64> = (x_lo.ceil() as i32..=x_hi.floor() as i32)
            .map(f64::from)
            .collect();
        type Pick = fn(&RatePoint) -> (f64, Option<(f64, f64)>);
        let panels: [(&Area, &str, &str, Pick); 2] = [
            (
                &left,
                "Mean KLD (base ‖ codec)",
                "mean KLD (symlog)",
                |p| (p.kld, None),
            ),
            (
                &right,
                "ΔPPL with its 95% interval",
                "ΔPPL (symlog)",
                |p| (p.delta_ppl, Some(p.delta_ci)),
            ),
        ];
        for (area, title, y_desc, pick) in panels {
            let scale = SymLog::fitting(points.iter().map(|p| pick(p).0));
            let (y_lo, y_hi) = padded(
                points
                    .iter()
                    .flat_map(|p| {
                        let (v, ci) = pick(p);
                        let (lo, hi) = ci.unwrap_or((v, v));
                        [scale.to(v), scale.to(lo), scale.to(hi)]
                    })
                    .chain([0.0]),
            );
            let negative = points.iter().any(|p| {
                let (v, ci) = pick(p);
                v < 0.0 || ci.is_some_and(|(lo, _)| lo < 0.0)
            });
            let mut chart = chart_on(
                area,
                title,
                18,
                (44, 64),
                Ticked {
                    range: x_lo..x_hi,
                    ticks: x_ticks.clone(),
                },
                Ticked::symlog(scale, (y_lo, y_hi), negative),
            )?;
            house_style(&mut chart.configure_mesh())
                .x_desc("bits per value on the wire (log scale)")
                .y_desc(y_desc)
                .x_label_formatter(&|t| number(2f64.powf(*t)))
                .y_label_formatter(&|t| number(scale.from(*t)))
                .draw()
                .map_err(fail)?;
            let at = |bits: f64, v: f64| chart.backend_coord(&(bits.log2(), scale.to(v)));
            let values: Vec<(f64, f64)> = points.iter().map(|p| (p.bits, pick(p).0)).collect();
            let frontier: Vec<(i32, i32)> = pareto(&values)
                .into_iter()
                .map(|i| at(values[i].0, values[i].1))
                .collect();
            line(root, &frontier, FRONTIER, 1).map_err(fail)?;
            for p in &points {
                let (v, ci) = pick(p);
                if let Some((lo, hi)) = ci {
                    let bar = [at(p.bits, lo), at(p.bits, hi)];
                    root.draw(&PathElement::new(
                        bar.to_vec(),
                        look(p.index).colour.stroke_width(1),
                    ))
                    .map_err(fail)?;
                }
                marker(root, at(p.bits, v), look(p.index), 5).map_err(fail)?;
            }
        }
        let mut entries: Vec<Entry> = points
            .iter()
            .map(|p| {
                (
                    records[p.index].codec.clone(),
                    look(p.index),
                    Sample::Marker,
                )
            })
            .collect();
        entries.push(("Pareto frontier".into(), FRONTIER, Sample::Line));
        Ok(entries)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_keeps_points_no_cheaper_point_beats() {
        // (bits, distortion): 4 bits beats 4.5; 8 bits beats 16; 32 is worse than 8.
        let points = [
            (4.5, 0.3),
            (4.0, 0.2),
            (8.0, 0.01),
            (16.0, 0.02),
            (32.0, 0.01),
            (2.0, 1.0),
        ];
        assert_eq!(pareto(&points), vec![5, 1, 2]);
    }
}
