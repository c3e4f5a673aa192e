//! One codec's evaluation in progress: its totals, its JSONL curve (a line per batch that
//! holds everything `--resume` needs), and its progress bar.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use crate::config::CodecSpec;
use crate::eval::{perplexity, Links, Pass, WindowResult};
use crate::link::{CalibratedLink, LinkTraffic, PluginProvenance};
use crate::output::batch_line::{BatchLine, BatchState, FailureLine};
use crate::output::JsonlWriter;
use crate::setup::{TextCount, Tokens};
use crate::stats::{Accumulator, Stream};

/// A codec's totals over the batches applied so far, in batch order (so a run, a resumed run
/// and merged shards add the same numbers in the same order).
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub traffic: Vec<LinkTraffic>,
    pub windows: Vec<WindowResult>,
    pub acc: Accumulator,
    pub text: TextCount,
    pub nll: f64,
    pub nll_sq: f64,
    pub scored: usize,
    pub model_tokens: u64,
}

impl Totals {
    pub fn new(links: usize) -> Totals {
        Totals {
            traffic: vec![LinkTraffic::default(); links],
            ..Totals::default()
        }
    }

    /// Adds a batch's state; returns (batch NLL, batch scored).
    pub fn apply(&mut self, state: &BatchState) -> (f64, usize) {
        let batch_nll: f64 = state.windows.iter().map(|w| w.nll).sum();
        let batch_scored: usize = state.windows.iter().map(|w| w.scored).sum();
        self.nll += batch_nll;
        self.scored += batch_scored;
        self.nll_sq += state.nll_sq;
        self.model_tokens += state.tokens_processed;
        self.text.add(state.text);
        self.windows.extend_from_slice(&state.windows);
        for (t, bt) in self.traffic.iter_mut().zip(&state.traffic) {
            t.add(bt);
        }
        if let Some(c) = &state.comparison {
            self.acc.merge(c);
        }
        (batch_nll, batch_scored)
    }

    /// Applies `state` and returns its JSONL line, with the running figures after it.
    pub fn apply_line(&mut self, codec: &str, batch: usize, state: BatchState) -> BatchLine {
        let (batch_nll, batch_scored) = self.apply(&state);
        let batch_kld = state
            .comparison
            .as_ref()
            .map(|c| c.kld.sums().0 / c.tokens().max(1) as f64);
        BatchLine {
            codec: codec.to_string(),
            batch,
            tokens_scored: batch_scored,
            batch_nll,
            batch_ppl: perplexity(batch_nll, batch_scored),
            running_ppl: perplexity(self.nll, self.scored),
            bytes: state.traffic.iter().map(|t| t.bytes).sum(),
            running_bytes: self.traffic.iter().map(|t| t.bytes).sum(),
            transmissions: self.traffic.iter().map(|t| t.transmissions).sum(),
            batch_kld,
            state,
        }
    }
}

/// One codec's evaluation in progress.
pub struct CodecRun<'p> {
    pub index: usize,
    pub spec: CodecSpec,
    pub label: String,
    pub links: Links<'p>,
    pub link_labels: Vec<String>,
    pub link_paths: Vec<&'static str>,
    pub plugins: Vec<PluginProvenance>,
    /// The fitted states its links run with (calibrated codecs only).
    pub calibrated: Vec<CalibratedLink>,
    pub totals: Totals,
    pub jsonl: JsonlWriter,
    pub jsonl_path: PathBuf,
    pub bar: ProgressBar,
    pub started: chrono::DateTime<chrono::Utc>,
    pub clock: Instant,
    pub failure: Option<String>,
}

impl CodecRun<'_> {
    /// Adds one batch's pass over `tokens`; writes its JSONL line and moves its progress bar.
    pub fn record_batch(
        &mut self,
        batch: usize,
        pass: Pass,
        tokens_processed: u64,
        tokens: &Tokens,
        text: TextCount,
    ) -> Result<()> {
        let comparison = pass.comparison.map(|c| {
            let mut acc = Accumulator::default();
            let stream = Stream {
                ids: &tokens.ids,
                text: &|i| tokens.units.text_of(i).to_string(),
            };
            acc.add_batch(&c, &stream);
            acc
        });
        let state = BatchState {
            windows: pass.scores.iter().map(|w| w.result).collect(),
            nll_sq: pass
                .scores
                .iter()
                .flat_map(|w| w.target_lp.iter())
                .map(|&lp| f64::from(lp) * f64::from(lp))
                .sum(),
            tokens_processed,
            traffic: pass.traffic,
            comparison,
            text,
        };
        self.bar.inc(state.windows.len() as u64);
        let line = self.totals.apply_line(&self.label, batch, state);
        self.jsonl.write(&line)?;
        let t = &self.totals;
        self.bar.set_message(format!(
            "PPL {:.3} (batch {:.3}) | {:.0} B/tok | {} | {} tx",
            line.running_ppl,
            line.batch_ppl,
            line.running_bytes as f64 / t.model_tokens.max(1) as f64,
            human_bytes(line.running_bytes),
            line.transmissions
        ));
        Ok(())
    }

    pub fn fail(&mut self, message: String) -> Result<()> {
        self.bar.abandon_with_message(format!("FAILED: {message}"));
        self.jsonl.write(&FailureLine {
            codec: self.label.clone(),
            failure: message.clone(),
        })?;
        self.failure = Some(message);
        Ok(())
    }

    /// Reads this codec's curve back for `--resume`: applies its first `batches` lines (or up
    /// to a failure line) and rewrites the file to hold exactly those.
    pub fn restore(&mut self, batches: usize) -> Result<()> {
        let lines = read_lines(&self.jsonl_path)?;
        let mut kept = Vec::new();
        for line in lines.into_iter().take(batches) {
            if let Ok(f) = serde_json::from_str::<FailureLine>(&line) {
                self.failure = Some(f.failure);
                kept.push(line);
                break;
            }
            let parsed: BatchLine = serde_json::from_str(&line).with_context(|| {
                format!(
                    "`{}` has a line that is not a batch",
                    self.jsonl_path.display()
                )
            })?;
            self.bar.inc(parsed.state.windows.len() as u64);
            self.totals.apply(&parsed.state);
            kept.push(line);
        }
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&self.jsonl_path, text)
            .with_context(|| format!("rewriting `{}`", self.jsonl_path.display()))?;
        if let Some(f) = &self.failure {
            self.bar.abandon_with_message(format!("FAILED: {f}"));
        }
        Ok(())
    }
}

pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line cut short by a kill is not a batch: only newline-terminated lines count.
    let complete = text.rsplit_once('\n').map(|(head, _)| head).unwrap_or("");
    Ok(complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

impl CodecRun<'_> {
    /// Batches of this codec's curve that count for resuming: its batch lines, or none at all
    /// when it failed (a failed codec never holds the others back).
    pub fn resumable_batches(&self) -> Result<Option<usize>> {
        let lines = read_lines(&self.jsonl_path)?;
        if lines
            .iter()
            .any(|l| serde_json::from_str::<FailureLine>(l).is_ok())
        {
            return Ok(None);
        }
        Ok(Some(lines.len()))
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}
