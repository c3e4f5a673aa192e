//! Model families: each a module that builds its layers from a `WeightSource` by Hugging Face
//! tensor names, registered once in `FAMILIES`. The decoder runs whatever they build.

mod gemma;
mod llama;
mod moe;
mod olmo2;
mod phi3;

use candle_core::Tensor;

use super::config::ModelConfig;
use super::layer::{Attention, Layer, Mlp, Norm, QkNorm, QkNormScope};
use super::linear::Linear;
use super::rope::Rotary;
use super::weights::{Bias, Init, WeightSource};
use super::ModelError;

type Result<T> = std::result::Result<T, ModelError>;

/// What a family builds: everything the decoder runs, on the source's device.
pub struct Parts {
    pub embed_tokens: Tensor,
    /// Gemma multiplies the embeddings by √hidden.
    pub embed_scale: Option<f64>,
    pub layers: Vec<Layer>,
    pub norm: Norm,
    pub lm_head: Linear,
    /// Gemma 2's `c · tanh(logits / c)`.
    pub final_softcap: Option<f64>,
    /// The rotary frequencies the layers index (`Layer::rope`).
    pub rotaries: Vec<Rotary>,
}

/// A family: its names and how it builds a model.
pub struct FamilySpec {
    /// As records and `synth-model --family` name it.
    pub name: &'static str,
    /// `model_type` values of config.json it reads.
    pub model_types: &'static [&'static str],
    /// Keys of `config::FAMILY_KEYS` it applies.
    pub applies: &'static [&'static str],
    pub build: fn(&ModelConfig, &mut dyn WeightSource) -> Result<Parts>,
    /// The keys `synth-model` adds to a config.json of this family.
    pub synth_config: fn(&mut serde_json::Value),
}

/// Every family splitbench runs. Adding one: its module and a line here.
pub static FAMILIES: &[&FamilySpec] = &[
    &llama::LLAMA,
    &llama::MISTRAL,
    &llama::QWEN2,
    &llama::QWEN3,
    &gemma::GEMMA2,
    &gemma::GEMMA3,
    &phi3::PHI3,
    &olmo2::OLMO2,
    &moe::MIXTRAL,
    &moe::QWEN3_MOE,
];

/// A family, as records name it.
#[derive(Clone, Copy)]
pub struct Family(&'static FamilySpec);

impl Family {
    pub fn from_model_type(model_type: &str) -> Option<Family> {
        FAMILIES
            .iter()
            .find(|f| f.model_types.contains(&model_type))
            .map(|f| Family(f))
    }

    pub fn from_name(name: &str) -> Option<Family> {
        FAMILIES.iter().find(|f| f.name == name).map(|f| Family(f))
    }

    /// The families' names, for messages.
    pub fn supported() -> String {
        let names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.join(", ")
    }

    pub fn spec(self) -> &'static FamilySpec {
        self.0
    }
}

impl PartialEq for Family {
    fn eq(&self, other: &Family) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for Family {}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl serde::Serialize for Family {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name)
    }
}

impl<'de> serde::Deserialize<'de> for Family {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Family, D::Error> {
        let name = String::deserialize(d)?;
        Family::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown model family `{name}`; splitbench runs {}",
                Family::supported()
            ))
        })
    }
}

// The pieces families share.

/// An RMS norm of `dim`, with Gemma's `1 + w` folded in when `offset` is 1.
fn norm(w: &mut dyn WeightSource, name: &str, dim: usize, offset: f32) -> Result<Norm> {
    let eps = w.config().rms_norm_eps as f32;
    let weight = w.tensor(
        name,
        &[dim],
        Init::Norm {
            offset: 1.0 - offset,
        },
    )?;
    let weight = if offset == 0.0 {
        weight
    } else {
        (weight + offset as f64)?
    };
    Ok(Norm { weight, eps })
}

/// `model.embed_tokens.weight` `[vocab, hidden]`.
fn embedding(w: &mut dyn WeightSource) -> Result<Tensor> {
    let c = w.config();
    let shape = [c.vocab_size, c.hidden_size];
    w.tensor("model.embed_tokens.weight", &shape, Init::Embedding)
}

/// The LM head as Hugging Face ties it: the embedding when the config says so (an
/// `lm_head.weight` in the file is then not used), or when it says nothing and the file has
/// no head (`tied_default` for families that tie unless told otherwise); a head the config
/// calls separate must be in the file.
fn lm_head(w: &mut dyn WeightSource, embed: &Tensor, tied_default: Option<bool>) -> Result<Linear> {
    let c = w.config();
    let (vocab, hidden) = (c.vocab_size, c.hidden_size);
    let tied = match (
        c.tie_word_embeddings.or(tied_default),
        w.contains("lm_head.weight"),
    ) {
        (Some(tied), true) => tied,
        (None, has_head) => !has_head,
        (Some(true), false) => true,
        (Some(false), false) => {
            return Err(ModelError::Invalid(
                "config.json sets tie_word_embeddings = false, but the weights hold no \
                 lm_head.weight: the head is missing from the files (or the config belongs to \
                 another model)"
                    .into(),
            ))
        }
    };
    if tied {
        w.tied_head(embed)
    } else {
        let mut head = w.linears("lm_head", &[vocab], hidden, Bias::No)?;
        head.pop()
            .ok_or_else(|| ModelError::Invalid("no lm_head".into()))
    }
}

/// The layer count the weights hold beyond the config's: a config from a smaller model is
/// refused instead of running part of the model.
fn refuse_extra_layers(w: &dyn WeightSource, probe: &str) -> Result<()> {
    let c = w.config();
    let extra = format!("model.layers.{}.{probe}", c.num_hidden_layers);
    if w.contains(&extra) {
        return Err(ModelError::Invalid(format!(
            "the weights hold `{extra}`, but config.json says num_hidden_layers = {}: the config \
             and the weights come from different models",
            c.num_hidden_layers
        )));
    }
    Ok(())
}

/// How a family's attention differs from Llama's.
#[derive(Clone, Copy)]
struct AttentionKind {
    /// q, k, v in one `qkv_proj` (Phi-3).
    fused_qkv: bool,
    /// q/k norms and their scope, and their weight offset (Gemma 3: 1).
    qk_norm: Option<(QkNormScope, f32)>,
    /// Biases on q, k and v (Qwen2), besides `attention_bias`'s on all four.
    qkv_bias: bool,
}

const LLAMA_ATTENTION: AttentionKind = AttentionKind {
    fused_qkv: false,
    qk_norm: None,
    qkv_bias: false,
};

/// `{prefix}.self_attn`.
fn attention(w: &mut dyn WeightSource, prefix: &str, kind: AttentionKind) -> Result<Attention> {
    let c = w.config().clone();
    let (heads, kv_heads, d, hidden) = (
        c.num_attention_heads,
        c.kv_heads(),
        c.head_dim(),
        c.hidden_size,
    );
    // Qwen2's q, k, v always have biases and its o never (it ignores `attention_bias`).
    let all_bias = c.attention_bias == Some(true) && !kind.qkv_bias;
    let qkv_bias = Bias::from(all_bias || kind.qkv_bias);
    let p = format!("{prefix}.self_attn");
    let (q_proj, k_proj, v_proj) = if kind.fused_qkv {
        let parts = [heads * d, kv_heads * d, kv_heads * d];
        let mut qkv = w.linears(&format!("{p}.qkv_proj"), &parts, hidden, qkv_bias)?;
        let v = qkv.pop();
        let k = qkv.pop();
        let q = qkv.pop();
        match (q, k, v) {
            (Some(q), Some(k), Some(v)) => (q, k, v),
            _ => {
                return Err(ModelError::Invalid(format!(
                    "`{p}.qkv_proj` not split in three"
                )))
            }
        }
    } else {
        (
            w.linear(&format!("{p}.q_proj"), heads * d, hidden, qkv_bias)?,
            w.linear(&format!("{p}.k_proj"), kv_heads * d, hidden, qkv_bias)?,
            w.linear(&format!("{p}.v_proj"), kv_heads * d, hidden, qkv_bias)?,
        )
    };
    let o_proj = w.linear(&format!("{p}.o_proj"), hidden, heads * d, all_bias.into())?;
    let qk_norm = match kind.qk_norm {
        None => None,
        Some((scope, offset)) => {
            let (q_dim, k_dim) = match scope {
                QkNormScope::PerHead => (d, d),
                QkNormScope::Whole => (heads * d, kv_heads * d),
            };
            Some(QkNorm {
                q: norm(w, &format!("{p}.q_norm.weight"), q_dim, offset)?,
                k: norm(w, &format!("{p}.k_norm.weight"), k_dim, offset)?,
                scope,
            })
        }
    };
    Ok(Attention {
        q_proj,
        k_proj,
        v_proj,
        o_proj,
        qk_norm,
        heads,
        kv_heads,
        head_dim: d,
        scale: 1.0 / c.query_pre_attn_scalar.unwrap_or(d as f64).sqrt(),
        softcap: c.attn_logit_softcapping,
    })
}

/// A gated MLP at `prefix` with Hugging Face's projection names (`gate`, `up`, `down`) and
/// `intermediate` units.
fn mlp(
    w: &mut dyn WeightSource,
    prefix: &str,
    names: [&str; 3],
    intermediate: usize,
) -> Result<Mlp> {
    let c = w.config();
    let (hidden, act, bias) = (
        c.hidden_size,
        c.activation(),
        Bias::from(c.mlp_bias == Some(true)),
    );
    let [gate, up, down] = names;
    Ok(Mlp {
        gate_proj: w.linear(&format!("{prefix}.{gate}"), intermediate, hidden, bias)?,
        up_proj: w.linear(&format!("{prefix}.{up}"), intermediate, hidden, bias)?,
        down_proj: w.linear(&format!("{prefix}.{down}"), hidden, intermediate, bias)?,
        act,
    })
}

const MLP_NAMES: [&str; 3] = ["gate_proj", "up_proj", "down_proj"];

#[cfg(test)]
mod tests;
