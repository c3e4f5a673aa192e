//! Mixtures of experts: Mixtral (Mistral's layers, `block_sparse_moe` with experts `w1` gate,
//! `w3` up, `w2` down, weights always renormalized) and Qwen3-MoE (Qwen3's layers, `mlp.gate`
//! and `mlp.experts.{e}`, renormalized with `norm_topk_prob`, dense MLPs on `mlp_only_layers`
//! and off the `decoder_sparse_step`).

use super::llama::{pre_norm, qwen_sliding, QWEN3_ATTENTION};
use super::{mlp, FamilySpec, Result, LLAMA_ATTENTION, MLP_NAMES};
use crate::model::config::ModelConfig;
use crate::model::layer::Ffn;
use crate::model::moe::Moe;
use crate::model::weights::{Bias, WeightSource};
use crate::model::ModelError;

pub static MIXTRAL: FamilySpec = FamilySpec {
    name: "mixtral",
    model_types: &["mixtral"],
    applies: &[],
    build: |c, w| {
        let experts = c.num_local_experts.unwrap_or(8);
        pre_norm(
            c,
            w,
            LLAMA_ATTENTION,
            |_, _| true,
            |c, w, p, _| {
                experts_at(
                    c,
                    w,
                    &format!("{p}.block_sparse_moe"),
                    experts,
                    ["w1", "w3", "w2"],
                    c.intermediate_size,
                    true,
                )
            },
        )
    },
    synth_config: |c| {
        c["num_local_experts"] = 4.into();
        c["num_experts_per_tok"] = 2.into();
    },
};

pub static QWEN3_MOE: FamilySpec = FamilySpec {
    name: "qwen3_moe",
    model_types: &["qwen3_moe"],
    applies: &[],
    build: |c, w| {
        pre_norm(c, w, QWEN3_ATTENTION, qwen_sliding, |c, w, p, i| {
            let experts = c.num_experts.or(c.num_local_experts).unwrap_or(0);
            let dense = c.mlp_only_layers.as_deref().unwrap_or(&[]).contains(&i)
                || experts == 0
                || (i + 1) % c.decoder_sparse_step.unwrap_or(1).max(1) != 0;
            let p = format!("{p}.mlp");
            if dense {
                return Ok(Ffn::Dense(mlp(w, &p, MLP_NAMES, c.intermediate_size)?));
            }
            let inter = c.moe_intermediate_size.unwrap_or(c.intermediate_size);
            experts_at(
                c,
                w,
                &p,
                experts,
                MLP_NAMES,
                inter,
                c.norm_topk_prob == Some(true),
            )
        })
    },
    synth_config: |c| {
        c["num_experts"] = 4.into();
        c["num_experts_per_tok"] = 2.into();
        c["moe_intermediate_size"] = 48.into();
        c["norm_topk_prob"] = true.into();
        c["decoder_sparse_step"] = 1.into();
        c["mlp_only_layers"] = serde_json::json!([]);
    },
};

/// A router `{prefix}.gate` and `experts` experts `{prefix}.experts.{e}` with `names`.
fn experts_at(
    c: &ModelConfig,
    w: &mut dyn WeightSource,
    prefix: &str,
    experts: usize,
    names: [&str; 3],
    intermediate: usize,
    renormalize: bool,
) -> Result<Ffn> {
    let top_k = c.num_experts_per_tok.unwrap_or(2);
    if top_k == 0 || top_k > experts {
        return Err(ModelError::Invalid(format!(
            "config.json routes each token to num_experts_per_tok = {top_k} of {experts} experts"
        )));
    }
    let router = w.linear(&format!("{prefix}.gate"), experts, c.hidden_size, Bias::No)?;
    let experts = (0..experts)
        .map(|e| mlp(w, &format!("{prefix}.experts.{e}"), names, intermediate))
        .collect::<Result<Vec<_>>>()?;
    Ok(Ffn::Experts(Moe {
        router,
        experts,
        top_k,
        renormalize,
    }))
}
