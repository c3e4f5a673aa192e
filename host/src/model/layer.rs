//! The parts every family's layers are made of: RMS norms, attention projections, gated MLPs
//! and mixtures of experts, arranged pre-norm (Llama), sandwiched (Gemma) or post-norm
//! (OLMo 2), and moving them between devices.

use candle_core::{DType, Device, Tensor};

use super::linear::{tensor_bytes, Linear};
use super::moe::Moe;
use super::{cpu, gpu};

/// RMS norm `x / rms(x) · w`. Gemma's `(1 + w)` form is stored with the 1 added at load.
#[derive(Debug, Clone)]
pub struct Norm {
    pub weight: Tensor,
    pub eps: f32,
}

impl Norm {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match gpu::fused_rms_norm(x, &self.weight, self.eps)? {
            Some(y) => Ok(y),
            None => candle_nn::ops::rms_norm(x, &self.weight, self.eps),
        }
    }

    /// `(x + residual, norm(x + residual))`: one kernel on a GPU.
    pub fn forward_added(
        &self,
        x: &Tensor,
        residual: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        if let Some(both) = gpu::fused_add_rms_norm(x, residual, &self.weight, self.eps)? {
            return Ok(both);
        }
        let sum = (x + residual)?;
        let normed = self.forward(&sum)?;
        Ok((sum, normed))
    }

    fn to_device(&self, device: &Device) -> candle_core::Result<Norm> {
        Ok(Norm {
            weight: self.weight.to_device(device)?,
            eps: self.eps,
        })
    }
}

/// The MLP's gate activation (`hidden_act` / `hidden_activation` in config.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu`, `swish`.
    Silu,
    /// `gelu_pytorch_tanh`, `gelu_new`: the tanh approximation.
    GeluTanh,
    /// `gelu`: the exact erf form.
    Gelu,
}

impl Activation {
    pub fn from_name(name: &str) -> Option<Activation> {
        match name {
            "silu" | "swish" => Some(Activation::Silu),
            "gelu_pytorch_tanh" | "gelu_new" => Some(Activation::GeluTanh),
            "gelu" => Some(Activation::Gelu),
            _ => None,
        }
    }
}

/// Where a query/key norm applies: over each head (Qwen3, Gemma 3) or over the whole
/// projection (OLMo 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNormScope {
    PerHead,
    Whole,
}

#[derive(Debug, Clone)]
pub struct QkNorm {
    pub q: Norm,
    pub k: Norm,
    pub scope: QkNormScope,
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub qk_norm: Option<QkNorm>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies the scores: 1/√head_dim, or Gemma's 1/√query_pre_attn_scalar.
    pub scale: f64,
    /// Gemma 2's `c · tanh(s / c)` on the scaled scores.
    pub softcap: Option<f64>,
}

/// Runs a projection, timed as a matmul.
pub type MatmulStep<'a> = dyn Fn(&Linear, &Tensor) -> candle_core::Result<Tensor> + 'a;
/// Runs an elementwise step, timed as one.
pub type ElementwiseStep<'a> =
    dyn Fn(&dyn Fn() -> candle_core::Result<Tensor>) -> candle_core::Result<Tensor> + 'a;

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    pub act: Activation,
}

impl Mlp {
    /// `down(act(gate(x)) · up(x))`, with the matmuls and the elementwise part timed apart.
    pub fn forward(
        &self,
        x: &Tensor,
        matmul: &MatmulStep,
        elementwise: &ElementwiseStep,
    ) -> candle_core::Result<Tensor> {
        let (gate, up) = (matmul(&self.gate_proj, x)?, matmul(&self.up_proj, x)?);
        let y = elementwise(&|| match self.act {
            Activation::Silu if gate.device().is_cpu() && gate.dtype() == DType::F32 => {
                gate.apply_op2_no_bwd(&up, &cpu::SiluMul)
            }
            Activation::Silu => match gpu::fused_silu_mul(&gate, &up)? {
                Some(y) => Ok(y),
                None => candle_nn::ops::silu(&gate)? * &up,
            },
            Activation::GeluTanh => gate.gelu()? * &up,
            Activation::Gelu => gate.gelu_erf()? * &up,
        })?;
        matmul(&self.down_proj, &y)
    }

    pub(super) fn to_device(&self, device: &Device) -> candle_core::Result<Mlp> {
        Ok(Mlp {
            gate_proj: self.gate_proj.to_device(device)?,
            up_proj: self.up_proj.to_device(device)?,
            down_proj: self.down_proj.to_device(device)?,
            act: self.act,
        })
    }

    pub(super) fn bytes(&self) -> u64 {
        [&self.gate_proj, &self.up_proj, &self.down_proj]
            .iter()
            .map(|l| l.bytes())
            .sum()
    }
}

/// The feed-forward half of a layer.
#[derive(Debug, Clone)]
pub enum Ffn {
    Dense(Mlp),
    Experts(Moe),
}

/// One decoder layer: `h += post(attn(pre(h)))`, then `h += post(ffn(pre(h)))`, each norm
/// present or not as the family has it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub attn_norm: Option<Norm>,
    pub attn: Attention,
    pub attn_post_norm: Option<Norm>,
    pub ffn_norm: Option<Norm>,
    pub ffn: Ffn,
    pub ffn_post_norm: Option<Norm>,
    /// The sliding window of this layer's attention, if it has one.
    pub window: Option<usize>,
    /// Which of the decoder's rotary tables this layer uses (Gemma 3: local or global).
    pub rope: usize,
}

fn norm_to(n: &Option<Norm>, device: &Device) -> candle_core::Result<Option<Norm>> {
    n.as_ref().map(|n| n.to_device(device)).transpose()
}

fn norm_bytes(n: &Option<Norm>) -> u64 {
    n.as_ref().map_or(0, |n| tensor_bytes(&n.weight))
}

impl Layer {
    pub(super) fn to_device(&self, device: &Device) -> candle_core::Result<Layer> {
        let a = &self.attn;
        let qk_norm = match &a.qk_norm {
            Some(n) => Some(QkNorm {
                q: n.q.to_device(device)?,
                k: n.k.to_device(device)?,
                scope: n.scope,
            }),
            None => None,
        };
        Ok(Layer {
            attn_norm: norm_to(&self.attn_norm, device)?,
            attn: Attention {
                q_proj: a.q_proj.to_device(device)?,
                k_proj: a.k_proj.to_device(device)?,
                v_proj: a.v_proj.to_device(device)?,
                o_proj: a.o_proj.to_device(device)?,
                qk_norm,
                ..a.clone()
            },
            attn_post_norm: norm_to(&self.attn_post_norm, device)?,
            ffn_norm: norm_to(&self.ffn_norm, device)?,
            ffn: match &self.ffn {
                Ffn::Dense(m) => Ffn::Dense(m.to_device(device)?),
                Ffn::Experts(m) => Ffn::Experts(m.to_device(device)?),
            },
            ffn_post_norm: norm_to(&self.ffn_post_norm, device)?,
            ..self.clone()
        })
    }

    pub(super) fn bytes(&self) -> u64 {
        let a = &self.attn;
        let qk = a
            .qk_norm
            .as_ref()
            .map_or(0, |n| tensor_bytes(&n.q.weight) + tensor_bytes(&n.k.weight));
        let ffn = match &self.ffn {
            Ffn::Dense(m) => m.bytes(),
            Ffn::Experts(m) => m.bytes(),
        };
        [
            &self.attn_norm,
            &self.attn_post_norm,
            &self.ffn_norm,
            &self.ffn_post_norm,
        ]
        .into_iter()
        .map(norm_bytes)
        .sum::<u64>()
            + [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj]
                .iter()
                .map(|l| l.bytes())
                .sum::<u64>()
            + qk
            + ffn
    }
}
