//! Gemma 2 and Gemma 3 (text): embeddings scaled by √hidden, norms of the `1 + w` form before
//! and after both halves of a layer, GELU-tanh, scores scaled by 1/√query_pre_attn_scalar.
//! Gemma 2 soft-caps scores and logits and alternates sliding and global layers; Gemma 3 adds
//! q/k norms and gives its local layers their own rotary base.

use super::{
    attention, embedding, lm_head, mlp, norm, refuse_extra_layers, AttentionKind, FamilySpec,
    Parts, Result, LLAMA_ATTENTION, MLP_NAMES,
};
use crate::model::config::{ModelConfig, FAMILY_KEYS};
use crate::model::layer::{Ffn, Layer, QkNormScope};
use crate::model::rope::Rotary;
use crate::model::weights::WeightSource;

pub static GEMMA2: FamilySpec = FamilySpec {
    name: "gemma2",
    model_types: &["gemma2"],
    applies: &FAMILY_KEYS,
    build: |c, w| build(c, w, LLAMA_ATTENTION, |_, i| i % 2 == 0),
    synth_config: |c| {
        c["hidden_activation"] = "gelu_pytorch_tanh".into();
        c["query_pre_attn_scalar"] = 24.into();
        c["attn_logit_softcapping"] = 50.0.into();
        c["final_logit_softcapping"] = 30.0.into();
        c["sliding_window"] = 16.into();
    },
};

pub static GEMMA3: FamilySpec = FamilySpec {
    name: "gemma3",
    model_types: &["gemma3_text"],
    applies: &FAMILY_KEYS,
    build: |c, w| {
        let kind = AttentionKind {
            qk_norm: Some((QkNormScope::PerHead, 1.0)),
            ..LLAMA_ATTENTION
        };
        build(c, w, kind, |c, i| {
            (i + 1) % c.sliding_window_pattern.unwrap_or(6) != 0
        })
    },
    synth_config: |c| {
        c["hidden_activation"] = "gelu_pytorch_tanh".into();
        c["query_pre_attn_scalar"] = 24.into();
        c["sliding_window"] = 16.into();
        c["sliding_window_pattern"] = 2.into();
        c["rope_local_base_freq"] = 10_000.0.into();
        c["rope_theta"] = 1_000_000.0.into();
    },
};

/// Gemma ties its head to the embedding unless the config says otherwise.
fn build(
    c: &ModelConfig,
    w: &mut dyn WeightSource,
    kind: AttentionKind,
    sliding: fn(&ModelConfig, usize) -> bool,
) -> Result<Parts> {
    let hidden = c.hidden_size;
    let embed_tokens = embedding(w)?;
    let final_norm = norm(w, "model.norm.weight", hidden, 1.0)?;
    let head = lm_head(w, &embed_tokens, Some(true))?;
    // Gemma 3's local layers rotate with their own base and no scaling; its global layers
    // (and all of Gemma 2's) with rope_theta and rope_scaling.
    let mut rotaries = vec![Rotary::new(c, c.rope_theta, c.rope_scaling.as_ref())];
    if let Some(local) = c.rope_local_base_freq {
        rotaries.push(Rotary::new(c, local, None));
    }
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let mut norm_at = |name: &str| norm(w, &format!("{p}.{name}.weight"), hidden, 1.0);
        let attn_norm = norm_at("input_layernorm")?;
        let attn_post_norm = norm_at("post_attention_layernorm")?;
        let ffn_norm = norm_at("pre_feedforward_layernorm")?;
        let ffn_post_norm = norm_at("post_feedforward_layernorm")?;
        let attn = attention(w, &p, kind)?;
        let ffn = mlp(w, &format!("{p}.mlp"), MLP_NAMES, c.intermediate_size)?;
        let window = c.layer_window(i, sliding(c, i));
        layers.push(Layer {
            attn_norm: Some(attn_norm),
            attn,
            attn_post_norm: Some(attn_post_norm),
            ffn_norm: Some(ffn_norm),
            ffn: Ffn::Dense(ffn),
            ffn_post_norm: Some(ffn_post_norm),
            window,
            rope: if window.is_some() {
                rotaries.len() - 1
            } else {
                0
            },
        });
    }
    refuse_extra_layers(w, "input_layernorm.weight")?;
    Ok(Parts {
        embed_tokens,
        embed_scale: Some((hidden as f64).sqrt()),
        layers,
        norm: final_norm,
        lm_head: head,
        final_softcap: c.final_logit_softcapping,
        rotaries,
    })
}
