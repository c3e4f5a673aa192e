//! A decoder's `config.json`, as Hugging Face writes it for Llama, Mistral, Qwen2 and Qwen3.

use serde::Deserialize;

/// Architecture family; decides which optional tensors a layer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

impl Family {
    pub const SUPPORTED: &'static str = "llama, mistral, qwen2, qwen3";

    pub fn from_model_type(model_type: &str) -> Option<Family> {
        match model_type {
            "llama" => Some(Family::Llama),
            "mistral" => Some(Family::Mistral),
            "qwen2" => Some(Family::Qwen2),
            "qwen3" => Some(Family::Qwen3),
            _ => None,
        }
    }
}

/// `rope_scaling`: `default` (none), `linear` (positions divided by `factor`) and `llama3`
/// (frequency-dependent) are applied; other types are refused (`ModelConfig::check`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default)]
    pub factor: f64,
    #[serde(default)]
    pub low_freq_factor: f64,
    #[serde(default)]
    pub high_freq_factor: f64,
    #[serde(default)]
    pub original_max_position_embeddings: usize,
}

/// The fields of `config.json` the decoder uses. Unknown fields are ignored: real configs carry
/// many that do not affect the forward pass.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ModelConfig {
    #[serde(default)]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Absent: the head is `lm_head.weight` where the file has one, else the embedding.
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    // Keys of other families that change the maths; refused by `check` until implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_bias: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f64>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_positions() -> usize {
    4096
}

impl ModelConfig {
    /// Every key that would change the forward pass is one the decoder applies: a model that
    /// runs is the model its config describes. Err names the key, its value and what runs.
    pub fn check(&self) -> Result<(), String> {
        let refuse = |key: &str, value: String, runs: &str| {
            Err(format!(
                "config.json sets {key} = {value}, which splitbench's decoder does not apply \
                 ({runs}); running it would evaluate a different model"
            ))
        };
        if let Some(act) = &self.hidden_act {
            if !matches!(act.as_str(), "silu" | "swish") {
                return refuse("hidden_act", format!("{act:?}"), "it runs silu");
            }
        }
        if let Some(r) = &self.rope_scaling {
            match r.rope_type.as_str() {
                "default" => {}
                "linear" if r.factor > 0.0 => {}
                "llama3"
                    if r.factor > 0.0
                        && r.low_freq_factor > 0.0
                        && r.high_freq_factor > r.low_freq_factor
                        && r.original_max_position_embeddings > 0 => {}
                "linear" | "llama3" => {
                    return Err(format!(
                        "config.json's rope_scaling ({:?}) lacks a positive factor, or for \
                         llama3 low_freq_factor < high_freq_factor and \
                         original_max_position_embeddings",
                        r.rope_type
                    ))
                }
                other => {
                    return refuse(
                        "rope_scaling.rope_type",
                        format!("{other:?}"),
                        "it applies default, linear and llama3",
                    )
                }
            }
        }
        if let Some(f) = self.partial_rotary_factor.filter(|&f| f != 1.0) {
            return refuse(
                "partial_rotary_factor",
                f.to_string(),
                "it rotates whole heads",
            );
        }
        if self.mlp_bias == Some(true) {
            return refuse("mlp_bias", "true".into(), "its MLP has no biases");
        }
        for (key, value) in [
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
        ] {
            if let Some(v) = value {
                return refuse(
                    key,
                    v.to_string(),
                    "it has no soft-capping and scales by 1/√d",
                );
            }
        }
        Ok(())
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Sliding-window attention span, if this model uses one.
    pub fn attention_window(&self, family: Family) -> Option<usize> {
        match family {
            Family::Mistral => self.sliding_window,
            Family::Qwen2 | Family::Qwen3 if self.use_sliding_window == Some(true) => {
                self.sliding_window
            }
            _ => None,
        }
    }

    /// Rotary inverse frequencies, with linear or Llama 3 scaling applied when configured
    /// (linear divides positions by the factor, so each frequency).
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim();
        let base: Vec<f64> = (0..d)
            .step_by(2)
            .map(|i| 1.0 / self.rope_theta.powf(i as f64 / d as f64))
            .collect();
        match &self.rope_scaling {
            Some(s) if s.rope_type == "llama3" => {
                let old = s.original_max_position_embeddings as f64;
                let low_wavelen = old / s.low_freq_factor;
                let high_wavelen = old / s.high_freq_factor;
                base.into_iter()
                    .map(|freq| {
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        if wavelen < high_wavelen {
                            freq
                        } else if wavelen > low_wavelen {
                            freq / s.factor
                        } else {
                            let smooth = (old / wavelen - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * freq / s.factor + smooth * freq
                        }
                    })
                    .collect()
            }
            Some(s) if s.rope_type == "linear" => base.into_iter().map(|f| f / s.factor).collect(),
            _ => base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ModelConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_and_head_dim() {
        let c = config(
            r#"{"vocab_size": 10, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4, "extra": 1}"#,
        );
        assert_eq!(c.kv_heads(), 4);
        assert_eq!(c.head_dim(), 16);
        // 1 / 10000^(i/16) for i = 0, 2, ..., 14: i = 8 gives 1/100.
        let f = c.inv_freq();
        assert_eq!(f.len(), 8);
        assert_eq!(f[0], 1.0);
        assert!((f[4] - 0.01).abs() < 1e-15);
    }

    /// Keys that change the maths are applied or refused by name; keys that cannot are
    /// ignored.
    #[test]
    fn keys_the_decoder_does_not_apply_are_refused() {
        let base = r#""vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
                      "num_hidden_layers": 1, "num_attention_heads": 2"#;
        let with = |extra: &str| config(&format!("{{{base}, {extra}}}"));
        for ok in [
            r#""hidden_act": "silu""#,
            r#""rope_scaling": {"rope_type": "linear", "factor": 2.0}"#,
            r#""rope_scaling": {"type": "default"}"#,
            r#""partial_rotary_factor": 1.0"#,
            r#""mlp_bias": false, "torch_dtype": "bfloat16""#,
        ] {
            assert_eq!(with(ok).check(), Ok(()), "{ok}");
        }
        for (bad, named) in [
            (
                r#""hidden_act": "gelu_pytorch_tanh""#,
                "hidden_act = \"gelu_pytorch_tanh\"",
            ),
            (
                r#""rope_scaling": {"rope_type": "yarn", "factor": 4.0}"#,
                "rope_scaling.rope_type = \"yarn\"",
            ),
            (
                r#""rope_scaling": {"rope_type": "longrope", "factor": 4.0}"#,
                "\"longrope\"",
            ),
            (
                r#""rope_scaling": {"rope_type": "dynamic", "factor": 2.0}"#,
                "\"dynamic\"",
            ),
            (
                r#""rope_scaling": {"rope_type": "linear"}"#,
                "positive factor",
            ),
            (
                r#""partial_rotary_factor": 0.5"#,
                "partial_rotary_factor = 0.5",
            ),
            (r#""mlp_bias": true"#, "mlp_bias = true"),
            (
                r#""final_logit_softcapping": 30.0"#,
                "final_logit_softcapping = 30",
            ),
            (
                r#""query_pre_attn_scalar": 256"#,
                "query_pre_attn_scalar = 256",
            ),
        ] {
            let err = with(bad).check().unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
        // Linear scaling by 2 halves every frequency.
        let scaled = with(r#""rope_scaling": {"rope_type": "linear", "factor": 2.0}"#).inv_freq();
        assert_eq!(
            scaled,
            with("\"x\": 0")
                .inv_freq()
                .iter()
                .map(|f| f / 2.0)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn llama3_scaling_by_hand() {
        // head_dim 4, theta 10000: base freqs 1 and 0.01 (wavelengths 2π and 628).
        // old context 64, low factor 1, high factor 4: high_wavelen 16, low_wavelen 64.
        // 2π < 16 keeps freq 1; 628 > 64 divides 0.01 by factor 8.
        let c = config(
            r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
                "num_hidden_layers": 1, "num_attention_heads": 2,
                "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}"#,
        );
        let f = c.inv_freq();
        assert_eq!(f[0], 1.0);
        assert!((f[1] - 0.01 / 8.0).abs() < 1e-15);
    }
}
