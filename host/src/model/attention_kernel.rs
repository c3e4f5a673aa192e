//! The fused causal attention kernel (`kernels/attention.cu`) for GPUs: compiled with NVRTC at
//! run time, as the device codecs' kernels are (no nvcc at build time), and launched on raw
//! device pointers on the stream it is lent. The scores never exist whole; the softmax and the
//! sums are f32 whatever the model's dtype. Tested on the CPU through plugin-api's emulation of
//! CUDA against the CPU attention kernel.

use std::sync::Mutex;

use splitbench_plugin_api::cuda::{as_u32, CudaStream, KernelArg, KernelSet, LaunchConfig};
use splitbench_plugin_api::{CodecError, DType};

const SOURCES: [&str; 2] = [
    include_str!("kernels/warp.cu"),
    include_str!("kernels/attention.cu"),
];
const KERNEL: &str = "sb_causal_attention";
/// Queries per thread block and threads per block, as the kernel defines them.
const QUERIES_PER_BLOCK: usize = 16;
const THREADS: u32 = 128;
/// The largest head dimension the kernel's shared memory holds.
const MAX_HEAD_DIM: usize = 128;

/// Sizes of one attention call: q `[batch, heads, t, d]`, k and v `[batch, kv_heads, t, d]`.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub t: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    /// Whether the kernel takes this shape (others run candle's ops).
    pub fn fits_kernel(&self) -> bool {
        self.head_dim <= MAX_HEAD_DIM
            && self.head_dim.is_multiple_of(4)
            && self.kv_heads > 0
            && self.heads.is_multiple_of(self.kv_heads)
    }
}

/// Device addresses and settings of one call. `out` is `[batch, t, heads, d]`; `lengths` holds
/// `batch` u32 row lengths; `window` 0 is no sliding window.
pub struct AttentionArgs {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub out: u64,
    pub lengths: u64,
    pub dtype: DType,
    pub shape: AttentionShape,
    pub window: u32,
    pub scale: f32,
}

/// The kernel, compiled once per GPU context for the process.
fn kernels() -> &'static Mutex<KernelSet> {
    static KERNELS: std::sync::OnceLock<Mutex<KernelSet>> = std::sync::OnceLock::new();
    KERNELS.get_or_init(|| Mutex::new(KernelSet::new("attention", &SOURCES, &[KERNEL])))
}

/// Queues the attention of `args` on `cuda`'s stream.
pub fn launch(cuda: &CudaStream, args: &AttentionArgs) -> Result<(), CodecError> {
    let s = args.shape;
    if !s.fits_kernel() {
        return Err(CodecError::new(format!(
            "the attention kernel takes head dimensions up to {MAX_HEAD_DIM} in multiples of 4 \
             and whole groups of query heads, not {s:?}"
        )));
    }
    let blocks = s.batch * s.heads * s.t.div_ceil(QUERIES_PER_BLOCK);
    let config = LaunchConfig {
        grid: as_u32(blocks)?,
        block: THREADS,
    };
    let dtype = splitbench_plugin_api::cuda::dtype_code(args.dtype);
    let (heads, kv_heads, t, d) = (
        as_u32(s.heads)?,
        as_u32(s.kv_heads)?,
        as_u32(s.t)?,
        as_u32(s.head_dim)?,
    );
    let mut kernels = kernels()
        .lock()
        .map_err(|_| CodecError::new("the attention kernel's lock is poisoned"))?;
    kernels.launch(
        cuda,
        KERNEL,
        config,
        &[
            KernelArg::of(&args.q),
            KernelArg::of(&args.k),
            KernelArg::of(&args.v),
            KernelArg::of(&args.out),
            KernelArg::of(&dtype),
            KernelArg::of(&heads),
            KernelArg::of(&kv_heads),
            KernelArg::of(&t),
            KernelArg::of(&d),
            KernelArg::of(&args.lengths),
            KernelArg::of(&args.window),
            KernelArg::of(&args.scale),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::CausalAttention;
    use crate::model::emulated::{rounded, stream, worst_difference, Buffer};

    /// The kernel under the CPU emulation of CUDA against the CPU attention kernel, on inputs
    /// rounded to the dtype first: padding, a sliding window, grouped heads, a head dimension
    /// below the kernel's largest, and query and key blocks cut short at the end.
    #[test]
    fn kernel_equals_the_cpu_attention() {
        let Some(cuda) = stream("attention kernel") else {
            return;
        };
        let (batch, heads, kv_heads, t, head_dim) = (2, 4, 2, 53, 36);
        let shape = AttentionShape {
            batch,
            heads,
            kv_heads,
            t,
            head_dim,
        };
        for (dtype, window, bound) in [
            (DType::F32, 0u32, 2e-6f32),
            (DType::BF16, 0, 1e-2),
            (DType::F16, 19, 2e-3),
            (DType::F32, 40, 2e-6),
        ] {
            let (q, q_bytes) = rounded(&[batch, heads, t, head_dim], dtype);
            let (k, k_bytes) = rounded(&[batch, kv_heads, t, head_dim], dtype);
            let (v, v_bytes) = rounded(&[batch, kv_heads, t, head_dim], dtype);
            let lengths = [t, 31];
            let scale = 1.0 / (head_dim as f32).sqrt();
            let op = CausalAttention {
                lengths: &lengths,
                window: (window > 0).then_some(window as usize),
                scale,
                softcap: None,
            };
            let want = q.apply_op3_no_bwd(&k, &v, &op).unwrap();

            let (mut qb, mut kb, mut vb) = (
                Buffer::new(&q_bytes),
                Buffer::new(&k_bytes),
                Buffer::new(&v_bytes),
            );
            let lengths_bytes: Vec<u8> = lengths
                .iter()
                .flat_map(|&n| (n as u32).to_le_bytes())
                .collect();
            let mut lb = Buffer::new(&lengths_bytes);
            let mut ob = Buffer::poisoned(q_bytes.len());
            let args = AttentionArgs {
                q: qb.ptr(),
                k: kb.ptr(),
                v: vb.ptr(),
                out: ob.ptr(),
                lengths: lb.ptr(),
                dtype,
                shape,
                window,
                scale,
            };
            launch(&cuda, &args).unwrap();
            let worst = worst_difference(&ob.values(q.elem_count(), dtype), &want);
            assert!(
                worst <= bound,
                "{dtype:?} window {window}: relative difference {worst}"
            );
        }
    }

    /// The kernel compiles with the real NVRTC for Hopper (where NVRTC is on the library
    /// path, as in CI).
    #[test]
    fn kernel_compiles_with_nvrtc() {
        let kernels = KernelSet::new("attention", &SOURCES, &[KERNEL]);
        splitbench_plugin_api::testkit::assert_kernels_compile(&kernels, &[KERNEL]);
    }

    #[test]
    fn shapes_the_kernel_refuses() {
        let shape = |heads, kv_heads, head_dim| AttentionShape {
            batch: 1,
            heads,
            kv_heads,
            t: 8,
            head_dim,
        };
        assert!(shape(32, 8, 128).fits_kernel());
        assert!(shape(16, 8, 64).fits_kernel());
        assert!(!shape(8, 8, 256).fits_kernel());
        assert!(!shape(8, 8, 66).fits_kernel());
        assert!(!shape(8, 3, 64).fits_kernel());
    }
}
