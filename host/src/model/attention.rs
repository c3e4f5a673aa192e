//! A layer's self-attention: projections, q/k norms, RoPE on the rotary part of each head,
//! then the CPU kernel, the fused GPU kernel, or candle's ops with the scores materialized.

use candle_core::{DType, Tensor};

use super::context::{DeviceContext, KvCache, RopeTables};
use super::decoder::RopeStyle;
use super::layer::{Attention, QkNormScope};
use super::linear::Linear;
use super::{cpu, gpu, ModelError};
use crate::profile::{section, Phase};

type Result<T> = std::result::Result<T, ModelError>;

/// One layer's attention on one batch.
pub(super) struct AttentionRun<'a> {
    pub attn: &'a Attention,
    pub ctx: &'a DeviceContext,
    pub rope: &'a RopeTables,
    pub style: RopeStyle,
    pub window: Option<usize>,
    pub dtype: DType,
    /// Generation: the cache, this layer's index in it and the new tokens' first position.
    pub cache: Option<(&'a KvCache, usize, usize)>,
}

impl AttentionRun<'_> {
    /// x `[b, t, hidden]` to the attention output `[b, t, hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.attn;
        let (b, t, _) = x.dims3()?;
        let dev = x.device();
        let d = a.head_dim;
        // [b, t, n, d], as the projection lays it out, its norm applied.
        let project = |proj: &Linear, n: usize, norm: Option<&super::layer::Norm>, scope| {
            let y = section(Phase::Matmul, dev, || proj.forward(x))?;
            let y = match (norm, scope) {
                (Some(w), Some(QkNormScope::Whole)) => {
                    section(Phase::Elementwise, dev, || w.forward(&y))?
                }
                _ => y,
            }
            .reshape((b, t, n, d))?;
            Ok::<_, ModelError>(match (norm, scope) {
                (Some(w), Some(QkNormScope::PerHead)) => {
                    section(Phase::Elementwise, dev, || w.forward(&y))?
                }
                _ => y,
            })
        };
        let scope = a.qk_norm.as_ref().map(|n| n.scope);
        let q = project(&a.q_proj, a.heads, a.qk_norm.as_ref().map(|n| &n.q), scope)?;
        let k = project(
            &a.k_proj,
            a.kv_heads,
            a.qk_norm.as_ref().map(|n| &n.k),
            scope,
        )?;
        let v = project(&a.v_proj, a.kv_heads, None, None)?;
        let out = section(Phase::Attention, dev, || {
            match (self.cache, &self.ctx.lengths_on_device) {
                (Some(cache), _) => self.cached(q, k, v, cache),
                (None, None) => self.on_cpu(q, k, v),
                (None, Some(lengths)) => self.off_cpu(q, k, v, lengths),
            }
        })?;
        Ok(section(Phase::Matmul, dev, || a.o_proj.forward(&out))?)
    }

    /// The CPU's attention kernel on q, k, v `[b, t, n, d]`: output `[b, t, heads × d]`. In
    /// f32, RoPE runs on that layout and the kernel reads the heads through strides.
    fn on_cpu(&self, q: Tensor, k: Tensor, v: Tensor) -> Result<Tensor> {
        let op = cpu::CausalAttention {
            lengths: &self.ctx.lengths,
            window: self.window,
            scale: self.attn.scale as f32,
            softcap: self.attn.softcap.map(|c| c as f32),
        };
        let heads_first = |y: Tensor| y.transpose(1, 2);
        if self.dtype == DType::F32 {
            let rope = |y: Tensor| -> Result<Tensor> {
                let op = cpu::Rope {
                    cos: &self.rope.cos_f32,
                    sin: &self.rope.sin_f32,
                    interleaved: self.style == RopeStyle::Interleaved,
                };
                rotary_part(y, self.rope.rotary_dim, |r| r.apply_op1_no_bwd(&op))
            };
            let q = heads_first(rope(q)?)?;
            let k = heads_first(rope(k)?)?;
            return Ok(q.apply_op3_no_bwd(&k, &heads_first(v)?, &op)?);
        }
        let rope = |y: Tensor| -> Result<Tensor> {
            let y = heads_first(y)?.contiguous()?;
            Ok(self.candle_rope(y)?.to_dtype(DType::F32)?)
        };
        let v = heads_first(v)?.to_dtype(DType::F32)?;
        Ok(rope(q)?
            .apply_op3_no_bwd(&rope(k)?, &v, &op)?
            .to_dtype(self.dtype)?)
    }

    /// Attention on devices other than the CPU: the fused kernel where it applies (a GPU, a head
    /// dimension it takes, no soft-capping), else candle's ops with the scores materialized and
    /// masked, in f32.
    fn off_cpu(&self, q: Tensor, k: Tensor, v: Tensor, lengths: &Tensor) -> Result<Tensor> {
        let (b, t, heads, d) = q.dims4()?;
        let scale = self.attn.scale;
        let heads_first = |y: Tensor| y.transpose(1, 2)?.contiguous();
        let (q, k, v) = (
            self.rope_heads_first(q)?,
            self.rope_heads_first(k)?,
            heads_first(v)?,
        );
        if self.attn.softcap.is_none() {
            if let Some(out) = gpu::fused_attention(&q, &k, &v, lengths, self.window, scale)? {
                return Ok(out.reshape((b, t, heads * d))?);
            }
        }
        let mask = self.ctx.mask(self.window, t, q.device())?;
        self.materialized(q, k, v, &mask)
    }

    /// `softmax(q kᵀ · scale + mask) v` with the scores materialized in f32, for q
    /// `[b, heads, t, d]`, k, v `[b, kv_heads, keys, d]` and a mask `[b or 1, 1, t, keys]`:
    /// `[b, t, heads × d]`. The heads sharing a KV head are multiplied as one matrix
    /// `[group · t, d]` against it, so keys and values are read in place (a view of the cache
    /// in generation), not repeated per head.
    fn materialized(&self, q: Tensor, k: Tensor, v: Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, heads, t, d) = q.dims4()?;
        let (kv_heads, keys) = (k.dim(1)?, k.dim(2)?);
        let group = heads / kv_heads;
        // Scaled before the product: one pass over [b, heads, t, d] instead of one over the
        // scores [b, heads, t, keys].
        let q =
            (q.to_dtype(DType::F32)? * self.attn.scale)?.reshape((b, kv_heads, group * t, d))?;
        let (k, v) = (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(c) = self.attn.softcap {
            scores = ((scores / c)?.tanh()? * c)?;
        }
        let scores = scores
            .reshape((b, kv_heads, group, t, keys))?
            .broadcast_add(&mask.unsqueeze(2)?)?;
        let probs =
            candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, kv_heads, group * t, keys))?;
        Ok(probs
            .matmul(&v)?
            .reshape((b, heads, t, d))?
            .to_dtype(self.dtype)?
            .transpose(1, 2)?
            .reshape((b, t, heads * d))?)
    }

    /// Generation: the new tokens' q, k, v `[b, t, n, d]` at positions `start..start + t`
    /// against every cached key and themselves (causal, within the window), with candle's ops
    /// on any device; the new keys and values join the cache.
    fn cached(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        (cache, layer, start): (&KvCache, usize, usize),
    ) -> Result<Tensor> {
        let t = q.dim(1)?;
        let heads_first = |y: Tensor| y.transpose(1, 2)?.contiguous();
        let q = self.candle_rope(heads_first(q)?)?;
        let k = self.candle_rope(heads_first(k)?)?;
        let (k, v) = cache.extend(layer, k, heads_first(v)?)?;
        let total = start + t;
        let mut mask = vec![0f32; t * total];
        for (r, row) in mask.chunks_exact_mut(total).enumerate() {
            let at = start + r;
            for (j, m) in row.iter_mut().enumerate() {
                let hidden = j > at || self.window.is_some_and(|w| j + w <= at);
                if hidden {
                    *m = f32::NEG_INFINITY;
                }
            }
        }
        let mask = Tensor::from_vec(mask, (1, 1, t, total), q.device())?;
        self.materialized(q, k, v, &mask)
    }

    /// `[b, t, n, d]` to `[b, n, t, d]` (contiguous), rotated: one kernel on a GPU, else a
    /// transposed copy and candle's RoPE.
    fn rope_heads_first(&self, y: Tensor) -> Result<Tensor> {
        let tables = (&self.rope.cos, &self.rope.sin);
        let interleaved = self.style == RopeStyle::Interleaved;
        if let Some(out) =
            gpu::fused_rope_heads_first(&y, tables, self.rope.rotary_dim, interleaved)?
        {
            return Ok(out);
        }
        self.candle_rope(y.transpose(1, 2)?.contiguous()?)
    }

    /// candle's RoPE on `[b, heads, t, d]` (contiguous).
    fn candle_rope(&self, y: Tensor) -> Result<Tensor> {
        let (cos, sin) = (&self.rope.cos, &self.rope.sin);
        rotary_part(y, self.rope.rotary_dim, |r| match self.style {
            RopeStyle::Halves => candle_nn::rotary_emb::rope(r, cos, sin),
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(r, cos, sin),
        })
    }
}

/// `rotate` on the first `rotary_dim` dimensions of the last axis; the rest pass through.
fn rotary_part(
    y: Tensor,
    rotary_dim: usize,
    rotate: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<Tensor> {
    let d = y.dim(candle_core::D::Minus1)?;
    if rotary_dim == d {
        return Ok(rotate(&y)?);
    }
    let last = y.rank() - 1;
    let rotated = rotate(&y.narrow(last, 0, rotary_dim)?.contiguous()?)?;
    Ok(Tensor::cat(
        &[&rotated, &y.narrow(last, rotary_dim, d - rotary_dim)?],
        last,
    )?
    .contiguous()?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::context::BatchContext;
    use crate::model::layer::{Norm, QkNorm};
    use crate::model::rope::Rotary;

    fn linear(out: usize, inp: usize, seed: f64) -> Linear {
        let w = Tensor::arange(0f32, (out * inp) as f32, &Device::Cpu)
            .unwrap()
            .affine(seed, 0.0)
            .unwrap()
            .sin()
            .unwrap()
            .reshape((out, inp))
            .unwrap();
        Linear::new(candle_core::quantized::QMatMul::Tensor(w), None)
    }

    /// The path GPUs take when the fused kernel does not apply (candle's ops, the scores
    /// materialized) gives the CPU kernel's result: soft-capping, partial rotary, q/k norms,
    /// grouped heads, padding and a sliding window.
    #[test]
    fn candle_ops_path_matches_the_cpu_kernel() {
        let (hidden, heads, kv_heads, d) = (32, 4, 2, 8);
        let norm = |n: usize| Norm {
            weight: Tensor::ones(n, DType::F32, &Device::Cpu).unwrap(),
            eps: 1e-6,
        };
        let attn = Attention {
            q_proj: linear(heads * d, hidden, 0.37),
            k_proj: linear(kv_heads * d, hidden, 0.53),
            v_proj: linear(kv_heads * d, hidden, 0.71),
            o_proj: linear(hidden, heads * d, 0.13),
            qk_norm: Some(QkNorm {
                q: norm(d),
                k: norm(d),
                scope: QkNormScope::PerHead,
            }),
            heads,
            kv_heads,
            head_dim: d,
            scale: 0.3,
            softcap: Some(1.5),
        };
        let config: crate::model::config::ModelConfig = serde_json::from_str(
            r#"{"vocab_size": 10, "hidden_size": 32, "intermediate_size": 8, "head_dim": 8,
                "num_hidden_layers": 1, "num_attention_heads": 4, "partial_rotary_factor": 0.5}"#,
        )
        .unwrap();
        let rotaries = [Rotary::new(&config, 100.0, None)];
        let (lengths, t) = ([9usize, 6], 9);
        let ctx =
            BatchContext::new(&lengths, t, &[Device::Cpu], &rotaries, DType::F32, None).unwrap();
        let ctx = ctx.of_layer(0);
        let x = Tensor::randn(0f32, 1.0, (2, t, hidden), &Device::Cpu).unwrap();
        let run = AttentionRun {
            attn: &attn,
            ctx,
            rope: &ctx.ropes[0],
            style: RopeStyle::Halves,
            window: Some(4),
            dtype: DType::F32,
            cache: None,
        };
        let project = |l: &Linear, n| l.forward(&x).unwrap().reshape((2, t, n, d)).unwrap();
        let normed = |y: Tensor| attn.qk_norm.as_ref().unwrap().q.forward(&y).unwrap();
        let (q, k, v) = (
            normed(project(&attn.q_proj, heads)),
            normed(project(&attn.k_proj, kv_heads)),
            project(&attn.v_proj, kv_heads),
        );
        let lengths_t = Tensor::new(&[9u32, 6], &Device::Cpu).unwrap();
        let kernel = run.on_cpu(q.clone(), k.clone(), v.clone()).unwrap();
        let ops = run.off_cpu(q, k, v, &lengths_t).unwrap();
        let (a, b): (Vec<f32>, Vec<f32>) = (
            kernel.flatten_all().unwrap().to_vec1().unwrap(),
            ops.flatten_all().unwrap().to_vec1().unwrap(),
        );
        // Only the real tokens: padded queries differ (the kernel sees no key, the mask all).
        for (row, &len) in lengths.iter().enumerate() {
            for i in 0..len {
                for c in 0..heads * d {
                    let at = (row * t + i) * heads * d + c;
                    assert!(
                        (a[at] - b[at]).abs() < 1e-5,
                        "row {row} query {i}: {} vs {}",
                        a[at],
                        b[at]
                    );
                }
            }
        }
        // And the full forward runs through the projection out.
        assert_eq!(run.forward(&x).unwrap().dims(), [2, t, hidden]);
    }
}
