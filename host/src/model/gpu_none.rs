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

/// Without CUDA, candle's ops always run.
pub fn fused_rms_norm(
    _x: &Tensor,
    _weight: &Tensor,
    _eps: f32,
) -> candle_core::Result<Option<Tensor>> {
    Ok(None)
}

/// Without CUDA, candle's ops always run.
pub fn fused_add_rms_norm(
    _x: &Tensor,
    _residual: &Tensor,
    _weight: &Tensor,
    _eps: f32,
) -> candle_core::Result<Option<(Tensor, Tensor)>> {
    Ok(None)
}

/// Without CUDA, candle's ops always run.
pub fn fused_rope_heads_first(
    _x: &Tensor,
    _tables: (&Tensor, &Tensor),
    _rotary_dim: usize,
    _interleaved: bool,
) -> candle_core::Result<Option<Tensor>> {
    Ok(None)
}

/// Without CUDA, candle's ops always run.
pub fn fused_silu_mul(_gate: &Tensor, _up: &Tensor) -> candle_core::Result<Option<Tensor>> {
    Ok(None)
}
