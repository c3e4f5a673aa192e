//! CPU kernels of the forward pass that candle's ops would run as several passes over memory:
//! causal attention without the `[batch, heads, t, t]` scores, RoPE on the projections'
//! layout, SiLU·up in one pass, matmuls without zero-filling their output, and the row maths
//! they share (exp, max, sums, KL divergence) vectorized for the CPU it runs on.
//!
//! Their outputs are never zero-filled before being written: `vec![0.0; n]` is a pass over
//! memory on the calling thread while the pool's threads wait (1.4% of a forward pass's wall
//! time on 2 cores).

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

use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout};
use rayon::prelude::*;

/// A raw pointer that rayon tasks may share because each writes a disjoint part of it.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every user writes through it only at offsets no other task touches.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

/// The values of a contiguous f32 tensor, for the kernels that read their operands as one
/// slice; `op` and `what` name the kernel and the operand in the error.
fn contiguous_f32<'a>(
    op: &str,
    what: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{op} takes f32 {what}, got {:?}", storage.dtype());
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} takes a contiguous {what}");
    };
    Ok(&values[start..end])
}

/// A vector of `len` f32 written by `write` in parallel, `chunk` elements per call (the last
/// may be shorter), each call given its chunk's index; nothing is zero-filled first.
///
/// # Safety
/// `write` must write every element of the chunk it is given.
unsafe fn written_in_parallel(
    len: usize,
    chunk: usize,
    write: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| write(i, c));
    // SAFETY: the caller's `write` initialized all `len` elements.
    unsafe { out.set_len(len) };
    out
}

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
