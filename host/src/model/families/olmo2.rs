//! OLMo 2: norms after attention and after the MLP instead of before, and q/k norms over the
//! whole projection.

use super::{
    attention, embedding, lm_head, mlp, norm, refuse_extra_layers, AttentionKind, FamilySpec,
    Parts, Result, LLAMA_ATTENTION, MLP_NAMES,
};
use crate::model::config::ModelConfig;
use crate::model::layer::{Ffn, Layer, QkNormScope};
use crate::model::rope::Rotary;
use crate::model::weights::WeightSource;

pub static OLMO2: FamilySpec = FamilySpec {
    name: "olmo2",
    model_types: &["olmo2"],
    applies: &[],
    build,
    synth_config: |_| {},
};

fn build(c: &ModelConfig, w: &mut dyn WeightSource) -> Result<Parts> {
    let hidden = c.hidden_size;
    let embed_tokens = embedding(w)?;
    let final_norm = norm(w, "model.norm.weight", hidden, 0.0)?;
    let head = lm_head(w, &embed_tokens, None)?;
    let kind = AttentionKind {
        qk_norm: Some((QkNormScope::Whole, 0.0)),
        ..LLAMA_ATTENTION
    };
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let attn_post_norm = norm(
            w,
            &format!("{p}.post_attention_layernorm.weight"),
            hidden,
            0.0,
        )?;
        let ffn_post_norm = norm(
            w,
            &format!("{p}.post_feedforward_layernorm.weight"),
            hidden,
            0.0,
        )?;
        let attn = attention(w, &p, kind)?;
        let ffn = mlp(w, &format!("{p}.mlp"), MLP_NAMES, c.intermediate_size)?;
        layers.push(Layer {
            attn_norm: None,
            attn,
            attn_post_norm: Some(attn_post_norm),
            ffn_norm: None,
            ffn: Ffn::Dense(ffn),
            ffn_post_norm: Some(ffn_post_norm),
            window: c.layer_window(i, false),
            rope: 0,
        });
    }
    refuse_extra_layers(w, "post_attention_layernorm.weight")?;
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
