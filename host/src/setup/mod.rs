//! Everything a command loads before it evaluates: the model on its device and the tokens of
//! the evaluation text.

pub mod data;
mod device;
mod model;
mod tokens;

pub use model::{load_model, LoadedModel, ModelInfo};
pub use tokens::{load_tokens, DatasetInfo, Tokens};
