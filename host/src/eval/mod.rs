//! Evaluation: the prototype's sliding-window protocol (`windows`), the split forward pass
//! with a codec at every link (`forward`), a batch through the baseline and every codec
//! (`batch`), and NLL, perplexity and the comparison with the baseline (`scoring`).

mod batch;
mod capture;
mod error;
mod forward;
pub mod generate;
mod layer_error;
mod logit_rows;
mod scoring;
mod tensor_scoring;
pub mod windows;

pub use batch::{eval_batch, sweep_batch, BatchComparison, Pass};
pub use capture::states_at_links;
pub use forward::{embed_batch, run_layers, Links};
pub use layer_error::LayerErrorSums;
pub use logit_rows::TOP_K;
pub use scoring::{perplexity, TokenComparison, WindowResult};
#[cfg(test)]
pub use scoring::{score_sweep, ScoredStates};
pub use windows::{Shard, Window};
