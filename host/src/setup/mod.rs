//! Everything a command loads before it evaluates: the model on its device and the tokens of
//! the evaluation text.

pub mod calibration_text;
pub mod data;
mod device;
pub mod hub;
mod model;
mod prepared;
mod text_units;
mod tokens;

pub use calibration_text::CalibrationText;
pub use model::{load_model, LoadedModel, ModelInfo};
pub use prepared::{Checked, Prepared};
pub use text_units::TextCount;
pub use tokens::{load_tokens, DatasetInfo, Tokens};

use std::path::Path;

use crate::config::LoadedExperiment;

/// An experiment read (`config::load`) with its `[data]` checked by its source, so that a
/// mistake there is reported before anything is loaded, and the form records keep of its keys.
pub fn load_experiment(path: &Path, overrides: &[String]) -> anyhow::Result<LoadedExperiment> {
    let mut exp = crate::config::load(path, overrides)?;
    let source = data::DataSource::from_experiment(&exp)?;
    exp.experiment.data.source.recorded = Some(source.recorded_keys()?);
    Ok(exp)
}

/// The model and the tokens of an experiment. The text's source is checked first, so that a
/// mistake in `[data]` is reported before minutes of model loading.
pub fn load_model_and_tokens(exp: &LoadedExperiment) -> anyhow::Result<(LoadedModel, Tokens)> {
    let source = data::DataSource::from_experiment(exp)?;
    let model = load_model(exp)?;
    let tokens = load_tokens(exp, &source, &model.tokenizer)?;
    Ok((model, tokens))
}
