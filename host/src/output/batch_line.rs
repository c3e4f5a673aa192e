//! A run's JSONL line per batch: the live curve (batch, tokens, PPL, bytes), which the plots
//! read back, and the batch's state, from which `--resume` and `merge` rebuild a codec's totals.

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::measure::null_as_nan;

use crate::eval::WindowResult;
use crate::link::LinkTraffic;
use crate::setup::TextCount;
use crate::stats::Accumulator;

/// What a batch adds to a codec's totals: everything `--resume` needs to rebuild them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchState {
    pub windows: Vec<WindowResult>,
    /// Σ of squared per-token NLL (for llama.cpp's PPL error).
    pub nll_sq: f64,
    pub tokens_processed: u64,
    pub traffic: Vec<LinkTraffic>,
    /// Against the baseline (absent for the baseline).
    pub comparison: Option<Accumulator>,
    /// The text the batch's scored tokens stand for (absent in states written before it).
    #[serde(default)]
    pub text: TextCount,
}

/// One JSONL line: the live curve (batch, tokens, PPL, bytes) and the batch's state.
#[derive(Serialize, Deserialize)]
pub struct BatchLine {
    pub codec: String,
    pub batch: usize,
    pub tokens_scored: usize,
    pub batch_nll: f64,
    /// NaN (JSON null) when nothing was scored yet.
    #[serde(deserialize_with = "null_as_nan")]
    pub batch_ppl: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub running_ppl: f64,
    pub bytes: u64,
    pub running_bytes: u64,
    pub transmissions: u64,
    /// Mean KL(base ‖ codec) over this batch's scored tokens (absent for the baseline).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub batch_kld: Option<f64>,
    pub state: BatchState,
}

/// A JSONL line that marks a codec failed at a batch.
#[derive(Serialize, Deserialize)]
pub struct FailureLine {
    pub codec: String,
    pub failure: String,
}
