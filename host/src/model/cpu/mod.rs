//! CPU kernels of the forward pass that candle's ops would run as several passes over memory:
//! causal attention without the `[batch, heads, t, t]` scores, RoPE on the projections'
//! layout, SiLU·up in one pass, matmuls without zero-filling their output, and the row maths
//! they share (exp, max, sums, KL divergence) vectorized for the CPU it runs on.

mod attention;
mod dense;
mod rope;
mod rows;
mod silu_mul;

pub use attention::CausalAttention;
pub use dense::DenseMatmul;
pub use rope::Rope;
pub use rows::{kl_divergence, log_softmax_stats, RowStats, VectorIsa};
pub use silu_mul::SiluMul;

/// A raw pointer that rayon tasks may share because each writes a disjoint part of it.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every user writes through it only at offsets no other task touches.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole wrapper and not the raw field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// The largest absolute difference between two tensors of the same shape.
#[cfg(test)]
fn largest_difference(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    let d = (a - b).and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>());
    d.expect("tensors of the same shape")
}
