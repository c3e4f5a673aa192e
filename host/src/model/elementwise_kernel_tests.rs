//! The elementwise kernels under the CPU emulation of CUDA against the CPU path, on inputs
//! rounded to the dtype first. Bounds: in f32 the CPU path's arithmetic (RoPE bit for bit; the
//! norm's sum and SiLU's exp in another order or implementation), in f16 and bf16 one rounding
//! of the output to the dtype (2⁻¹¹ and 2⁻⁸ relative, doubled).

use candle_core::Tensor;
use splitbench_plugin_api::convert::f32_to_bytes;

use super::*;
use crate::model::cpu;
use crate::model::emulated::{rounded, stream, worst_difference, Buffer};

const DTYPES: [(DType, f32); 3] = [(DType::F32, 1e-6), (DType::F16, 1e-3), (DType::BF16, 8e-3)];

#[test]
fn add_rms_norm_equals_candle_on_the_cpu() {
    let Some(cuda) = stream("elementwise kernels: add + RMSNorm") else {
        return;
    };
    // 72: each lane takes two or three values of a row.
    let (rows, dim, eps) = (5, 72, 1e-6f32);
    for (dtype, bound) in DTYPES {
        for with_residual in [false, true] {
            let (x, x_bytes) = rounded(&[rows, dim], dtype);
            let (residual, residual_bytes) = rounded(&[rows, dim], dtype);
            let (weight, weight_bytes) = rounded(&[dim], dtype);
            let (mut xb, mut rb, mut wb) = (
                Buffer::new(&x_bytes),
                Buffer::new(&residual_bytes),
                Buffer::new(&weight_bytes),
            );
            let len = x_bytes.len();
            let (mut sum, mut out) = (Buffer::poisoned(len), Buffer::poisoned(len));
            let args = NormArgs {
                x: xb.ptr(),
                residual: with_residual.then(|| (rb.ptr(), sum.ptr())),
                weight: wb.ptr(),
                out: out.ptr(),
                dtype,
                rows,
                dim,
                eps,
            };
            add_rms_norm(&cuda, &args).unwrap();
            let normed = if with_residual {
                // The sum rounds once to the dtype, as candle's add does.
                let want_sum = (&x + &residual).unwrap().flatten_all().unwrap();
                let want_sum = f32_to_bytes(&want_sum.to_vec1::<f32>().unwrap(), dtype);
                assert_eq!(sum.bytes(len), want_sum, "{dtype:?}: the sum");
                Tensor::from_vec(sum.values(rows * dim, dtype), (rows, dim), x.device()).unwrap()
            } else {
                x
            };
            let want = candle_nn::ops::rms_norm(&normed, &weight, eps).unwrap();
            let worst = worst_difference(&out.values(rows * dim, dtype), &want);
            assert!(
                worst <= bound,
                "{dtype:?}, residual {with_residual}: relative difference {worst}"
            );
        }
    }
}

#[test]
fn rope_heads_first_equals_the_cpu_rope() {
    let Some(cuda) = stream("elementwise kernels: RoPE") else {
        return;
    };
    let (batch, t, heads, d) = (2, 7, 3, 12);
    for (dtype, bound) in DTYPES {
        // Partial rotation (8 of 12, as Phi and GLM rotate part of each head) and whole.
        for (rotary_dim, interleaved) in [(8, false), (12, true), (12, false), (8, true)] {
            let (x, x_bytes) = rounded(&[batch, t, heads, d], dtype);
            let (cos, cos_bytes) = rounded(&[t, rotary_dim / 2], dtype);
            let (sin, sin_bytes) = rounded(&[t, rotary_dim / 2], dtype);
            let op = cpu::Rope {
                cos: &cos.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                sin: &sin.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                interleaved,
            };
            let rotated = x
                .narrow(3, 0, rotary_dim)
                .unwrap()
                .contiguous()
                .unwrap()
                .apply_op1_no_bwd(&op)
                .unwrap();
            let passed = x.narrow(3, rotary_dim, d - rotary_dim).unwrap();
            let want = Tensor::cat(&[&rotated, &passed], 3)
                .unwrap()
                .transpose(1, 2)
                .unwrap();
            let (mut xb, mut cb, mut sb) = (
                Buffer::new(&x_bytes),
                Buffer::new(&cos_bytes),
                Buffer::new(&sin_bytes),
            );
            let mut out = Buffer::poisoned(x_bytes.len());
            let args = RopeArgs {
                x: xb.ptr(),
                cos: cb.ptr(),
                sin: sb.ptr(),
                out: out.ptr(),
                dtype,
                batch,
                t,
                heads,
                head_dim: d,
                rotary_dim,
                interleaved,
            };
            rope_heads_first(&cuda, &args).unwrap();
            let got = out.values(batch * t * heads * d, dtype);
            let worst = worst_difference(&got, &want);
            // f32: the same products and differences, each rounded once.
            let bound = if dtype == DType::F32 { 0.0 } else { bound };
            assert!(
                worst <= bound,
                "{dtype:?}, rotary {rotary_dim}, interleaved {interleaved}: {worst}"
            );
        }
    }
}

#[test]
fn silu_mul_equals_the_cpu_silu_mul() {
    let Some(cuda) = stream("elementwise kernels: SiLU · up") else {
        return;
    };
    // Not a whole number of 256-thread blocks.
    let n = 1000;
    for (dtype, bound) in DTYPES {
        let (gate, gate_bytes) = rounded(&[n], dtype);
        let (up, up_bytes) = rounded(&[n], dtype);
        let want = gate.apply_op2_no_bwd(&up, &cpu::SiluMul).unwrap();
        let (mut gb, mut ub) = (Buffer::new(&gate_bytes), Buffer::new(&up_bytes));
        let mut out = Buffer::poisoned(gate_bytes.len());
        silu_mul(&cuda, (gb.ptr(), ub.ptr(), out.ptr()), dtype, n).unwrap();
        let worst = worst_difference(&out.values(n, dtype), &want);
        assert!(worst <= bound, "{dtype:?}: relative difference {worst}");
    }
}

/// The kernels compile with the real NVRTC for Hopper (where NVRTC is on the library path, as
/// in CI).
#[test]
fn kernels_compile_with_nvrtc() {
    let set = KernelSet::new("elementwise", &SOURCES, &KERNELS);
    splitbench_plugin_api::testkit::assert_kernels_compile(&set, &KERNELS);
}
