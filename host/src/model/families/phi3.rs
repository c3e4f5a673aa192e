//! Phi-3: q, k, v in one `qkv_proj` and gate and up in one `gate_up_proj` (split by rows at
//! load), partial rotary embedding and longrope scaling.

use super::llama::pre_norm;
use super::{AttentionKind, FamilySpec, Parts, Result, LLAMA_ATTENTION};
use crate::model::config::ModelConfig;
use crate::model::layer::{Ffn, Mlp};
use crate::model::weights::{Bias, WeightSource};
use crate::model::ModelError;

pub static PHI3: FamilySpec = FamilySpec {
    name: "phi3",
    model_types: &["phi3"],
    applies: &["partial_rotary_factor"],
    build,
    synth_config: |c| {
        c["partial_rotary_factor"] = 0.5.into();
    },
};

fn build(c: &ModelConfig, w: &mut dyn WeightSource) -> Result<Parts> {
    let kind = AttentionKind {
        fused_qkv: true,
        ..LLAMA_ATTENTION
    };
    pre_norm(c, w, kind, |_, _| true, gate_up)
}

/// The MLP with `gate_up_proj`'s first `intermediate_size` rows as the gate.
fn gate_up(c: &ModelConfig, w: &mut dyn WeightSource, prefix: &str, _: usize) -> Result<Ffn> {
    let (hidden, inter) = (c.hidden_size, c.intermediate_size);
    let p = format!("{prefix}.mlp");
    let mut gate_up = w.linears(
        &format!("{p}.gate_up_proj"),
        &[inter, inter],
        hidden,
        Bias::No,
    )?;
    let down_proj = w.linear(&format!("{p}.down_proj"), hidden, inter, Bias::No)?;
    match (gate_up.pop(), gate_up.pop()) {
        (Some(up_proj), Some(gate_proj)) => Ok(Ffn::Dense(Mlp {
            gate_proj,
            up_proj,
            down_proj,
            act: c.activation(),
        })),
        _ => Err(ModelError::Invalid(format!(
            "`{p}.gate_up_proj` not split in two"
        ))),
    }
}
