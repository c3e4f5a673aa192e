//! The decoder: embed → layer(i) → final norm → LM head, stateless per window (no KV cache),
//! with logits for every position asked for. Attention scores and softmax run in f32.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor};

use super::config::{Family, ModelConfig};
use super::layer::{tensor_bytes, Attention, Layer, Linear};
use super::mask::attention_mask;
use super::shapes::check_shapes;
use super::ModelError;
use super::{cpu, gpu};
use crate::profile::{section, Phase};

type Result<T> = std::result::Result<T, ModelError>;

/// Where each part of the model runs (`plan.devices`): the embedding, each layer, the final
/// norm and head.
#[derive(Debug, Clone)]
pub struct Placement {
    pub embed: Device,
    pub layers: Vec<Device>,
    pub head: Device,
}

/// What every layer of one batch shares, on each device the layers run on.
pub struct BatchContext {
    per_device: Vec<DeviceContext>,
    /// Index into `per_device` of each layer's device.
    of_layer: Vec<usize>,
}

/// Which keys each query sees and the rotary tables, on one device.
struct DeviceContext {
    /// Real tokens per row (the rest is padding).
    lengths: Vec<usize>,
    window: Option<usize>,
    /// Off the CPU, `lengths` as u32 on the device, which the fused kernel masks by (the CPU's
    /// kernel reads `lengths` and `window`); and, made only if candle's ops must run instead,
    /// the additive mask `[batch, 1, t, t]` in f32: 0 where a query may attend, -inf elsewhere.
    lengths_on_device: Option<Tensor>,
    mask: std::cell::OnceCell<Tensor>,
    /// `[t, head_dim / 2]` in the model's dtype, and in f32 for the CPU's RoPE kernel.
    cos: Tensor,
    sin: Tensor,
    cos_f32: Vec<f32>,
    sin_f32: Vec<f32>,
}

/// How rotary embeddings pair up dimensions within a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeStyle {
    /// Dimension i with i + d/2 (Hugging Face checkpoints, GGUF qwen2/qwen3).
    Halves,
    /// Dimension 2i with 2i + 1 (GGUF llama, whose q/k rows llama.cpp permuted for it).
    Interleaved,
}

#[derive(Debug, Clone)]
pub struct Decoder {
    pub config: ModelConfig,
    pub family: Family,
    pub rope_style: RopeStyle,
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    inv_freq: Vec<f32>,
    dtype: DType,
    placement: Placement,
}

impl Decoder {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ModelConfig,
        family: Family,
        embed_tokens: Tensor,
        layers: Vec<Layer>,
        norm: Tensor,
        lm_head: Linear,
        rope_style: RopeStyle,
        dtype: DType,
        device: Device,
    ) -> Result<Self> {
        check_shapes(&config, &embed_tokens, &layers, &norm, &lm_head)?;
        let config_layers = layers.len();
        let inv_freq = config.inv_freq().into_iter().map(|f| f as f32).collect();
        Ok(Decoder {
            config,
            family,
            rope_style,
            embed_tokens,
            layers,
            norm,
            lm_head,
            inv_freq,
            dtype,
            placement: Placement {
                embed: device.clone(),
                layers: vec![device.clone(); config_layers],
                head: device,
            },
        })
    }

    /// The model with each part moved to its device in `placement` (no copy where it is
    /// already there).
    pub fn place(self, placement: Placement) -> Result<Decoder> {
        if placement.layers.len() != self.layers.len() {
            return Err(ModelError::Invalid(format!(
                "a placement of {} layers for a model of {}",
                placement.layers.len(),
                self.layers.len()
            )));
        }
        let layers = self
            .layers
            .iter()
            .zip(&placement.layers)
            .map(|(l, d)| l.to_device(d))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let embed_tokens = self.embed_tokens.to_device(&placement.embed)?;
        // A head tied to the embedding stays one matrix where both are on one device.
        let lm_head = if self.lm_head.is(&self.embed_tokens)
            && placement.head.same_device(&placement.embed)
        {
            Linear::new(QMatMul::Tensor(embed_tokens.clone()), None)
        } else {
            self.lm_head.to_device(&placement.head)?
        };
        Ok(Decoder {
            embed_tokens,
            layers,
            norm: self.norm.to_device(&placement.head)?,
            lm_head,
            placement,
            ..self
        })
    }

    /// Bytes of weights on each device, in the order the devices first hold a part.
    pub fn weight_bytes(&self) -> Vec<(Device, u64)> {
        let mut out: Vec<(Device, u64)> = Vec::new();
        let mut add =
            |device: &Device, bytes: u64| match out.iter_mut().find(|(d, _)| d.same_device(device))
            {
                Some((_, b)) => *b += bytes,
                None => out.push((device.clone(), bytes)),
            };
        add(&self.placement.embed, tensor_bytes(&self.embed_tokens));
        for (layer, device) in self.layers.iter().zip(&self.placement.layers) {
            add(device, layer.bytes());
        }
        let head = if self.lm_head.is(&self.embed_tokens) {
            0
        } else {
            self.lm_head.bytes()
        };
        add(&self.placement.head, tensor_bytes(&self.norm) + head);
        out
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }
    pub fn vocab_size(&self) -> usize {
        self.embed_tokens.dims()[0]
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Where the final norm and the LM head run.
    pub fn head_device(&self) -> &Device {
        &self.placement.head
    }
    /// Where the embedding runs: where a batch's token ids go.
    pub fn device(&self) -> &Device {
        &self.placement.embed
    }
    /// Where the hidden state after `depth` layers is made: the embedding's device at 0.
    pub fn depth_device(&self, depth: usize) -> &Device {
        match depth {
            0 => &self.placement.embed,
            d => &self.placement.layers[d - 1],
        }
    }
    /// The devices the model is on, each once in the order the model reaches them, for a
    /// user: `Cpu` or `Cuda(..), Cpu`.
    pub fn device_names(&self) -> String {
        let mut seen: Vec<&Device> = Vec::new();
        let all = std::iter::once(&self.placement.embed)
            .chain(&self.placement.layers)
            .chain([&self.placement.head]);
        for d in all {
            if !seen.iter().any(|o| o.same_device(d)) {
                seen.push(d);
            }
        }
        let names: Vec<String> = seen.iter().map(|d| format!("{d:?}")).collect();
        names.join(", ")
    }

    /// Divides each rotary frequency by a factor (llama.cpp's `rope_freqs` for Llama 3 scaling).
    pub fn divide_rope_frequencies(&mut self, factors: &[f32]) -> Result<()> {
        if factors.len() != self.inv_freq.len() {
            return Err(ModelError::Invalid(format!(
                "rope_freqs has {} factors; the heads have {} frequencies",
                factors.len(),
                self.inv_freq.len()
            )));
        }
        for (f, d) in self.inv_freq.iter_mut().zip(factors) {
            *f /= d;
        }
        Ok(())
    }

    /// Mask and rotary tables for a right-padded batch whose rows hold `lengths` real tokens
    /// out of `padded_len`, on every device a layer runs on. Positions restart at 0 in every
    /// row, as for separate windows.
    pub fn context(&self, lengths: &[usize], padded_len: usize) -> Result<BatchContext> {
        let mut per_device: Vec<(Device, DeviceContext)> = Vec::new();
        let mut of_layer = Vec::with_capacity(self.layers.len());
        for device in &self.placement.layers {
            let at = match per_device.iter().position(|(d, _)| d.same_device(device)) {
                Some(at) => at,
                None => {
                    per_device.push((
                        device.clone(),
                        self.device_context(lengths, padded_len, device)?,
                    ));
                    per_device.len() - 1
                }
            };
            of_layer.push(at);
        }
        Ok(BatchContext {
            per_device: per_device.into_iter().map(|(_, c)| c).collect(),
            of_layer,
        })
    }

    fn device_context(
        &self,
        lengths: &[usize],
        t: usize,
        device: &Device,
    ) -> Result<DeviceContext> {
        let window = self.config.attention_window(self.family);
        let lengths_on_device = match device {
            Device::Cpu => None,
            _ => {
                let rows: Vec<u32> = lengths.iter().map(|&n| n as u32).collect();
                Some(Tensor::from_vec(rows, lengths.len(), device)?)
            }
        };
        let half = self.inv_freq.len();
        let mut angles = Vec::with_capacity(t * half);
        for p in 0..t {
            angles.extend(self.inv_freq.iter().map(|f| p as f32 * f));
        }
        let cos_f32: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin_f32: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        let table = |v: &[f32]| Tensor::from_slice(v, (t, half), device)?.to_dtype(self.dtype);
        Ok(DeviceContext {
            lengths: lengths.to_vec(),
            window,
            lengths_on_device,
            mask: std::cell::OnceCell::new(),
            cos: table(&cos_f32)?,
            sin: table(&sin_f32)?,
            cos_f32,
            sin_f32,
        })
    }

    /// Token ids `[batch, t]` (u32) to hidden states `[batch, t, hidden]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let h = self
            .embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.hidden_size()))?;
        Ok(h)
    }

    /// Layer `i` on hidden states `[batch, t, hidden]`, moved to the layer's device first (a
    /// copy only where the node before it ran elsewhere).
    pub fn layer(&self, i: usize, h: &Tensor, ctx: &BatchContext) -> Result<Tensor> {
        let layer = &self.layers[i];
        let ctx = &ctx.per_device[ctx.of_layer[i]];
        let dev = &self.placement.layers[i];
        let h = &h.to_device(dev)?;
        let eps = self.config.rms_norm_eps as f32;
        let elementwise = |f: &dyn Fn() -> Result<Tensor>| section(Phase::Elementwise, dev, f);
        let matmul = |l: &Linear, x: &Tensor| section(Phase::Matmul, dev, || l.forward(x));
        let residual = h;
        let x = elementwise(&|| Ok(candle_nn::ops::rms_norm(h, &layer.input_layernorm, eps)?))?;
        let a = self.attention(&layer.self_attn, &x, ctx)?;
        let x = elementwise(&|| Ok((&a + residual)?))?;
        let residual = &x;
        let y = elementwise(&|| {
            Ok(candle_nn::ops::rms_norm(
                &x,
                &layer.post_attention_layernorm,
                eps,
            )?)
        })?;
        let mlp = &layer.mlp;
        let (gate, up) = (matmul(&mlp.gate_proj, &y)?, matmul(&mlp.up_proj, &y)?);
        let y = elementwise(&|| {
            Ok(if gate.device().is_cpu() && gate.dtype() == DType::F32 {
                gate.apply_op2_no_bwd(&up, &cpu::SiluMul)?
            } else {
                (candle_nn::ops::silu(&gate)? * &up)?
            })
        })?;
        let down = matmul(&mlp.down_proj, &y)?;
        elementwise(&|| Ok((&down + residual)?))
    }

    fn attention(&self, attn: &Attention, x: &Tensor, ctx: &DeviceContext) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let dev = x.device();
        let heads = self.config.num_attention_heads;
        let kv_heads = self.config.kv_heads();
        let d = self.config.head_dim();
        let eps = self.config.rms_norm_eps as f32;
        // [b, t, n, d], as the projection lays it out.
        let project = |proj: &Linear, n: usize, norm: &Option<Tensor>| -> Result<Tensor> {
            let y = section(Phase::Matmul, dev, || proj.forward(x))?.reshape((b, t, n, d))?;
            Ok(match norm {
                Some(w) => section(Phase::Elementwise, dev, || {
                    Ok::<_, ModelError>(candle_nn::ops::rms_norm(&y, w, eps)?)
                })?,
                None => y,
            })
        };
        let q = project(&attn.q_proj, heads, &attn.q_norm)?;
        let k = project(&attn.k_proj, kv_heads, &attn.k_norm)?;
        let v = project(&attn.v_proj, kv_heads, &None)?;
        let scale = 1.0 / (d as f64).sqrt();
        let out = section(Phase::Attention, dev, || match &ctx.lengths_on_device {
            None => self.attention_cpu(q, k, v, ctx, scale),
            Some(lengths) => self.attention_off_cpu(q, k, v, ctx, lengths, scale),
        })?;
        Ok(section(Phase::Matmul, dev, || attn.o_proj.forward(&out))?)
    }

    /// The CPU's attention kernel on q, k, v `[b, t, n, d]`: output `[b, t, heads × d]`. In
    /// f32, RoPE runs on that layout and the kernel reads the heads through strides.
    fn attention_cpu(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        ctx: &DeviceContext,
        scale: f64,
    ) -> Result<Tensor> {
        let op = cpu::CausalAttention {
            lengths: &ctx.lengths,
            window: ctx.window,
            scale: scale as f32,
        };
        let heads_first = |y: Tensor| y.transpose(1, 2);
        if self.dtype == DType::F32 {
            let rope = cpu::Rope {
                cos: &ctx.cos_f32,
                sin: &ctx.sin_f32,
                interleaved: self.rope_style == RopeStyle::Interleaved,
            };
            let q = heads_first(q.apply_op1_no_bwd(&rope)?)?;
            let k = heads_first(k.apply_op1_no_bwd(&rope)?)?;
            return Ok(q.apply_op3_no_bwd(&k, &heads_first(v)?, &op)?);
        }
        let rope = |y: Tensor| -> Result<Tensor> {
            let y = heads_first(y)?.contiguous()?;
            Ok(self.rope(&y, ctx)?.to_dtype(DType::F32)?)
        };
        let v = heads_first(v)?.to_dtype(DType::F32)?;
        Ok(rope(q)?
            .apply_op3_no_bwd(&rope(k)?, &v, &op)?
            .to_dtype(self.dtype)?)
    }

    /// Attention on devices other than the CPU: the fused kernel where it applies (a GPU, a head
    /// dimension it takes), else candle's ops with the scores materialized and masked, in f32.
    fn attention_off_cpu(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        ctx: &DeviceContext,
        lengths: &Tensor,
        scale: f64,
    ) -> Result<Tensor> {
        let (b, t, heads, d) = q.dims4()?;
        let kv_heads = k.dim(2)?;
        let heads_first = |y: Tensor| y.transpose(1, 2)?.contiguous();
        let (q, k, v) = (
            self.rope(&heads_first(q)?, ctx)?,
            self.rope(&heads_first(k)?, ctx)?,
            heads_first(v)?,
        );
        if let Some(out) = gpu::fused_attention(&q, &k, &v, lengths, ctx.window, scale)? {
            return Ok(out.reshape((b, t, heads * d))?);
        }
        if ctx.mask.get().is_none() {
            // The first layer of the batch that needs it; the rest reuse it.
            let _ = ctx
                .mask
                .set(attention_mask(&ctx.lengths, t, ctx.window, q.device())?);
        }
        let mask = ctx
            .mask
            .get()
            .ok_or_else(|| ModelError::Invalid("the attention mask was not made".into()))?;
        // Scaled before the product: one pass over [b, heads, t, d] instead of one over the
        // scores [b, heads, t, t].
        let q = (q.to_dtype(DType::F32)? * scale)?;
        let (k, v) = (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
        let (k, v) = (
            repeat_kv(k, heads / kv_heads)?,
            repeat_kv(v, heads / kv_heads)?,
        );
        let scores = q.matmul(&k.t()?)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?;
        Ok(probs
            .matmul(&v)?
            .to_dtype(self.dtype)?
            .transpose(1, 2)?
            .reshape((b, t, heads * d))?)
    }

    /// candle's RoPE on `[b, heads, t, d]` (contiguous).
    fn rope(&self, y: &Tensor, ctx: &DeviceContext) -> candle_core::Result<Tensor> {
        match self.rope_style {
            RopeStyle::Halves => candle_nn::rotary_emb::rope(y, &ctx.cos, &ctx.sin),
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(y, &ctx.cos, &ctx.sin),
        }
    }

    /// Final norm and LM head on the head's device: logits (f32) for hidden states
    /// `[.., hidden]`.
    pub fn head(&self, h: &Tensor) -> Result<Tensor> {
        // Only the rows asked for cross: a narrowed tensor would copy its whole storage.
        let h = if h.device().same_device(&self.placement.head) {
            h.clone()
        } else {
            h.contiguous()?.to_device(&self.placement.head)?
        };
        section(Phase::Head, &self.placement.head, || {
            let x = candle_nn::ops::rms_norm(&h, &self.norm, self.config.rms_norm_eps as f32)?;
            Ok(self.lm_head.forward(&x)?.to_dtype(DType::F32)?)
        })
    }

    /// The whole model on one batch: logits `[batch, t, vocab]` for every position.
    /// Only the reference tests run the model unsplit.
    #[cfg(test)]
    pub fn forward(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let t = ids.dims2()?.1;
        let ctx = self.context(lengths, t)?;
        let mut h = self.embed(ids)?;
        for i in 0..self.num_layers() {
            h = self.layer(i, &h, &ctx)?;
        }
        self.head(&h)
    }
}

fn repeat_kv(x: Tensor, n_rep: usize) -> candle_core::Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, kv, n_rep, t, d))?
        .reshape((b, kv * n_rep, t, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_every_node_on_the_cpu_and_no_logit_changes() {
        let decoder = crate::model::synth::tiny_decoder();
        let ids = Tensor::new(&[[1u32, 5, 9, 2, 7]], &Device::Cpu).unwrap();
        let logits = |d: &Decoder| {
            d.forward(&ids, &[5])
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let before = logits(&decoder);
        let bytes = decoder.weight_bytes();
        let tied = decoder.clone();
        let tied = Decoder {
            lm_head: Linear::new(QMatMul::Tensor(tied.embed_tokens.clone()), None),
            ..tied
        };
        // 4 layers of hidden 32, intermediate 64, 4 heads and 2 KV heads of 8, vocab 320, f32:
        // embedding and head 320 × 32 each, per layer q/o 32 × 32, k/v 16 × 32, three MLP
        // matrices 64 × 32 and two norms of 32; the final norm 32.
        let per_layer = 2 * 32 * 32 + 2 * 16 * 32 + 3 * 64 * 32 + 2 * 32;
        assert_eq!(bytes.len(), 1);
        assert_eq!(bytes[0].1, 4 * (2 * 320 * 32 + 4 * per_layer + 32));
        let wrong = Placement {
            embed: Device::Cpu,
            layers: vec![Device::Cpu; 3],
            head: Device::Cpu,
        };
        let err = decoder.clone().place(wrong).unwrap_err().to_string();
        assert!(err.contains("3 layers for a model of 4"), "{err}");
        let placed = decoder
            .place(Placement {
                embed: Device::Cpu,
                layers: vec![Device::Cpu; 4],
                head: Device::Cpu,
            })
            .unwrap();
        assert_eq!(logits(&placed), before);
        assert_eq!(placed.weight_bytes()[0].1, bytes[0].1);
        // Tied to the embedding, the head is counted once and stays one matrix when placed.
        let head = 320 * 32 * 4;
        assert_eq!(tied.weight_bytes()[0].1, bytes[0].1 - head);
        let placed = tied
            .place(Placement {
                embed: Device::Cpu,
                layers: vec![Device::Cpu; 4],
                head: Device::Cpu,
            })
            .unwrap();
        assert!(placed.lm_head.is(&placed.embed_tokens));
    }
}
