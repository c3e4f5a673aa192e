//! The decoder every family runs: embed → layer(i) → final norm → LM head, stateless per
//! window (no KV cache), with logits for every position asked for. Attention scores and
//! softmax run in f32.

use candle_core::{DType, Device, Tensor};

use super::attention::AttentionRun;
use super::config::ModelConfig;
use std::rc::Rc;

use super::context::{BatchContext, KvCache};
use super::families::{Family, Parts};
use super::layer::{Ffn, Layer, Norm};
use super::linear::{tensor_bytes, Linear};
use super::rope::Rotary;
use super::ModelError;
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
    embed_scale: Option<f64>,
    layers: Vec<Layer>,
    norm: Norm,
    lm_head: Linear,
    final_softcap: Option<f64>,
    rotaries: Vec<Rotary>,
    dtype: DType,
    placement: Placement,
}

impl Decoder {
    pub fn new(
        config: ModelConfig,
        family: Family,
        parts: Parts,
        rope_style: RopeStyle,
        dtype: DType,
        device: Device,
    ) -> Self {
        let layers = parts.layers.len();
        Decoder {
            config,
            family,
            rope_style,
            embed_tokens: parts.embed_tokens,
            embed_scale: parts.embed_scale,
            layers: parts.layers,
            norm: parts.norm,
            lm_head: parts.lm_head,
            final_softcap: parts.final_softcap,
            rotaries: parts.rotaries,
            dtype,
            placement: Placement {
                embed: device.clone(),
                layers: vec![device.clone(); layers],
                head: device,
            },
        }
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
            Linear::tied(&embed_tokens)
        } else {
            self.lm_head.to_device(&placement.head)?
        };
        Ok(Decoder {
            embed_tokens,
            layers,
            norm: Norm {
                weight: self.norm.weight.to_device(&placement.head)?,
                eps: self.norm.eps,
            },
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
        add(&self.placement.head, tensor_bytes(&self.norm.weight) + head);
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
        let inv_freq = &mut self.rotaries[0].inv_freq;
        if factors.len() != inv_freq.len() {
            return Err(ModelError::Invalid(format!(
                "rope_freqs has {} factors; the heads have {} frequencies",
                factors.len(),
                inv_freq.len()
            )));
        }
        for (f, d) in inv_freq.iter_mut().zip(factors) {
            *f /= d;
        }
        Ok(())
    }

    /// Lengths and rotary tables for a right-padded batch whose rows hold `lengths` real
    /// tokens out of `padded_len`, on every device a layer runs on.
    pub fn context(&self, lengths: &[usize], padded_len: usize) -> Result<BatchContext> {
        BatchContext::new(
            lengths,
            padded_len,
            &self.placement.layers,
            &self.rotaries,
            self.dtype,
            None,
        )
    }

    /// The context of `t` new tokens in each of `batch` rows after those `cache` holds: the
    /// layers attend to the cached keys and add the new ones (generation).
    pub fn cached_context(
        &self,
        cache: &Rc<KvCache>,
        batch: usize,
        t: usize,
    ) -> Result<BatchContext> {
        BatchContext::new(
            &vec![t; batch],
            t,
            &self.placement.layers,
            &self.rotaries,
            self.dtype,
            Some(cache.clone()),
        )
    }

    /// Token ids `[batch, t]` (u32) to hidden states `[batch, t, hidden]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let h = self
            .embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.hidden_size()))?;
        Ok(match self.embed_scale {
            Some(scale) => (h * scale)?,
            None => h,
        })
    }

    /// Layer `i` on hidden states `[batch, t, hidden]`, moved to the layer's device first (a
    /// copy only where the node before it ran elsewhere).
    pub fn layer(&self, i: usize, h: &Tensor, ctx: &BatchContext) -> Result<Tensor> {
        let layer = &self.layers[i];
        let cache = ctx.cache.as_ref().map(|(c, start)| (c.as_ref(), i, *start));
        let ctx = ctx.of_layer(i);
        let dev = &self.placement.layers[i];
        let h = &h.to_device(dev)?;
        let elementwise =
            |f: &dyn Fn() -> candle_core::Result<Tensor>| section(Phase::Elementwise, dev, f);
        let matmul = |l: &Linear, x: &Tensor| section(Phase::Matmul, dev, || l.forward(x));
        let norm = |n: &Option<Norm>, x: Tensor| match n {
            Some(n) => elementwise(&|| n.forward(&x)),
            None => Ok(x),
        };
        let x = norm(&layer.attn_norm, h.clone())?;
        let run = AttentionRun {
            attn: &layer.attn,
            ctx,
            rope: &ctx.ropes[layer.rope],
            style: self.rope_style,
            window: layer.window,
            dtype: self.dtype,
            cache,
        };
        let a = norm(&layer.attn_post_norm, run.forward(&x)?)?;
        let (h, x) = match &layer.ffn_norm {
            Some(n) => section(Phase::Elementwise, dev, || n.forward_added(&a, h))?,
            None => {
                let h = elementwise(&|| &a + h)?;
                (h.clone(), h)
            }
        };
        let y = match &layer.ffn {
            Ffn::Dense(mlp) => mlp.forward(&x, &matmul, &elementwise)?,
            Ffn::Experts(moe) => moe.forward(&x, &matmul, &elementwise)?,
        };
        let y = norm(&layer.ffn_post_norm, y)?;
        Ok(elementwise(&|| &y + &h)?)
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
            let x = self.norm.forward(&h)?;
            let logits = self.lm_head.forward(&x)?.to_dtype(DType::F32)?;
            Ok(match self.final_softcap {
                Some(c) => ((logits / c)?.tanh()? * c)?,
                None => logits,
            })
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
            lm_head: Linear::tied(&tied.embed_tokens),
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
