//! The calibration text: the `[data]` source at `calibration.split`, or the file at
//! `calibration.path`, tokenized as the evaluation text is; refused when it is the evaluation
//! text, so that no codec is fitted on what it is scored on.

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::data::{DataError, DataSource};
use super::tokens::{load_tokens, Tokens, TokensError};
use crate::config::{CalibrationSection, DataSection, LoadedExperiment, SourceKeys};

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

/// The calibration text's source: the `[data]` source at `calibration.split`, or the file
/// at `calibration.path` (in the evaluation text's format).
fn calibration_source(exp: &LoadedExperiment) -> Result<DataSource, DataError> {
    let section = section(exp);
    let evaluation = DataSource::from_experiment(exp)?;
    let Some(path) = section.path else {
        return evaluation.with_split(&section.split);
    };
    let mut keys = serde_json::Map::new();
    keys.insert("path".into(), path.to_string_lossy().into_owned().into());
    if let Some(format) = evaluation.format() {
        keys.insert("format".into(), serde_json::to_value(format)?);
    }
    let data = DataSection {
        source: SourceKeys {
            written: keys,
            recorded: None,
        },
        ..DataSection::default()
    };
    DataSource::from_section(&data, &exp.base_dir)
}

/// Checks `[calibration]` before the model loads: the source it names exists as a source.
pub fn check(exp: &LoadedExperiment) -> Result<(), CalibrationTextError> {
    let tokens = section(exp).tokens;
    if tokens < 2 {
        return Err(CalibrationTextError::TooFewTokens(tokens));
    }
    calibration_source(exp)?;
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
    let source = calibration_source(exp)?;
    // All of the text, then cut to calibration.tokens (data.first_k_tokens is the evaluation's).
    let mut whole = exp.clone();
    whole.experiment.data.first_k_tokens = 0;
    let mut tokens = load_tokens(&whole, &source, tokenizer)?;
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
