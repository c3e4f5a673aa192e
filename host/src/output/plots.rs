//! SVG plots of a finished run: running PPL per codec, rate–distortion, per-link bytes.

use std::path::{Path, PathBuf};

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

use super::record::CodecRecord;

#[derive(Debug, thiserror::Error)]
#[error("drawing `{path}`: {message}")]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

fn err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> PlotError + '_ {
    move |e| PlotError {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// `(tokens scored so far, running PPL)` from a codec's batch curve.
pub type Curve = Vec<(f64, f64)>;

pub fn read_curve(jsonl: &Path) -> Vec<(f64, f64)> {
    let Ok(text) = std::fs::read_to_string(jsonl) else {
        return Vec::new();
    };
    let mut scored = 0f64;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            scored += v["tokens_scored"].as_f64()?;
            Some((scored, v["running_ppl"].as_f64()?))
        })
        .collect()
}

fn color(i: usize) -> RGBColor {
    let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
    RGBColor(r, g, b)
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    }
}

/// Running perplexity against tokens scored, one line per codec (what the prototype's users
/// watched live).
pub fn ppl_curves(path: &Path, curves: &[(String, Curve)]) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let x_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let (y_lo, y_hi) = bounds(curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&root)
        .caption("Running perplexity", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, y_lo..y_hi)
        .map_err(err(path))?;
    chart
        .configure_mesh()
        .x_desc("tokens scored")
        .y_desc("PPL")
        .draw()
        .map_err(err(path))?;
    for (i, (label, curve)) in curves.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(curve.iter().copied(), c.stroke_width(2)))
            .map_err(err(path))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err(path))?;
    root.present().map_err(err(path))
}

/// ΔPPL and mean KLD against bytes per processed token (log scale), one point per codec.
pub fn rate_distortion(path: &Path, records: &[CodecRecord]) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (1000, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (left, right) = root.split_horizontally(500);
    let points: Vec<(String, f64, f64, f64)> = records
        .iter()
        .filter_map(|r| {
            let d = r.divergence.as_ref()?;
            Some((
                r.codec.clone(),
                r.traffic.bytes_per_processed_token,
                d.paired.delta_ppl,
                d.kld.mean,
            ))
        })
        .collect();
    let (x_lo, x_hi) = points
        .iter()
        .map(|p| p.1)
        .fold((f64::INFINITY, 0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (x_lo, x_hi) = if x_lo.is_finite() && x_lo > 0.0 {
        (x_lo / 1.5, x_hi * 1.5)
    } else {
        (1.0, 10.0)
    };
    for (area, title, pick) in [
        (&left, "ΔPPL vs bytes per token", 2usize),
        (&right, "mean KLD vs bytes per token", 3usize),
    ] {
        let value = |p: &(String, f64, f64, f64)| if pick == 2 { p.2 } else { p.3 };
        let (y_lo, y_hi) = bounds(points.iter().map(value).chain([0.0]));
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), y_lo..y_hi)
            .map_err(err(path))?;
        chart
            .configure_mesh()
            .x_desc("bytes per processed token (log scale)")
            .x_labels(5)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(err(path))?;
        for (i, p) in points.iter().enumerate() {
            let c = color(i);
            let (x, y) = (p.1, value(p));
            chart
                .draw_series(std::iter::once(Circle::new((x, y), 5, c.filled())))
                .map_err(err(path))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    p.0.clone(),
                    (x, y),
                    ("sans-serif", 12),
                )))
                .map_err(err(path))?;
        }
    }
    root.present().map_err(err(path))
}

/// Bytes per processed token at each link, grouped by codec.
pub fn link_bytes(path: &Path, records: &[CodecRecord]) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
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
    let mut chart = ChartBuilder::on(&root)
        .caption("Bytes per processed token at each link", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
        .map_err(err(path))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("B / processed token")
        .draw()
        .map_err(err(path))?;
    // Codec names under their groups, rotated so long labels fit.
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
            .map_err(err(path))?;
    }
    let width = 0.8 / links as f64;
    for (ci, r) in records.iter().enumerate() {
        for (li, l) in r.traffic.links.iter().enumerate() {
            let x0 = ci as f64 + 0.1 + li as f64 * width;
            let bar = Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.9, l.bytes_per_processed_token)],
                color(li).filled(),
            );
            chart.draw_series(std::iter::once(bar)).map_err(err(path))?;
        }
    }
    if let Some(first) = records.first() {
        for (li, l) in first.traffic.links.iter().enumerate() {
            let c = color(li);
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(err(path))?
                .label(l.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err(path))?;
    }
    root.present().map_err(err(path))
}

/// Draws the three plots at `files` (running PPL, rate–distortion, bytes per link).
pub fn write_all(
    files: &[PathBuf; 3],
    records: &[CodecRecord],
    curves: &[(String, Curve)],
) -> Result<(), PlotError> {
    ppl_curves(&files[0], curves)?;
    rate_distortion(&files[1], records)?;
    link_bytes(&files[2], records)
}
