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

/// Llama 3 frequency-dependent rope scaling (`rope_type = "llama3"`).
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
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    #[serde(default)]
    pub hidden_act: Option<String>,
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

    /// Rotary inverse frequencies, with Llama 3 scaling applied when configured.
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
