//! Rotary position embedding on `[batch, t, heads, d]` as the projections produce it, so the
//! heads need no transposed copy before attention (candle's `rope`/`rope_i` want
//! `[batch, heads, t, d]`).

use super::{contiguous_f32, written_in_parallel};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape};

/// Rotates each head of x `[batch, t, heads, d]` (f32, contiguous) by the angles of its
/// position: `cos`, `sin` are `[t, d/2]`. `interleaved` pairs dimension 2i with 2i + 1
/// (GGUF llama), otherwise i with i + d/2.
pub struct Rope<'a> {
    pub cos: &'a [f32],
    pub sin: &'a [f32],
    pub interleaved: bool,
}

impl CustomOp1 for Rope<'_> {
    fn name(&self) -> &'static str {
        "splitbench-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32("rope", "tensor", s, l)?;
        let (_, t, heads, d) = l.shape().dims4()?;
        let half = d / 2;
        if d % 2 != 0 || self.cos.len() != t * half || self.sin.len() != t * half {
            candle_core::bail!(
                "rope: head size {d}, {t} positions, tables of {}",
                self.cos.len()
            );
        }
        // One task per (row, position): every head of it shares the angles.
        let width = heads * d;
        // SAFETY: every (a, b) pair below covers each element of each head once.
        let out = unsafe {
            written_in_parallel(x.len(), width, |bt, out| {
                let x = &x[bt * width..][..width];
                let p = bt % t;
                let (cos, sin) = (&self.cos[p * half..][..half], &self.sin[p * half..][..half]);
                for (o, x) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                    for i in 0..half {
                        let (a, b) = if self.interleaved {
                            (2 * i, 2 * i + 1)
                        } else {
                            (i, i + half)
                        };
                        o[a].write(x[a] * cos[i] - x[b] * sin[i]);
                        o[b].write(x[a] * sin[i] + x[b] * cos[i]);
                    }
                }
            })
        };
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn a_quarter_turn_by_hand() {
        // One head of 4 at position 0 (angle 0: unchanged) and 1 (angles π/2 and 0).
        let x = Tensor::new(
            &[[[[1f32, 2.0, 3.0, 4.0]], [[1.0, 2.0, 3.0, 4.0]]]],
            &Device::Cpu,
        )
        .unwrap();
        let (cos, sin) = ([1f32, 1.0, 0.0, 1.0], [0f32, 0.0, 1.0, 0.0]);
        let rope = |interleaved| {
            let op = Rope {
                cos: &cos,
                sin: &sin,
                interleaved,
            };
            x.apply_op1_no_bwd(&op)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        // Halves: pairs (0, 2) and (1, 3); (1, 3) → (−3, 1) at π/2.
        assert_eq!(rope(false), [1.0, 2.0, 3.0, 4.0, -3.0, 2.0, 1.0, 4.0]);
        // Interleaved: pairs (0, 1) and (2, 3); (1, 2) → (−2, 1).
        assert_eq!(rope(true), [1.0, 2.0, 3.0, 4.0, -2.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn matches_candle_on_the_transposed_layout() {
        let dev = Device::Cpu;
        let (b, t, h, d) = (2, 7, 3, 8);
        let x = Tensor::randn(0f32, 1.0, (b, t, h, d), &dev).unwrap();
        let cos = Tensor::randn(0f32, 1.0, (t, d / 2), &dev).unwrap();
        let sin = Tensor::randn(0f32, 1.0, (t, d / 2), &dev).unwrap();
        let (c, s) = (
            cos.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            sin.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        let heads_first = x.transpose(1, 2).unwrap().contiguous().unwrap();
        for interleaved in [false, true] {
            let ours = x
                .apply_op1_no_bwd(&Rope {
                    cos: &c,
                    sin: &s,
                    interleaved,
                })
                .unwrap();
            let rope = if interleaved {
                candle_nn::rotary_emb::rope_i
            } else {
                candle_nn::rotary_emb::rope
            };
            let want = rope(&heads_first, &cos, &sin)
                .unwrap()
                .transpose(1, 2)
                .unwrap();
            let diff = super::super::largest_difference(&ours, &want);
            assert_eq!(diff, 0.0, "interleaved {interleaved}");
        }
    }
}
