//! SVG plots of a finished run, drawn to be read in a paper: running ΔPPL against the
//! baseline, rate–distortion (KLD and ΔPPL against bits per value, with the Pareto frontier),
//! bytes per link, the hidden state's error layer by layer. A codec keeps one look (colour-blind-safe colour, marker, dash) in every
//! plot, and the legend sits beside the axes, never on the data.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::Shift;
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

/// One batch of a codec's live curve: `(batch, tokens scored so far, running PPL)`.
pub type Curve = Vec<(u64, f64, f64)>;

pub fn read_curve(jsonl: &Path) -> Curve {
    let Ok(text) = std::fs::read_to_string(jsonl) else {
        return Vec::new();
    };
    let mut scored = 0f64;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            scored += v["tokens_scored"].as_f64()?;
            Some((v["batch"].as_u64()?, scored, v["running_ppl"].as_f64()?))
        })
        .collect()
}

/// Okabe & Ito's colour-blind-safe palette, without its yellow (unreadable on white).
const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(86, 180, 233),
    RGBColor(204, 121, 167),
    RGBColor(0, 0, 0),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
}

const SHAPES: [Shape; 5] = [
    Shape::Circle,
    Shape::Square,
    Shape::Triangle,
    Shape::Diamond,
    Shape::Cross,
];

/// Dash length and gap in pixels; 0 is a solid line.
const DASHES: [(u32, u32); 5] = [(0, 0), (9, 4), (3, 3), (16, 5), (6, 2)];

/// How codec `index` of a run is drawn: 35 codecs before a look repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Look {
    colour: RGBColor,
    shape: Shape,
    dash: (u32, u32),
}

fn look(index: usize) -> Look {
    let round = (index / COLOURS.len()) % SHAPES.len();
    Look {
        colour: COLOURS[index % COLOURS.len()],
        shape: SHAPES[round],
        dash: DASHES[round],
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// A marker centred on `at` (pixels of the whole figure).
fn marker(root: &Area, at: (i32, i32), look: Look, r: i32) -> Drawn {
    let (x, y) = at;
    let fill = look.colour.filled();
    match look.shape {
        Shape::Circle => root.draw(&Circle::new(at, r, fill)),
        Shape::Square => root.draw(&Rectangle::new([(x - r, y - r), (x + r, y + r)], fill)),
        Shape::Triangle => root.draw(&Polygon::new(
            vec![(x, y - r - 1), (x + r + 1, y + r), (x - r - 1, y + r)],
            fill,
        )),
        Shape::Diamond => root.draw(&Polygon::new(
            vec![
                (x, y - r - 1),
                (x + r + 1, y),
                (x, y + r + 1),
                (x - r - 1, y),
            ],
            fill,
        )),
        Shape::Cross => {
            let s = look.colour.stroke_width(3);
            root.draw(&PathElement::new(vec![(x - r, y - r), (x + r, y + r)], s))
                .and_then(|_| root.draw(&PathElement::new(vec![(x - r, y + r), (x + r, y - r)], s)))
        }
    }
}

/// A line in pixels, solid or dashed as the look says.
fn line(root: &Area, points: &[(i32, i32)], look: Look, width: u32) -> Drawn {
    let style = look.colour.stroke_width(width);
    if look.dash.0 == 0 {
        return root.draw(&PathElement::new(points.to_vec(), style));
    }
    let dashes = DashedLineSeries::new(
        points.iter().copied(),
        look.dash.0 as i32,
        look.dash.1 as i32,
        style,
    );
    dashes.into_iter().try_for_each(|d| root.draw(&d))
}

/// What a legend row shows of a look.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sample {
    Marker,
    Line,
    LineAndMarker,
}

/// The legend, in columns on its own area: one row per entry, its sample and label.
fn legend(key: &Area, entries: &[(String, Look, Sample)]) -> Drawn {
    let (w, h) = key.dim_in_pixel();
    let row = 17;
    let rows = ((h as i32 - 40) / row).max(1) as usize;
    let columns = entries.len().div_ceil(rows).max(1);
    let column_width = w as i32 / columns as i32;
    let font = ("sans-serif", 12).into_font();
    for (i, (label, look, sample)) in entries.iter().enumerate() {
        let x = 6 + (i / rows) as i32 * column_width;
        let y = 40 + (i % rows) as i32 * row;
        if *sample != Sample::Marker {
            line(key, &[(x, y), (x + 26, y)], *look, 2)?;
        }
        if *sample != Sample::Line {
            marker(key, (x + 13, y), *look, 4)?;
        }
        let room = ((column_width - 40) / 7).max(4) as usize;
        let text = if label.chars().count() > room {
            format!("{}…", label.chars().take(room - 1).collect::<String>())
        } else {
            label.clone()
        };
        key.draw(&Text::new(text, (x + 34, y - 7), font.clone()))?;
    }
    Ok(())
}

/// A symmetric log axis (matplotlib's symlog): linear within ±`c` of 0, logarithmic beyond,
/// so zero, tiny and huge differences of either sign share one readable axis.
#[derive(Debug, Clone, Copy)]
struct SymLog {
    c: f64,
}

impl SymLog {
    /// `c` a power of ten at or below the smallest non-zero magnitude.
    fn fitting(values: impl Iterator<Item = f64>) -> SymLog {
        let smallest = values
            .filter(|v| v.is_finite() && *v != 0.0)
            .map(f64::abs)
            .fold(f64::INFINITY, f64::min);
        let c = if smallest.is_finite() {
            10f64.powf(smallest.log10().floor()).clamp(1e-9, 1.0)
        } else {
            1e-3
        };
        SymLog { c }
    }

    fn to(self, v: f64) -> f64 {
        v.signum() * (1.0 + v.abs() / self.c).log10()
    }

    fn from(self, t: f64) -> f64 {
        t.signum() * self.c * (10f64.powf(t.abs()) - 1.0)
    }

    /// Ticks at 0 and ±c·10^k inside `lo..hi` (axis units), thinned to at most 8.
    fn ticks(self, lo: f64, hi: f64) -> Vec<f64> {
        let mut magnitudes = Vec::new();
        let mut m = self.c;
        while self.to(m) <= hi.abs().max(lo.abs()) {
            magnitudes.push(m);
            m *= 10.0;
        }
        let step = magnitudes.len().div_ceil(4).max(1);
        let kept: Vec<f64> = magnitudes.into_iter().rev().step_by(step).collect();
        let mut ticks: Vec<f64> = std::iter::once(0.0)
            .chain(kept.iter().map(|&m| self.to(m)))
            .chain(kept.iter().map(|&m| -self.to(m)))
            .filter(|t| (lo..=hi).contains(t))
            .collect();
        ticks.sort_by(f64::total_cmp);
        ticks
    }
}

/// A linear axis with the ticks given (plotters' own f64 axis picks its own and has no
/// default formatting to go with chosen ticks).
struct Ticked {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let share = (v - self.range.start) / (self.range.end - self.range.start);
        limit.0 + (f64::from(limit.1 - limit.0) * share).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for Ticked {
    fn format(value: &f64) -> String {
        number(*value)
    }
}

/// A tick label: `0`, `0.01`, `10`, `1e-5`.
fn number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if (0.01..10_000.0).contains(&v.abs()) {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.0e}")
    }
}

/// Ticks for an axis whose padded range is `lo..hi`: below 0 only when a value is.
fn symlog_ticks(scale: SymLog, (lo, hi): (f64, f64), values_below_zero: bool) -> Vec<f64> {
    scale.ticks(if values_below_zero { lo } else { 0.0 }, hi)
}

/// `lo..hi` padded by 6% of its span (a point's width when the span is 0).
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (-1.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = (hi - lo) * 0.06;
        (lo - pad, hi + pad)
    }
}

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
    let e = err(path);
    let root = SVGBackend::new(path, (1100, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let (plot, key) = root.split_horizontally(800);
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
                .filter_map(|&(batch, scored, ppl)| match base {
                    Some(b) => {
                        let (_, _, b_ppl) = b.iter().find(|p| p.0 == batch)?;
                        Some((scored, ppl - b_ppl))
                    }
                    None => Some((scored, ppl)),
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
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0.0..x_max * 1.02,
            Ticked {
                range: y_lo..y_hi,
                ticks: symlog_ticks(scale, (y_lo, y_hi), negative),
            },
        )
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("tokens scored")
        .y_desc(y_desc)
        .x_labels(6)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|t| number(scale.from(*t)))
        .light_line_style(WHITE)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(&e)?;
    if base.is_some() {
        let zero = [(0.0, 0.0), (x_max * 1.02, 0.0)];
        chart
            .draw_series(LineSeries::new(zero, BLACK.mix(0.5).stroke_width(1)))
            .map_err(&e)?;
    }
    let mut entries = Vec::new();
    for (i, points) in &lines {
        let look = look(*i);
        let pixels: Vec<(i32, i32)> = points
            .iter()
            .map(|&(x, y)| chart.backend_coord(&(x, scale.to(y))))
            .collect();
        line(&root, &pixels, look, 2).map_err(&e)?;
        // A few markers per line, so lines of one colour are told apart in grey print too.
        let every = (pixels.len() / 6).max(1);
        for &p in pixels.iter().skip(every / 2).step_by(every) {
            marker(&root, p, look, 4).map_err(&e)?;
        }
        entries.push((records[*i].codec.clone(), look, Sample::LineAndMarker));
    }
    legend(&key, &entries).map_err(&e)?;
    root.present().map_err(&e)
}

/// Bits per value on the wire: bytes over elements sent, over every link.
pub fn bits_per_value(r: &CodecRecord) -> f64 {
    let t = &r.traffic.total;
    8.0 * t.bytes as f64 / t.elements.max(1) as f64
}

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
    let e = err(path);
    let root = SVGBackend::new(path, (1300, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let (panels, key) = root.split_horizontally(980);
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
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(
                Ticked {
                    range: x_lo..x_hi,
                    ticks: x_ticks.clone(),
                },
                Ticked {
                    range: y_lo..y_hi,
                    ticks: symlog_ticks(scale, (y_lo, y_hi), negative),
                },
            )
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc("bits per value on the wire (log scale)")
            .y_desc(y_desc)
            .x_label_formatter(&|t| number(2f64.powf(*t)))
            .y_label_formatter(&|t| number(scale.from(*t)))
            .light_line_style(WHITE)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(&e)?;
        let at = |bits: f64, v: f64| chart.backend_coord(&(bits.log2(), scale.to(v)));
        let values: Vec<(f64, f64)> = points.iter().map(|p| (p.bits, pick(p).0)).collect();
        let frontier: Vec<(i32, i32)> = pareto(&values)
            .into_iter()
            .map(|i| at(values[i].0, values[i].1))
            .collect();
        line(&root, &frontier, FRONTIER, 1).map_err(&e)?;
        for p in &points {
            let (v, ci) = pick(p);
            if let Some((lo, hi)) = ci {
                let bar = [at(p.bits, lo), at(p.bits, hi)];
                root.draw(&PathElement::new(
                    bar.to_vec(),
                    look(p.index).colour.stroke_width(1),
                ))
                .map_err(&e)?;
            }
            marker(&root, at(p.bits, v), look(p.index), 5).map_err(&e)?;
        }
    }
    let mut entries: Vec<(String, Look, Sample)> = points
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
    legend(&key, &entries).map_err(&e)?;
    root.present().map_err(&e)
}

/// The hidden state's mean relative L2 error against the baseline after each layer, from the
/// first link to the head, one line per codec on a log axis, the links as dashed verticals:
/// a step at a link is the error it injects, the slope after it whether the layers that follow
/// damp or amplify it. Codecs with no error anywhere (identity) are named in the legend only.
pub fn error_by_layer(path: &Path, records: &[CodecRecord]) -> Result<(), PlotError> {
    let e = err(path);
    let root = SVGBackend::new(path, (1100, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let (plot, key) = root.split_horizontally(800);
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
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            "Hidden-state error against the uncompressed model, layer by layer",
            ("sans-serif", 18),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0.0..depths + 0.5,
            Ticked {
                range: y_lo..y_hi,
                ticks: (y_lo as i32..=y_hi as i32).map(f64::from).collect(),
            },
        )
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("layers run (a link at depth d sends the state after layer d − 1)")
        .y_desc("mean ‖h − h_base‖ / ‖h_base‖ (log)")
        .x_labels(12)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|t| number(10f64.powf(*t)))
        .light_line_style(WHITE)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(&e)?;
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
                .map_err(&e)?;
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
            .map_err(&e)?;
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
        line(&root, &pixels, look, 2).map_err(&e)?;
        for &p in &pixels {
            marker(&root, p, look, 3).map_err(&e)?;
        }
        entries.push((label, look, Sample::LineAndMarker));
    }
    legend(&key, &entries).map_err(&e)?;
    root.present().map_err(&e)
}

/// Bytes per processed token at each link, grouped by codec.
pub fn link_bytes(path: &Path, records: &[CodecRecord]) -> Result<(), PlotError> {
    let e = err(path);
    let root = SVGBackend::new(path, (1100, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let (plot, key) = root.split_horizontally(860);
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
    let mut chart = ChartBuilder::on(&plot)
        .caption("Bytes per processed token at each link", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(20)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("B / processed token")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(WHITE)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(&e)?;
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
            .map_err(&e)?;
    }
    let width = 0.8 / links as f64;
    for (ci, r) in records.iter().enumerate() {
        for (li, l) in r.traffic.links.iter().enumerate() {
            let x0 = ci as f64 + 0.1 + li as f64 * width;
            let bar = Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.9, l.bytes_per_processed_token)],
                COLOURS[li % COLOURS.len()].filled(),
            );
            chart.draw_series(std::iter::once(bar)).map_err(&e)?;
        }
    }
    let entries: Vec<(String, Look, Sample)> = records
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
    legend(&key, &entries).map_err(&e)?;
    root.present().map_err(&e)
}

/// Draws the four plots at `files` (running ΔPPL, rate–distortion, bytes per link, error by
/// layer); `curves[i]` is the batch curve of `records[i]`.
pub fn write_all(
    files: &[PathBuf; 4],
    records: &[CodecRecord],
    curves: &[Curve],
) -> Result<(), PlotError> {
    delta_ppl_curves(&files[0], records, curves)?;
    rate_distortion(&files[1], records)?;
    link_bytes(&files[2], records)?;
    error_by_layer(&files[3], records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlog_is_linear_near_zero_logarithmic_beyond_and_inverts() {
        let s = SymLog { c: 0.01 };
        assert_eq!(s.to(0.0), 0.0);
        assert!((s.to(0.01) - 2f64.log10()).abs() < 1e-12);
        assert!((s.to(-9.99) + 3.0).abs() < 1e-12);
        for v in [-5.0, -0.003, 0.0, 0.02, 700.0] {
            assert!((s.from(s.to(v)) - v).abs() < 1e-9 * v.abs().max(1.0), "{v}");
        }
        assert_eq!(SymLog::fitting([0.0, 0.034, -2.0].into_iter()).c, 0.01);
    }

    #[test]
    fn symlog_ticks_are_zero_and_powers_of_ten_within_range() {
        let s = SymLog { c: 0.1 };
        let ticks: Vec<String> = s
            .ticks(-0.1, s.to(12.0))
            .into_iter()
            .map(|t| number(s.from(t)))
            .collect();
        assert_eq!(ticks, ["0", "0.1", "1", "10"]);
    }

    #[test]
    fn tick_labels_read_as_numbers() {
        assert_eq!(number(2000.0), "2000");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1e-5), "1e-5");
        assert_eq!(number(-0.01), "-0.01");
    }

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

    #[test]
    fn looks_do_not_repeat_within_thirty_five_codecs() {
        let looks: Vec<Look> = (0..35).map(look).collect();
        for (i, a) in looks.iter().enumerate() {
            assert!(!looks[i + 1..].contains(a), "codec {i}");
        }
    }
}
