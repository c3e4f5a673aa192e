//! A build without CUDA: no tensor is ever on a GPU, so no kernel applies. The same functions
//! as `gpu_cuda.rs`, so that callers carry no `cfg`.

use candle_core::Tensor;

use super::ModelError;

/// Without CUDA, candle's ops always run.
pub fn fused_attention(
    _q: &Tensor,
    _k: &Tensor,
    _v: &Tensor,
    _lengths: &Tensor,
    _window: Option<usize>,
    _scale: f64,
) -> Result<Option<Tensor>, ModelError> {
    Ok(None)
}
