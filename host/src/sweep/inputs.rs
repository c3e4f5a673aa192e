//! What a sweep shares between its codecs: the experiment, model, tokens, windows, plan and
//! run folder.

use crate::config::LoadedExperiment;
use crate::eval::Window;
use crate::output::RunDir;
use crate::plan::Plan;
use crate::setup::{LoadedModel, Tokens};

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
}
