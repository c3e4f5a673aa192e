//! `silu(gate) · up` in one pass (candle runs it as four: neg, exp, add-divide, multiply).

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
use std::mem::MaybeUninit;

use super::rows::{exp, vectorized};
use super::{contiguous_f32, written_in_parallel};

/// `silu(gate) · up` for two f32 tensors of the same shape, both contiguous.
pub struct SiluMul;

vectorized! {
    fn silu_mul(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) -> () {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            o.write(g / (1.0 + exp(-g)) * u);
        }
    }
}

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "splitbench-silu-mul"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = contiguous_f32("silu-mul", "gate", gs, gl)?;
        let u = contiguous_f32("silu-mul", "up", us, ul)?;
        if gl.shape() != ul.shape() {
            candle_core::bail!(
                "silu-mul: gate {:?} and up {:?} differ",
                gl.dims(),
                ul.dims()
            );
        }
        // SAFETY: chunk i of the output is as long as chunk i of g and of u (the same shape),
        // and silu_mul writes every element of it.
        let out = unsafe {
            written_in_parallel(g.len(), CHUNK, |i, o| {
                silu_mul(&g[i * CHUNK..][..o.len()], &u[i * CHUNK..][..o.len()], o)
            })
        };
        Ok((CpuStorage::F32(out), gl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn by_hand_and_against_candle() {
        // silu(0) = 0, silu(ln 3) = ln 3 · 3/4.
        let g = Tensor::new(&[0f32, 3f32.ln()], &Device::Cpu).unwrap();
        let u = Tensor::new(&[5f32, 2.0], &Device::Cpu).unwrap();
        let out = g
            .apply_op2_no_bwd(&u, &SiluMul)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(out[0], 0.0);
        assert!((out[1] - 3f32.ln() * 1.5).abs() < 1e-6);
        let g = Tensor::randn(0f32, 4.0, (3, 40_000), &Device::Cpu).unwrap();
        let u = Tensor::randn(0f32, 1.0, (3, 40_000), &Device::Cpu).unwrap();
        let ours = g.apply_op2_no_bwd(&u, &SiluMul).unwrap();
        let want = (candle_nn::ops::silu(&g).unwrap() * &u).unwrap();
        let worst = (ours - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(worst.to_scalar::<f32>().unwrap() < 1e-5);
    }
}
