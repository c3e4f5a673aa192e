//! The calibration text: the `[data]` source at `calibration.split`, or the file at
//! `calibration.path`, tokenized as the evaluation text is; refused when it is the evaluation
//! text, so that no codec is fitted on what it is scored on.

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::data::{DataError, DataSource};
use super::tokens::{load_tokens, Tokens, TokensError};
use crate::config::{CalibrationSection, LoadedExperiment};

#[derive(Debug, thiserror::Error)]
pub enum CalibrationTextError {
    #[error(
        "the calibration text is the evaluation text ({text}), so calibrated codecs would be \
         fitted on the tokens they are scored on; set calibration.split to another split of \
         the dataset (e.g. \"validation\") or calibration.path to another file"
    )]
    SameAsEvaluation { text: String },
    #[error("[calibration] names no usable text: {0}")]
    Data(#[from] DataError),
    #[error("reading the calibration text: {0}")]
    Tokens(#[from] TokensError),
    #[error("calibration.tokens = {0}; fitting needs at least 2 tokens")]
    TooFewTokens(usize),
}

/// What the calibration text was, for the records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationText {
    /// A path, `builtin:…` or an `hf://` address, as the dataset's `source`.
    pub source: String,
    pub text_sha256: String,
    /// The tokens fitted on: the first `calibration.tokens` of the text (fewer if it is
    /// shorter).
    pub tokens: usize,
}

/// The experiment's `[calibration]`, defaults where it has none.
pub fn section(exp: &LoadedExperiment) -> CalibrationSection {
    exp.experiment.calibration.clone().unwrap_or_default()
}

/// The experiment with its `[data]` pointed at the calibration text: the same source at
/// another split, or a local file (Hub keys dropped).
fn calibration_experiment(exp: &LoadedExperiment) -> LoadedExperiment {
    let section = section(exp);
    let mut cal = exp.clone();
    let data = &mut cal.experiment.data;
    data.split = section.split;
    data.first_k_tokens = 0;
    if let Some(path) = section.path {
        data.path = Some(path);
        data.dataset = None;
        data.config = None;
        data.column = None;
        data.revision = None;
        data.join = None;
        data.files = None;
        data.cache_dir = None;
    }
    cal
}

/// Checks `[calibration]` before the model loads: the source it names exists as a source.
pub fn check(exp: &LoadedExperiment) -> Result<(), CalibrationTextError> {
    let tokens = section(exp).tokens;
    if tokens < 2 {
        return Err(CalibrationTextError::TooFewTokens(tokens));
    }
    DataSource::from_experiment(&calibration_experiment(exp))?;
    Ok(())
}

/// The calibration tokens, cut to `calibration.tokens`; refused when the text is the
/// evaluation text.
pub fn load(
    exp: &LoadedExperiment,
    tokenizer: &Tokenizer,
    evaluation: &Tokens,
) -> Result<(Vec<u32>, CalibrationText), CalibrationTextError> {
    let wanted = section(exp).tokens;
    let cal = calibration_experiment(exp);
    let source = DataSource::from_experiment(&cal)?;
    let mut tokens = load_tokens(&cal, &source, tokenizer)?;
    if tokens.info.text_sha256 == evaluation.info.text_sha256 {
        return Err(CalibrationTextError::SameAsEvaluation {
            text: tokens.info.source,
        });
    }
    if tokens.ids.len() < wanted {
        eprintln!(
            "splitbench: calibration.tokens = {wanted} but the calibration text has only {} \
             tokens; fitting on all of them",
            tokens.ids.len()
        );
    }
    tokens.ids.truncate(wanted);
    let text = CalibrationText {
        source: tokens.info.source,
        text_sha256: tokens.info.text_sha256,
        tokens: tokens.ids.len(),
    };
    Ok((tokens.ids, text))
}
