//! Errors of the forward pass.

use crate::link::LinkError;
use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
}
