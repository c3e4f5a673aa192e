//! Every weight against the shape its config implies, named as the checkpoint names it.

use candle_core::Tensor;

use super::config::ModelConfig;
use super::layer::{Layer, Linear};
use super::ModelError;

type Result<T> = std::result::Result<T, ModelError>;

/// Every weight has the shape the config implies: a config from another model (or a damaged
/// one) is refused at load instead of failing in the first batch or, worse, running.
pub(super) fn check_shapes(
    config: &ModelConfig,
    embed_tokens: &Tensor,
    layers: &[Layer],
    norm: &Tensor,
    lm_head: &Linear,
) -> Result<()> {
    let (hidden, vocab) = (config.hidden_size, config.vocab_size);
    let (q_out, kv_out) = (
        config.num_attention_heads * config.head_dim(),
        config.kv_heads() * config.head_dim(),
    );
    let mismatch = |name: &str, got: &[usize], want: &[usize]| {
        ModelError::Invalid(format!(
            "weight `{name}` has shape {got:?}, but the model's config (hidden_size {hidden}, \
             intermediate_size {}, {} heads of {}, {} KV heads, vocab_size {vocab}) implies \
             {want:?}: the config and the weights come from different models, or the file is \
             damaged",
            config.intermediate_size,
            config.num_attention_heads,
            config.head_dim(),
            config.kv_heads()
        ))
    };
    let tensor = |name: &str, t: &Tensor, want: &[usize]| {
        if t.dims() == want {
            Ok(())
        } else {
            Err(mismatch(name, t.dims(), want))
        }
    };
    let linear = |name: &str, l: &Linear, out: usize, inp: usize| {
        let (weight, bias) = l.dims();
        if weight != [out, inp] {
            return Err(mismatch(&format!("{name}.weight"), &weight, &[out, inp]));
        }
        match bias {
            Some(b) if b != [out] => Err(mismatch(&format!("{name}.bias"), &b, &[out])),
            _ => Ok(()),
        }
    };
    tensor("model.embed_tokens.weight", embed_tokens, &[vocab, hidden])?;
    tensor("model.norm.weight", norm, &[hidden])?;
    linear("lm_head", lm_head, vocab, hidden)?;
    for (i, layer) in layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        let a = &layer.self_attn;
        tensor(
            &format!("{p}.input_layernorm.weight"),
            &layer.input_layernorm,
            &[hidden],
        )?;
        tensor(
            &format!("{p}.post_attention_layernorm.weight"),
            &layer.post_attention_layernorm,
            &[hidden],
        )?;
        linear(&format!("{p}.self_attn.q_proj"), &a.q_proj, q_out, hidden)?;
        linear(&format!("{p}.self_attn.k_proj"), &a.k_proj, kv_out, hidden)?;
        linear(&format!("{p}.self_attn.v_proj"), &a.v_proj, kv_out, hidden)?;
        linear(&format!("{p}.self_attn.o_proj"), &a.o_proj, hidden, q_out)?;
        for (name, norm) in [("q_norm", &a.q_norm), ("k_norm", &a.k_norm)] {
            if let Some(n) = norm {
                tensor(
                    &format!("{p}.self_attn.{name}.weight"),
                    n,
                    &[config.head_dim()],
                )?;
            }
        }
        let inter = config.intermediate_size;
        linear(
            &format!("{p}.mlp.gate_proj"),
            &layer.mlp.gate_proj,
            inter,
            hidden,
        )?;
        linear(
            &format!("{p}.mlp.up_proj"),
            &layer.mlp.up_proj,
            inter,
            hidden,
        )?;
        linear(
            &format!("{p}.mlp.down_proj"),
            &layer.mlp.down_proj,
            hidden,
            inter,
        )?;
    }
    Ok(())
}
