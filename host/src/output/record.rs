//! What a run writes: a JSONL line per batch (flushed as written) and a JSON record per codec.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::run_dir::WriteError;
use crate::eval::WindowResult;
use crate::link::{CalibratedLink, LinkTraffic, PluginProvenance};
use crate::plan::Plan;
use crate::setup::{CalibrationText, DatasetInfo, ModelInfo};

/// One JSON object per line, flushed after each so a live run can be followed.
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlWriter {
    /// Appends to `path` (a resumed run continues its curve), creating it if needed.
    pub fn append(path: PathBuf) -> Result<Self, WriteError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| WriteError {
                path: path.clone(),
                source,
            })?;
        Ok(JsonlWriter {
            path,
            out: BufWriter::new(file),
        })
    }

    pub fn write<T: Serialize>(&mut self, line: &T) -> Result<(), WriteError> {
        let err = |source| WriteError {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, line).map_err(|e| err(e.into()))?;
        self.out.write_all(b"\n").map_err(err)?;
        self.out.flush().map_err(err)
    }
}

/// Writes `value` as pretty JSON to a file that must not exist yet.
pub fn write_new_json<T: Serialize>(path: &Path, value: &T) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(err)?;
    let mut out = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| err(e.into()))?;
    out.write_all(b"\n").map_err(err)?;
    out.flush().map_err(err)
}

/// Writes `value` as pretty JSON over the file at `path` (written beside it, then renamed, so
/// an interruption leaves the old one whole).
pub fn replace_json<T: Serialize>(path: &Path, value: &T) -> Result<(), WriteError> {
    let next = path.with_extension("json.next");
    let _ = std::fs::remove_file(&next);
    write_new_json(&next, value)?;
    std::fs::rename(&next, path).map_err(|source| WriteError {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub ppl: f64,
    pub ppl_stats: crate::stats::PplStats,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub total_nll: f64,
    pub scored_tokens: usize,
    pub windows: Vec<WindowResult>,
    /// Perplexity per word and per byte of the scored text; absent in records written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextPerplexity>,
}

/// lm-evaluation-harness's tokenizer-free figures over the text the scored tokens stand for:
/// `word_perplexity = exp(NLL / words)`, `byte_perplexity = exp(NLL / bytes)`,
/// `bits_per_byte = NLL / bytes / ln 2`, with NLL the total over the scored tokens (nats).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TextPerplexity {
    pub bytes: u64,
    pub words: u64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub word_perplexity: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub byte_perplexity: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub bits_per_byte: f64,
}

impl TextPerplexity {
    /// None when the scored tokens stand for no text (states written before it was counted).
    pub fn of(total_nll: f64, text: crate::setup::TextCount) -> Option<TextPerplexity> {
        if text.bytes == 0 {
            return None;
        }
        let per_byte = total_nll / text.bytes as f64;
        Some(TextPerplexity {
            bytes: text.bytes,
            words: text.words,
            word_perplexity: (total_nll / text.words.max(1) as f64).exp(),
            byte_perplexity: per_byte.exp(),
            bits_per_byte: per_byte / std::f64::consts::LN_2,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkRecord {
    pub name: String,
    pub codec: String,
    /// Where the codec ran: `none`, `host` (host memory) or `device` (on the GPU).
    #[serde(default)]
    pub path: String,
    #[serde(flatten)]
    pub traffic: LinkTraffic,
    pub bytes_per_processed_token: f64,
    /// Over the run's scored tokens (every scored token crossed every link).
    pub bytes_per_scored_token: f64,
    pub bytes_per_element: f64,
    /// Raw hidden-state bytes over wire bytes.
    pub ratio: f64,
    /// Error of the decoded hidden states against what was sent.
    pub reconstruction: splitbench_plugin_api::measure::ErrorStats,
    pub encode_gbps: f64,
    pub decode_gbps: f64,
    /// One token's hidden vector (batch 1): wire bytes and encode + decode time.
    pub one_token_bytes: Option<u64>,
    pub one_token_codec_ms: Option<f64>,
}

/// Estimated time on the wire under the configured link model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkTime {
    pub model: crate::config::LinkModel,
    /// Σ over links of (bytes / bandwidth + transmissions × latency), per processed token.
    pub wire_ms_per_processed_token: f64,
    /// One generated token at batch 1: Σ over links of latency + one token's bytes /
    /// bandwidth + its measured encode and decode time.
    pub generation_ms_per_token: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrafficRecord {
    #[serde(flatten)]
    pub total: LinkTraffic,
    /// Tokens processed by the model (batch × padded length, summed over batches).
    pub model_tokens_processed: u64,
    pub tokens_scored: usize,
    pub bytes_per_processed_token: f64,
    pub bytes_per_scored_token: f64,
    pub links: Vec<LinkRecord>,
}

/// Everything about one codec's run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodecRecord {
    pub run_id: String,
    pub splitbench_version: String,
    pub started: String,
    pub finished: String,
    pub duration_s: f64,
    pub device: String,
    pub codec: String,
    pub codec_spec: crate::config::CodecSpec,
    /// Set when the codec failed mid-run; its results cover the batches before the failure.
    pub failure: Option<String>,
    pub config: crate::config::Experiment,
    pub model: ModelInfo,
    pub dataset: DatasetInfo,
    pub plan: Plan,
    pub results: Results,
    /// Set in the `.partial.json` records an interrupted run writes.
    #[serde(default)]
    pub incomplete: bool,
    /// The part of the run's batches this record covers (`--shard`); absent for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::eval::Shard>,
    /// Against the uncompressed baseline on the same tokens (absent for the baseline).
    pub divergence: Option<crate::stats::Divergence>,
    pub traffic: TrafficRecord,
    pub link_time: LinkTime,
    pub plugins: Vec<PluginProvenance>,
    /// The decode phase (`[generate]`), against the uncompressed model's continuations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<crate::eval::generate::GenerationRecord>,
    /// A calibrated codec's fitting (absent for data-free codecs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationRecord>,
}

/// What a calibrated codec was fitted on, and the state sent once over each link (apart
/// from the per-token wire in `traffic`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    pub text: CalibrationText,
    pub links: Vec<CalibratedLink>,
    /// The states' bytes over all links.
    pub state_bytes: u64,
}

impl CalibrationRecord {
    /// The record of a codec whose links run with `links`' states; `None` for a data-free one.
    pub fn new(
        text: Option<&CalibrationText>,
        links: &[CalibratedLink],
    ) -> Option<CalibrationRecord> {
        match (text, links.is_empty()) {
            (Some(text), false) => Some(CalibrationRecord {
                text: text.clone(),
                links: links.to_vec(),
                state_bytes: links.iter().map(|l| l.state_bytes).sum(),
            }),
            _ => None,
        }
    }
}
