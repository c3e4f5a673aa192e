//! Rotary position embedding: which dimensions of a head rotate, at which frequencies, and
//! the cos/sin tables of a batch.

use super::config::{ModelConfig, RopeScaling};

/// One set of rotary frequencies (a model has one, Gemma 3 two: local and global layers).
#[derive(Debug, Clone, PartialEq)]
pub struct Rotary {
    /// Inverse frequencies of the `rotary_dim / 2` pairs.
    pub inv_freq: Vec<f32>,
    /// Phi-3's longrope: the frequencies used once a row is longer than the original context.
    pub long: Option<(Vec<f32>, usize)>,
    /// The leading dimensions of each head that rotate (all of them unless
    /// `partial_rotary_factor` < 1); the rest pass through.
    pub rotary_dim: usize,
    /// Multiplies cos and sin (longrope's attention factor; 1 otherwise).
    pub attention_factor: f32,
}

impl Rotary {
    /// The frequencies of `config`'s global layers, with base `theta` and `scaling`.
    pub fn new(config: &ModelConfig, theta: f64, scaling: Option<&RopeScaling>) -> Rotary {
        let rotary_dim = config.rotary_dim();
        let base: Vec<f64> = (0..rotary_dim)
            .step_by(2)
            .map(|i| 1.0 / theta.powf(i as f64 / rotary_dim as f64))
            .collect();
        let f32s = |v: Vec<f64>| v.into_iter().map(|f| f as f32).collect::<Vec<f32>>();
        let mut rotary = Rotary {
            inv_freq: f32s(base.clone()),
            long: None,
            rotary_dim,
            attention_factor: 1.0,
        };
        let Some(s) = scaling else {
            return rotary;
        };
        match s.rope_type.as_str() {
            "llama3" => rotary.inv_freq = f32s(llama3(&base, s)),
            "linear" => rotary.inv_freq = f32s(base.iter().map(|f| f / s.factor).collect()),
            "longrope" => {
                // As transformers' `_compute_longrope_parameters`: each frequency divided by its
                // factor; cos and sin scaled by √(1 + ln(f) / ln(original)), f the context's
                // growth, unless the config gives the factor.
                let original = config.original_context();
                let by = |factors: &[f64]| -> Vec<f32> {
                    f32s(base.iter().zip(factors).map(|(f, d)| f / d).collect())
                };
                rotary.inv_freq = by(&s.short_factor);
                rotary.long = Some((by(&s.long_factor), original));
                let growth = config.max_position_embeddings as f64 / original as f64;
                rotary.attention_factor = match s.attention_factor {
                    Some(a) => a as f32,
                    None if growth <= 1.0 => 1.0,
                    None => (1.0 + growth.ln() / (original as f64).ln()).sqrt() as f32,
                };
            }
            _ => {}
        }
        rotary
    }

    /// The frequencies for a batch whose longest row holds `longest` tokens.
    pub fn frequencies(&self, longest: usize) -> &[f32] {
        match &self.long {
            Some((long, original)) if longest > *original => long,
            _ => &self.inv_freq,
        }
    }

    /// `cos` and `sin` of `[t, rotary_dim / 2]` angles of positions `start..start + t` (times
    /// the attention factor).
    pub fn tables(&self, start: usize, t: usize, longest: usize) -> (Vec<f32>, Vec<f32>) {
        let freq = self.frequencies(longest);
        let mut cos = Vec::with_capacity(t * freq.len());
        let mut sin = Vec::with_capacity(t * freq.len());
        for p in start..start + t {
            for f in freq {
                let a = p as f32 * f;
                cos.push(a.cos() * self.attention_factor);
                sin.push(a.sin() * self.attention_factor);
            }
        }
        (cos, sin)
    }
}

/// Llama 3's frequency-dependent scaling.
fn llama3(base: &[f64], s: &RopeScaling) -> Vec<f64> {
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    base.iter()
        .map(|&freq| {
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wavelen {
                freq
            } else if wavelen > low_wavelen {
                freq / s.factor
            } else {
                let smooth =
                    (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * freq / s.factor + smooth * freq
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ModelConfig {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#""vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
                          "num_hidden_layers": 1, "num_attention_heads": 2"#;

    #[test]
    fn default_frequencies_by_hand() {
        let c = config(
            r#"{"vocab_size": 10, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4}"#,
        );
        // 1 / 10000^(i/16) for i = 0, 2, ..., 14: i = 8 gives 1/100.
        let r = Rotary::new(&c, c.rope_theta, c.rope_scaling.as_ref());
        assert_eq!(r.inv_freq.len(), 8);
        assert_eq!(r.inv_freq[0], 1.0);
        assert!((r.inv_freq[4] - 0.01).abs() < 1e-9);
    }

    #[test]
    fn llama3_scaling_by_hand() {
        // head_dim 4, theta 10000: base freqs 1 and 0.01 (wavelengths 2π and 628).
        // old context 64, low factor 1, high factor 4: high_wavelen 16, low_wavelen 64.
        // 2π < 16 keeps freq 1; 628 > 64 divides 0.01 by factor 8.
        let c = config(&format!(
            r#"{{{BASE}, "rope_scaling": {{"rope_type": "llama3", "factor": 8.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64}}}}"#
        ));
        let r = Rotary::new(&c, c.rope_theta, c.rope_scaling.as_ref());
        assert_eq!(r.inv_freq[0], 1.0);
        assert!((r.inv_freq[1] - 0.01 / 8.0).abs() < 1e-9);
    }

    #[test]
    fn linear_scaling_halves_every_frequency() {
        let c = config(&format!(
            r#"{{{BASE}, "rope_scaling": {{"rope_type": "linear", "factor": 2.0}}}}"#
        ));
        let plain = Rotary::new(&c, c.rope_theta, None);
        let scaled = Rotary::new(&c, c.rope_theta, c.rope_scaling.as_ref());
        let halved: Vec<f32> = plain.inv_freq.iter().map(|f| f / 2.0).collect();
        assert_eq!(scaled.inv_freq, halved);
    }

    #[test]
    fn longrope_by_hand() {
        // head_dim 4 → frequencies 1 and 0.01; context 64 from 16: factor √(1 + ln 4 / ln 16)
        // = √1.5.
        let c = config(&format!(
            r#"{{{BASE}, "max_position_embeddings": 64, "original_max_position_embeddings": 16,
                "rope_scaling": {{"type": "longrope", "short_factor": [1.0, 2.0],
                                  "long_factor": [4.0, 8.0]}}}}"#
        ));
        let r = Rotary::new(&c, c.rope_theta, c.rope_scaling.as_ref());
        assert_eq!(r.frequencies(16), &[1.0, 0.005]);
        assert_eq!(r.frequencies(17), &[0.25, 0.00125]);
        assert!((r.attention_factor - 1.5f32.sqrt()).abs() < 1e-7);
        let (cos, sin) = r.tables(0, 2, 8);
        assert_eq!(r.tables(1, 1, 8), (cos[2..].to_vec(), sin[2..].to_vec()));
        assert!((cos[0] - 1.5f32.sqrt()).abs() < 1e-7 && sin[0] == 0.0);
        assert!((sin[2] - 1f32.sin() * 1.5f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn partial_rotary_rotates_the_leading_dimensions() {
        let c = config(
            r#"{"vocab_size": 10, "hidden_size": 32, "intermediate_size": 8,
                "num_hidden_layers": 1, "num_attention_heads": 2, "partial_rotary_factor": 0.5}"#,
        );
        // head_dim 16, half of it rotates: 4 frequencies, 1 / 10000^(i/8).
        let r = Rotary::new(&c, c.rope_theta, None);
        assert_eq!(r.rotary_dim, 8);
        assert_eq!(r.inv_freq.len(), 4);
        assert!((r.inv_freq[2] - 0.01).abs() < 1e-9);
    }
}
