//! What a sweep shares between its codecs: the experiment, model, tokens, windows, plan and
//! run folder.

use crate::config::LoadedExperiment;
use crate::eval::{Shard, Window};
use crate::output::RunDir;
use crate::plan::Plan;
use crate::setup::{CalibrationText, LoadedModel, Tokens};

pub struct Sweep<'a> {
    pub exp: &'a LoadedExperiment,
    pub model: &'a LoadedModel,
    pub tokens: &'a Tokens,
    pub windows: Vec<Window>,
    pub plan: Plan,
    pub run_dir: RunDir,
    /// Also each codec at one link at a time (`--per-link`).
    pub per_link: bool,
    /// Continue the run in `run_dir` instead of starting one.
    pub resume: bool,
    /// Only this part of the batches (`--shard`).
    pub shard: Option<Shard>,
    /// The text the calibrated codecs were fitted on, if any.
    pub calibration: Option<CalibrationText>,
}

impl Sweep<'_> {
    /// The batches this sweep evaluates (all of them, or its shard's).
    pub fn batch_range(&self) -> std::ops::Range<usize> {
        let total = self
            .windows
            .len()
            .div_ceil(self.exp.experiment.eval.batch_size);
        self.shard.map_or(0..total, |s| s.batches(total))
    }

    /// How many windows those batches hold.
    pub fn windows_in_range(&self) -> usize {
        let size = self.exp.experiment.eval.batch_size;
        let range = self.batch_range();
        (range.end * size).min(self.windows.len()) - (range.start * size).min(self.windows.len())
    }
}
