//! Llama and the families shaped like it: Mistral (a sliding window on every layer), Qwen2
//! (biases on q, k, v) and Qwen3 (q/k norms per head).

use super::{
    attention, embedding, lm_head, mlp, norm, refuse_extra_layers, AttentionKind, FamilySpec,
    Parts, Result, LLAMA_ATTENTION, MLP_NAMES,
};
use crate::model::config::ModelConfig;
use crate::model::layer::{Ffn, Layer, QkNormScope};
use crate::model::rope::Rotary;
use crate::model::weights::WeightSource;

pub static LLAMA: FamilySpec = FamilySpec {
    name: "llama",
    model_types: &["llama"],
    applies: &[],
    build: |c, w| pre_norm(c, w, LLAMA_ATTENTION, |_, _| false, dense),
    synth_config: |_| {},
};

pub static MISTRAL: FamilySpec = FamilySpec {
    name: "mistral",
    model_types: &["mistral"],
    applies: &[],
    build: |c, w| pre_norm(c, w, LLAMA_ATTENTION, |_, _| true, dense),
    synth_config: |_| {},
};

pub static QWEN2: FamilySpec = FamilySpec {
    name: "qwen2",
    model_types: &["qwen2"],
    applies: &[],
    build: |c, w| {
        let kind = AttentionKind {
            qkv_bias: true,
            ..LLAMA_ATTENTION
        };
        pre_norm(c, w, kind, qwen_sliding, dense)
    },
    synth_config: |_| {},
};

pub static QWEN3: FamilySpec = FamilySpec {
    name: "qwen3",
    model_types: &["qwen3"],
    applies: &[],
    build: |c, w| pre_norm(c, w, QWEN3_ATTENTION, qwen_sliding, dense),
    synth_config: |_| {},
};

pub(super) const QWEN3_ATTENTION: AttentionKind = AttentionKind {
    qk_norm: Some((QkNormScope::PerHead, 0.0)),
    ..LLAMA_ATTENTION
};

/// Qwen2/Qwen3: with `use_sliding_window`, the layers from `max_window_layers` on.
pub(super) fn qwen_sliding(c: &ModelConfig, i: usize) -> bool {
    c.use_sliding_window == Some(true) && i >= c.max_window_layers.unwrap_or(0)
}

/// The Llama-shaped feed-forward half: a dense gated MLP.
pub(super) fn dense(
    c: &ModelConfig,
    w: &mut dyn WeightSource,
    prefix: &str,
    _: usize,
) -> Result<Ffn> {
    Ok(Ffn::Dense(mlp(
        w,
        &format!("{prefix}.mlp"),
        MLP_NAMES,
        c.intermediate_size,
    )?))
}

/// Embedding, final norm and head (in that order, as `synth-model` draws them), then the
/// layers: pre-norm attention and a pre-norm feed-forward half that `ffn` builds.
pub(super) fn pre_norm(
    c: &ModelConfig,
    w: &mut dyn WeightSource,
    kind: AttentionKind,
    sliding: fn(&ModelConfig, usize) -> bool,
    ffn: impl Fn(&ModelConfig, &mut dyn WeightSource, &str, usize) -> Result<Ffn>,
) -> Result<Parts> {
    let hidden = c.hidden_size;
    let embed_tokens = embedding(w)?;
    let final_norm = norm(w, "model.norm.weight", hidden, 0.0)?;
    let head = lm_head(w, &embed_tokens, None)?;
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let attn_norm = norm(w, &format!("{p}.input_layernorm.weight"), hidden, 0.0)?;
        let ffn_norm = norm(
            w,
            &format!("{p}.post_attention_layernorm.weight"),
            hidden,
            0.0,
        )?;
        let attn = attention(w, &p, kind)?;
        layers.push(Layer {
            attn_norm: Some(attn_norm),
            attn,
            attn_post_norm: None,
            ffn_norm: Some(ffn_norm),
            ffn: ffn(c, w, &p, i)?,
            ffn_post_norm: None,
            window: c.layer_window(i, sliding(c, i)),
            rope: 0,
        });
    }
    refuse_extra_layers(w, "input_layernorm.weight")?;
    Ok(Parts {
        embed_tokens,
        embed_scale: None,
        layers,
        norm: final_norm,
        lm_head: head,
        final_softcap: None,
        rotaries: vec![Rotary::new(c, c.rope_theta, c.rope_scaling.as_ref())],
    })
}
