//! SVG plots of a finished run, drawn to be read in a paper. Each figure is a function over the
//! typed records (and the batch lines, for the running curves) drawn on one scaffold
//! (`figure`); `FIGURES` lists them, in the order the run folder names their files. A codec
//! keeps one look (colour-blind-safe colour, marker, dash) in every plot, and the legend sits
//! beside the axes, never on the data.

use std::path::{Path, PathBuf};

use super::batch_line::BatchLine;
use super::record::CodecRecord;
use super::run_dir::RunDir;

mod axes;
mod delta_ppl;
mod error_by_layer;
mod figure;
mod generation;
mod link_bytes;
mod rate_distortion;
mod style;

#[derive(Debug, thiserror::Error)]
#[error("drawing `{path}`: {message}")]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

/// One batch of a codec's live curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub batch: usize,
    /// Tokens scored up to and including this batch.
    pub scored: f64,
    pub ppl: f64,
}

pub type Curve = Vec<CurvePoint>;

/// A codec's curve from its batch lines (a failure line ends it; a batch without a running
/// PPL yet counts its tokens but draws no point).
pub fn read_curve(jsonl: &Path) -> Curve {
    let Ok(text) = std::fs::read_to_string(jsonl) else {
        return Vec::new();
    };
    let mut scored = 0f64;
    text.lines()
        .filter_map(|l| serde_json::from_str::<BatchLine>(l).ok())
        .filter_map(|line| {
            scored += line.tokens_scored as f64;
            (!line.running_ppl.is_nan()).then_some(CurvePoint {
                batch: line.batch,
                scored,
                ppl: line.running_ppl,
            })
        })
        .collect()
}

/// Bits per value on the wire: bytes over elements sent, over every link.
pub fn bits_per_value(r: &CodecRecord) -> f64 {
    let t = &r.traffic.total;
    8.0 * t.bytes as f64 / t.elements.max(1) as f64
}

/// What a figure is drawn from: the records, and `curves[i]` the batch curve of `records[i]`.
pub struct Run<'a> {
    pub records: &'a [CodecRecord],
    pub curves: &'a [Curve],
}

/// A figure: its file in the run folder, what draws it there, and whether a run has what it
/// shows.
pub struct Figure {
    pub file: &'static str,
    pub draw: fn(&Path, &Run<'_>) -> Result<(), PlotError>,
    pub shown: fn(&Run<'_>) -> bool,
}

fn always(_: &Run<'_>) -> bool {
    true
}

/// Every figure, in the order report.html shows them.
pub const FIGURES: &[Figure] = &[
    Figure {
        file: "delta_ppl_curve.svg",
        draw: |path, run| delta_ppl::delta_ppl_curves(path, run.records, run.curves),
        shown: always,
    },
    Figure {
        file: "rate_distortion.svg",
        draw: |path, run| rate_distortion::rate_distortion(path, run.records),
        shown: always,
    },
    Figure {
        file: "link_bytes.svg",
        draw: |path, run| link_bytes::link_bytes(path, run.records),
        shown: always,
    },
    Figure {
        file: "error_by_layer.svg",
        draw: |path, run| error_by_layer::error_by_layer(path, run.records),
        shown: always,
    },
    Figure {
        file: "generation_kld.svg",
        draw: |path, run| generation::kld_by_position(path, run.records),
        shown: |run| run.records.iter().any(|r| r.generation.is_some()),
    },
];

/// Draws every figure into the run folder; returns their files, in `FIGURES` order.
pub fn write_all(dir: &RunDir, run: &Run<'_>) -> Result<Vec<PathBuf>, PlotError> {
    FIGURES
        .iter()
        .filter(|f| (f.shown)(run))
        .map(|f| {
            let path = dir.plot(f.file);
            (f.draw)(&path, run)?;
            Ok(path)
        })
        .collect()
}
