//! The fused elementwise kernels (`kernels/elementwise.cu`) for GPUs: residual add + RMSNorm,
//! RoPE with the heads-first transpose, SiLU(gate) · up, each one pass where candle's ops take
//! two or more. Compiled with NVRTC at run time as the attention kernel is; tested on the CPU
//! through plugin-api's emulation of CUDA against the CPU path.

use std::sync::Mutex;

use splitbench_plugin_api::cuda::{
    as_u32, dtype_code, CudaStream, KernelArg, KernelSet, LaunchConfig,
};
use splitbench_plugin_api::{CodecError, DType};

const SOURCES: [&str; 2] = [
    include_str!("kernels/warp.cu"),
    include_str!("kernels/elementwise.cu"),
];
const ADD_RMS_NORM: &str = "sb_add_rms_norm";
const ROPE: &str = "sb_rope_heads_first";
const SILU_MUL: &str = "sb_silu_mul";
const KERNELS: [&str; 3] = [ADD_RMS_NORM, ROPE, SILU_MUL];

fn kernels() -> &'static Mutex<KernelSet> {
    static SET: std::sync::OnceLock<Mutex<KernelSet>> = std::sync::OnceLock::new();
    SET.get_or_init(|| Mutex::new(KernelSet::new("elementwise", &SOURCES, &KERNELS)))
}

fn launch(
    cuda: &CudaStream,
    kernel: &str,
    config: LaunchConfig,
    args: &[KernelArg],
) -> Result<(), CodecError> {
    kernels()
        .lock()
        .map_err(|_| CodecError::new("the elementwise kernels' lock is poisoned"))?
        .launch(cuda, kernel, config, args)
}

/// RMSNorm over `rows` rows of `dim` (device addresses, all in `dtype`): `out = x / rms(x) · w`,
/// or with `residual` first `sum = x + residual` (rounded to `dtype`) and `out` its norm.
pub struct NormArgs {
    pub x: u64,
    /// The residual to add and where the sum goes.
    pub residual: Option<(u64, u64)>,
    pub weight: u64,
    pub out: u64,
    pub dtype: DType,
    pub rows: usize,
    pub dim: usize,
    pub eps: f32,
}

/// Queues the norm of `args` on `cuda`'s stream.
pub fn add_rms_norm(cuda: &CudaStream, args: &NormArgs) -> Result<(), CodecError> {
    let (residual, sum) = args.residual.unwrap_or((0, 0));
    let (dtype, rows, dim) = (
        dtype_code(args.dtype),
        as_u32(args.rows)?,
        as_u32(args.dim)?,
    );
    launch(
        cuda,
        ADD_RMS_NORM,
        LaunchConfig::warp_per_row(args.rows)?,
        &[
            KernelArg::of(&args.x),
            KernelArg::of(&residual),
            KernelArg::of(&sum),
            KernelArg::of(&args.weight),
            KernelArg::of(&args.out),
            KernelArg::of(&dtype),
            KernelArg::of(&rows),
            KernelArg::of(&dim),
            KernelArg::of(&args.eps),
        ],
    )
}

/// RoPE of x `[batch, t, heads, d]` into out `[batch, heads, t, d]`: the first `rotary_dim`
/// dimensions of each head rotated by `cos`, `sin` `[t, rotary_dim / 2]`, all in `dtype`.
pub struct RopeArgs {
    pub x: u64,
    pub cos: u64,
    pub sin: u64,
    pub out: u64,
    pub dtype: DType,
    pub batch: usize,
    pub t: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub rotary_dim: usize,
    pub interleaved: bool,
}

/// Queues the rotation of `args` on `cuda`'s stream.
pub fn rope_heads_first(cuda: &CudaStream, args: &RopeArgs) -> Result<(), CodecError> {
    if !args.rotary_dim.is_multiple_of(2) || args.rotary_dim > args.head_dim {
        return Err(CodecError::new(format!(
            "RoPE rotates an even number of dimensions up to the head's {}, not {}",
            args.head_dim, args.rotary_dim
        )));
    }
    let total = (args.batch * args.heads * args.t * args.head_dim) as u64;
    let (dtype, interleaved) = (dtype_code(args.dtype), i32::from(args.interleaved));
    let (t, heads, d, rot) = (
        as_u32(args.t)?,
        as_u32(args.heads)?,
        as_u32(args.head_dim)?,
        as_u32(args.rotary_dim)?,
    );
    launch(
        cuda,
        ROPE,
        LaunchConfig::thread_per_element(total as usize)?,
        &[
            KernelArg::of(&args.x),
            KernelArg::of(&args.cos),
            KernelArg::of(&args.sin),
            KernelArg::of(&args.out),
            KernelArg::of(&dtype),
            KernelArg::of(&t),
            KernelArg::of(&heads),
            KernelArg::of(&d),
            KernelArg::of(&rot),
            KernelArg::of(&interleaved),
            KernelArg::of(&total),
        ],
    )
}

/// Queues `out = silu(gate) · up` over `n` elements in `dtype` on `cuda`'s stream.
pub fn silu_mul(
    cuda: &CudaStream,
    (gate, up, out): (u64, u64, u64),
    dtype: DType,
    n: usize,
) -> Result<(), CodecError> {
    let (dtype, count) = (dtype_code(dtype), n as u64);
    launch(
        cuda,
        SILU_MUL,
        LaunchConfig::thread_per_element(n)?,
        &[
            KernelArg::of(&gate),
            KernelArg::of(&up),
            KernelArg::of(&out),
            KernelArg::of(&dtype),
            KernelArg::of(&count),
        ],
    )
}

#[cfg(test)]
#[path = "elementwise_kernel_tests.rs"]
mod tests;
