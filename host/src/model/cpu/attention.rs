//! Causal self-attention on the CPU, a block of queries at a time: the scores of 64 queries
//! against the keys they may see (never the keys after the block, the padding or what left the
//! sliding window), an f32 softmax per row, then the weighted sum of values written straight
//! into `[batch, t, heads × head_dim]`. The `[batch, heads, t, t]` scores never exist, half
//! of them are never computed, and grouped KV heads are read in place instead of repeated.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use gemm::Parallelism;
use rayon::prelude::*;

use super::rows::{max, scaled_exp_sum};
use super::{written_in_parallel, SharedMut};

/// Queries per task: their scores (64 × t f32) stay in the core's L2 cache; 64 measured
/// faster than 32 or 128 on SmolLM2's heads (d = 64, t = 1024).
const QUERY_BLOCK: usize = 64;

/// `softmax(q kᵀ · scale + mask) v` for q `[batch, heads, t, d]` and k, v
/// `[batch, kv_heads, t, d]` (f32, the last dimension contiguous); rows hold `lengths` real
/// tokens. Key j is visible to query i when j ≤ i, j < the row's length and, with a sliding
/// window w, j + w > i. With `softcap` c, the scaled scores become `c · tanh(s / c)` first
/// (Gemma 2). Output `[batch, t, heads × d]`, f32.
pub struct CausalAttention<'a> {
    pub lengths: &'a [usize],
    pub window: Option<usize>,
    pub scale: f32,
    pub softcap: Option<f32>,
}

/// A `[batch, heads, t, d]` operand: its data and strides.
struct Operand<'a> {
    data: &'a [f32],
    stride: [usize; 3],
    heads: usize,
}

impl<'a> Operand<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout, what: &str) -> candle_core::Result<Self> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("attention takes f32 {what}, got {:?}", storage.dtype());
        };
        let (dims, stride) = (layout.dims(), layout.stride());
        if dims.len() != 4 || stride[3] != 1 {
            candle_core::bail!("attention {what}: want [batch, heads, t, d] with d contiguous, got {dims:?} / {stride:?}");
        }
        Ok(Operand {
            data: &data[layout.start_offset()..],
            stride: [stride[0], stride[1], stride[2]],
            heads: dims[1],
        })
    }

    fn at(&self, b: usize, h: usize, t: usize) -> *const f32 {
        self.data[self.offset(b, h, t)..].as_ptr()
    }

    fn row(&self, b: usize, h: usize, t: usize, d: usize) -> &[f32] {
        let start = self.offset(b, h, t);
        &self.data[start..start + d]
    }

    fn offset(&self, b: usize, h: usize, t: usize) -> usize {
        b * self.stride[0] + h * self.stride[1] + t * self.stride[2]
    }
}

/// `dst = lhs · rhs` for row-major matrices given as (pointer, row stride), dimensions
/// `(m, n, k)`, on the calling thread (the tasks are the parallelism).
///
/// # Safety
/// Each pointer must address its matrix (m × n, m × k, k × n) at that row stride, with
/// contiguous rows, and nothing else may access `dst`'s elements meanwhile.
unsafe fn row_major_gemm(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    (lhs, lhs_rs): (*const f32, usize),
    (rhs, rhs_rs): (*const f32, usize),
) {
    // SAFETY: as the caller promises.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            lhs,
            1,
            lhs_rs as isize,
            rhs,
            1,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

impl CausalAttention<'_> {
    /// Keys `[lo, hi)` visible to query `i` of a row with `len` real tokens.
    fn visible(&self, i: usize, len: usize) -> (usize, usize) {
        let lo = self.window.map_or(0, |w| (i + 1).saturating_sub(w));
        (lo, (i + 1).min(len))
    }
}

impl CustomOp3 for CausalAttention<'_> {
    fn name(&self) -> &'static str {
        "splitbench-causal-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            Operand::new(qs, ql, "queries")?,
            Operand::new(ks, kl, "keys")?,
            Operand::new(vs, vl, "values")?,
        );
        let (b, heads, t, d) = ql.shape().dims4()?;
        if kl.dims() != vl.dims() || kl.dims()[0] != b || kl.dims()[2] != t || kl.dims()[3] != d {
            candle_core::bail!(
                "attention: keys {:?} and values {:?} do not fit queries {:?}",
                kl.dims(),
                vl.dims(),
                ql.dims()
            );
        }
        if k.heads == 0 || heads % k.heads != 0 || self.lengths.len() != b {
            candle_core::bail!(
                "attention: {heads} query heads over {} KV heads, {} lengths for {b} rows",
                k.heads,
                self.lengths.len()
            );
        }
        let group = heads / k.heads;
        let row_stride = heads * d;
        // Keys transposed to [b, kv_heads, d, t]: gemm multiplies by Kᵀ 1.6× faster from
        // contiguous rows than through strides.
        // SAFETY: each (row, head) chunk is d × t, every element written once.
        let kt = unsafe {
            written_in_parallel(b * k.heads * d * t, d * t, |bh, kt| {
                let (row, head) = (bh / k.heads, bh % k.heads);
                for j in 0..t {
                    for (c, &x) in k.row(row, head, j, d).iter().enumerate() {
                        kt[c * t + j].write(x);
                    }
                }
            })
        };
        // Not zero-filled: the tasks below write every row of every head.
        let mut out = Vec::<f32>::with_capacity(b * t * row_stride);
        let dst = SharedMut(out.as_mut_ptr());
        let blocks = t.div_ceil(QUERY_BLOCK);
        let task = |(scores, inv_sum): &mut (Vec<f32>, Vec<f32>), task: usize| {
            let (bh, block) = (task / blocks, task % blocks);
            let (row, head) = (bh / heads, bh % heads);
            let len = self.lengths[row];
            let i0 = block * QUERY_BLOCK;
            let m = QUERY_BLOCK.min(t - i0);
            let keys_lo = self.visible(i0, len).0;
            let keys_hi = self.visible(i0 + m - 1, len).1;
            let out = dst.get();
            if keys_hi <= keys_lo {
                // No query of the block sees a key: its output is 0.
                for r in 0..m {
                    // SAFETY: as for the product below, rows i0..i0+m of this head are this
                    // task's alone.
                    unsafe {
                        let first = out.add((row * t + i0 + r) * row_stride + head * d);
                        std::ptr::write_bytes(first, 0, d);
                    }
                }
                return;
            }
            let n = keys_hi - keys_lo;
            // Grown, never cleared: gemm overwrites the first m × n values without reading
            // them, so refilling them with zeros per block would be a wasted pass.
            if scores.len() < m * n {
                scores.resize(m * n, 0.0);
            }
            let scores = &mut scores[..m * n];
            inv_sum.clear();
            let kv_head = head / group;
            let kt = &kt[(row * k.heads + kv_head) * d * t + keys_lo..];
            // SAFETY: q was checked to be [b, heads, t, d] with d contiguous, kt is [d, t]
            // from column keys_lo on, `scores` is m × n.
            unsafe {
                row_major_gemm(
                    (m, n, d),
                    (scores.as_mut_ptr(), n),
                    (q.at(row, head, i0), q.stride[2]),
                    (kt.as_ptr(), t),
                );
            }
            // Unnormalized probabilities; each output row is divided by its sum afterwards
            // (d values instead of n).
            for (r, s) in scores.chunks_exact_mut(n).enumerate() {
                let (lo, hi) = self.visible(i0 + r, len);
                if hi <= lo {
                    s.fill(0.0);
                    inv_sum.push(0.0);
                    continue;
                }
                let (lo, hi) = (lo - keys_lo, hi - keys_lo);
                s[..lo].fill(0.0);
                s[hi..].fill(0.0);
                let row = &mut s[lo..hi];
                let sum = match self.softcap {
                    None => {
                        let shift = max(row) * self.scale;
                        scaled_exp_sum(row, self.scale, shift)
                    }
                    Some(c) => {
                        for x in row.iter_mut() {
                            *x = c * (*x * self.scale / c).tanh();
                        }
                        let shift = max(row);
                        scaled_exp_sum(row, 1.0, shift)
                    }
                };
                inv_sum.push(1.0 / sum);
            }
            // SAFETY: v was checked like q; this task alone writes rows i0..i0+m of its
            // head's d columns of `out` (b × t rows of heads × d).
            unsafe {
                let first = out.add((row * t + i0) * row_stride + head * d);
                row_major_gemm(
                    (m, d, n),
                    (first, row_stride),
                    (scores.as_ptr(), n),
                    (v.at(row, kv_head, keys_lo), v.stride[2]),
                );
                for (r, &inv) in inv_sum.iter().enumerate() {
                    let o = std::slice::from_raw_parts_mut(first.add(r * row_stride), d);
                    for x in o {
                        *x *= inv;
                    }
                }
            }
        };
        (0..b * heads * blocks)
            .into_par_iter()
            .for_each_init(|| (Vec::new(), Vec::new()), task);
        // SAFETY: the tasks wrote rows 0..t of every head of every row: b × t × heads × d.
        unsafe { out.set_len(b * t * row_stride) };
        Ok((CpuStorage::F32(out), Shape::from((b, t, row_stride))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The textbook formula with an explicit mask, for comparison.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, op: &CausalAttention) -> Vec<f32> {
        let (b, heads, t, d) = q.dims4().unwrap();
        let group = heads / k.dims()[1];
        let repeat = |x: &Tensor| {
            let (b, kv, t, d) = x.dims4().unwrap();
            x.unsqueeze(2)
                .unwrap()
                .expand((b, kv, group, t, d))
                .unwrap()
                .reshape((b, heads, t, d))
                .unwrap()
        };
        let mut scores = (q.matmul(&repeat(k).t().unwrap()).unwrap() * op.scale as f64).unwrap();
        if let Some(c) = op.softcap {
            scores = ((scores / c as f64).unwrap().tanh().unwrap() * c as f64).unwrap();
        }
        let mut mask = vec![f32::NEG_INFINITY; b * t * t];
        for (row, &len) in op.lengths.iter().enumerate() {
            for i in 0..t {
                let (lo, hi) = op.visible(i, len);
                mask[(row * t + i) * t + lo..(row * t + i) * t + hi.max(lo)].fill(0.0);
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, t, t), &Device::Cpu).unwrap();
        let probs =
            candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask).unwrap()).unwrap();
        let out = probs
            .matmul(&repeat(v))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, heads * d))
            .unwrap();
        out.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn one_query_one_key_by_hand() {
        // A single visible key gets all the weight: the output is its value.
        let q = Tensor::new(&[[[[1f32, 2.0]]]], &Device::Cpu).unwrap();
        let k = Tensor::new(&[[[[3f32, -1.0]]]], &Device::Cpu).unwrap();
        let v = Tensor::new(&[[[[5f32, 7.0]]]], &Device::Cpu).unwrap();
        let op = CausalAttention {
            lengths: &[1],
            window: None,
            scale: 0.5,
            softcap: None,
        };
        let out = q.apply_op3_no_bwd(&k, &v, &op).unwrap();
        assert_eq!(
            out.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [5.0, 7.0]
        );
    }

    #[test]
    fn two_keys_by_hand() {
        // Query 1 sees keys 0 and 1 with scores 0 and ln 3: weights 1/4 and 3/4.
        let q = Tensor::new(&[[[[0f32], [1.0]]]], &Device::Cpu).unwrap();
        let k = Tensor::new(&[[[[0f32], [3f32.ln()]]]], &Device::Cpu).unwrap();
        let v = Tensor::new(&[[[[4f32], [8.0]]]], &Device::Cpu).unwrap();
        let op = CausalAttention {
            lengths: &[2],
            window: None,
            scale: 1.0,
            softcap: None,
        };
        let out = q
            .apply_op3_no_bwd(&k, &v, &op)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(out[0], 4.0);
        assert!((out[1] - 7.0).abs() < 1e-5, "{}", out[1]);
    }

    #[test]
    fn matches_the_masked_softmax_with_padding_windows_and_grouped_heads() {
        let dev = Device::Cpu;
        // 150 positions cross the 64-query blocks; row 1 is padded after 97 tokens.
        let (b, heads, kv, t, d) = (2, 6, 2, 150, 16);
        for (window, softcap) in [(None, None), (Some(40), None), (Some(40), Some(0.5))] {
            let q = Tensor::randn(0f32, 1.0, (b, heads, t, d), &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (b, kv, t, d), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (b, kv, t, d), &dev).unwrap();
            let op = CausalAttention {
                lengths: &[150, 97],
                window,
                scale: 0.25,
                softcap,
            };
            let ours = q.apply_op3_no_bwd(&k, &v, &op).unwrap();
            assert_eq!(ours.dims(), [b, t, heads * d]);
            let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = reference(&q, &k, &v, &op);
            let worst = ours
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 2e-5,
                "{window:?} {softcap:?}: largest difference {worst}"
            );
        }
        // Strided operands (a transposed view) give the same result as contiguous ones.
        let q = Tensor::randn(0f32, 1.0, (1, t, 2, d), &dev)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, t, 1, d), &dev)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let op = CausalAttention {
            lengths: &[t],
            window: None,
            scale: 0.25,
            softcap: None,
        };
        let a = q.apply_op3_no_bwd(&k, &k, &op).unwrap();
        let b = q
            .contiguous()
            .unwrap()
            .apply_op3_no_bwd(&k.contiguous().unwrap(), &k.contiguous().unwrap(), &op)
            .unwrap();
        assert_eq!(super::super::largest_difference(&a, &b), 0.0);
    }
}
