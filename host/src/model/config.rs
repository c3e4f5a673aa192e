//! A decoder's `config.json` as Hugging Face writes it: the keys of every family, read
//! strictly (a key that changes the maths is applied or refused by name).

use serde::Deserialize;

use super::layer::Activation;

/// `rope_scaling`: `default` (none), `linear` (positions divided by `factor`), `llama3`
/// (frequency-dependent) and `longrope` (Phi-3) are applied; other types are refused
/// (`ModelConfig::check`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct RopeScaling {
    #[serde(alias = "type", default)]
    pub rope_type: String,
    #[serde(default)]
    pub factor: f64,
    #[serde(default)]
    pub low_freq_factor: f64,
    #[serde(default)]
    pub high_freq_factor: f64,
    #[serde(default)]
    pub original_max_position_embeddings: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub short_factor: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub long_factor: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_factor: Option<f64>,
}

/// The fields of `config.json` the decoder uses. Unknown fields are ignored: real configs carry
/// many that do not affect the forward pass.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
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
    /// transformers 5's form of `rope_theta`, `rope_scaling` and `partial_rotary_factor`,
    /// flat or per layer type; `parse` reads it into those keys.
    #[serde(default, skip_serializing)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Phi-3 keeps longrope's original context here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
    /// Absent: the head is `lm_head.weight` where the file has one, else the embedding (Gemma:
    /// always the embedding).
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// Qwen2/Qwen3: layers from this index on use the sliding window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_window_layers: Option<usize>,
    /// Per layer, `sliding_attention` or `full_attention` (newer transformers write it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    /// Gemma 3: every n-th layer is global.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window_pattern: Option<usize>,
    /// Gemma 3: the rotary base of the sliding-window layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_local_base_freq: Option<f64>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    /// Gemma's name for the activation (it wins over `hidden_act` there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_activation: Option<String>,
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
    // Mixtures of experts: Mixtral's and Qwen3-MoE's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_local_experts: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_experts: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_experts_per_tok: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe_intermediate_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_topk_prob: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_sparse_step: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_only_layers: Option<Vec<usize>>,
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

/// One entry of transformers 5's `rope_parameters`.
#[derive(Debug, Deserialize)]
struct RopeParameters {
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    partial_rotary_factor: Option<f64>,
    #[serde(flatten)]
    scaling: RopeScaling,
}

/// Keys only some families apply; `check` refuses them in the others.
pub const FAMILY_KEYS: [&str; 4] = [
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "query_pre_attn_scalar",
    "partial_rotary_factor",
];

impl ModelConfig {
    /// A config.json's text, transformers 5's `rope_parameters` read into the keys earlier
    /// versions write.
    pub fn parse(text: &str) -> Result<ModelConfig, String> {
        let mut c: ModelConfig = serde_json::from_str(text)
            .map_err(|e| format!("it is not a decoder's config.json: {e}"))?;
        if let Some(p) = c.rope_parameters.take() {
            let entry = |v: &serde_json::Value, at: &str| {
                serde_json::from_value::<RopeParameters>(v.clone())
                    .map_err(|e| format!("config.json's rope_parameters{at}: {e}"))
            };
            match (p.get("full_attention"), p.get("sliding_attention")) {
                (None, None) => c.apply_rope(entry(&p, "")?),
                (full, sliding) => {
                    if let Some(full) = full {
                        c.apply_rope(entry(full, ".full_attention")?);
                    }
                    if let Some(sliding) = sliding {
                        let local = entry(sliding, ".sliding_attention")?;
                        if !matches!(local.scaling.rope_type.as_str(), "default" | "") {
                            return Err(format!(
                                "config.json sets rope_parameters.sliding_attention.rope_type = \
                                 {:?}, which splitbench's decoder does not apply (its local \
                                 layers rotate unscaled)",
                                local.scaling.rope_type
                            ));
                        }
                        c.rope_local_base_freq = local.rope_theta.or(c.rope_local_base_freq);
                    }
                }
            }
        }
        Ok(c)
    }

    fn apply_rope(&mut self, p: RopeParameters) {
        if let Some(theta) = p.rope_theta {
            self.rope_theta = theta;
        }
        if p.partial_rotary_factor.is_some() {
            self.partial_rotary_factor = p.partial_rotary_factor;
        }
        let original = p.scaling.original_max_position_embeddings;
        if original > 0 && self.original_max_position_embeddings.is_none() {
            self.original_max_position_embeddings = Some(original);
        }
        if !matches!(p.scaling.rope_type.as_str(), "default" | "") {
            self.rope_scaling = Some(p.scaling);
        }
    }

    /// Every key that would change the forward pass is one the decoder applies: a model that
    /// runs is the model its config describes. `applied` lists the keys of `FAMILY_KEYS` the
    /// family applies. Err names the key, its value and what runs.
    pub fn check(&self, applied: &[&str]) -> Result<(), String> {
        let refuse = |key: &str, value: String, runs: &str| {
            Err(format!(
                "config.json sets {key} = {value}, which splitbench's decoder does not apply \
                 ({runs}); running it would evaluate a different model"
            ))
        };
        if let Some(act) = self.activation_name() {
            if Activation::from_name(act).is_none() {
                return refuse(
                    self.activation_key(),
                    format!("{act:?}"),
                    "it runs silu, gelu and gelu_pytorch_tanh",
                );
            }
        }
        if let Some(r) = &self.rope_scaling {
            let rotary_pairs = self.rotary_dim() / 2;
            match r.rope_type.as_str() {
                "default" => {}
                "linear" if r.factor > 0.0 => {}
                "llama3"
                    if r.factor > 0.0
                        && r.low_freq_factor > 0.0
                        && r.high_freq_factor > r.low_freq_factor
                        && r.original_max_position_embeddings > 0 => {}
                "longrope"
                    if r.short_factor.len() == rotary_pairs
                        && r.long_factor.len() == rotary_pairs
                        && self.original_max_position_embeddings.is_some() => {}
                "linear" | "llama3" => {
                    return Err(format!(
                        "config.json's rope_scaling ({:?}) lacks a positive factor, or for \
                         llama3 low_freq_factor < high_freq_factor and \
                         original_max_position_embeddings",
                        r.rope_type
                    ))
                }
                "longrope" => {
                    return Err(format!(
                        "config.json's longrope rope_scaling needs short_factor and \
                         long_factor of {rotary_pairs} values each (half the rotary \
                         dimensions) and original_max_position_embeddings"
                    ))
                }
                other => {
                    return refuse(
                        "rope_scaling.rope_type",
                        format!("{other:?}"),
                        "it applies default, linear, llama3 and longrope",
                    )
                }
            }
        }
        if let Some(f) = self.partial_rotary_factor {
            let rotary = self.head_dim() as f64 * f;
            if !(f > 0.0 && f <= 1.0)
                || rotary.fract() != 0.0
                || !(rotary as usize).is_multiple_of(2)
            {
                return Err(format!(
                    "config.json's partial_rotary_factor = {f} does not give an even number of \
                     rotary dimensions of a head of {}",
                    self.head_dim()
                ));
            }
        }
        for (key, value) in [
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            (
                "partial_rotary_factor",
                self.partial_rotary_factor.filter(|&f| f != 1.0),
            ),
        ] {
            if let Some(v) = value {
                if !applied.contains(&key) {
                    return refuse(
                        key,
                        v.to_string(),
                        &format!("the {} family has no such parameter", self.model_type),
                    );
                }
            }
        }
        if let Some(types) = &self.layer_types {
            if types.len() != self.num_hidden_layers {
                return Err(format!(
                    "config.json's layer_types lists {} layers; num_hidden_layers is {}",
                    types.len(),
                    self.num_hidden_layers
                ));
            }
            if let Some(t) = types
                .iter()
                .find(|t| !matches!(t.as_str(), "sliding_attention" | "full_attention"))
            {
                return refuse(
                    "layer_types",
                    format!("[.., {t:?}, ..]"),
                    "it knows sliding_attention and full_attention",
                );
            }
        }
        Ok(())
    }

    /// The activation's key in config.json: Gemma's `hidden_activation` wins where present.
    fn activation_key(&self) -> &'static str {
        if self.hidden_activation.is_some() {
            "hidden_activation"
        } else {
            "hidden_act"
        }
    }

    fn activation_name(&self) -> Option<&str> {
        self.hidden_activation
            .as_deref()
            .or(self.hidden_act.as_deref())
    }

    /// The MLP's activation; SiLU where the config names none.
    pub fn activation(&self) -> Activation {
        self.activation_name()
            .and_then(Activation::from_name)
            .unwrap_or(Activation::Silu)
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The leading dimensions of each head that rotate.
    pub fn rotary_dim(&self) -> usize {
        let f = self.partial_rotary_factor.unwrap_or(1.0);
        (self.head_dim() as f64 * f) as usize
    }

    /// The context the rotary frequencies were trained for (longrope's switch point).
    pub fn original_context(&self) -> usize {
        self.original_max_position_embeddings
            .unwrap_or(self.max_position_embeddings)
    }

    /// Layer `i`'s sliding window from `layer_types` where the config has it, else by the
    /// family's own rule (`sliding`).
    pub fn layer_window(&self, i: usize, sliding: bool) -> Option<usize> {
        let sliding = match &self.layer_types {
            Some(types) => types.get(i).is_some_and(|t| t == "sliding_attention"),
            None => sliding,
        };
        if sliding {
            self.sliding_window
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ModelConfig {
        ModelConfig::parse(json).unwrap()
    }

    /// transformers 5's `rope_parameters`, flat and per layer type, as earlier keys.
    #[test]
    fn rope_parameters_read_as_earlier_keys() {
        let base = r#""vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
                      "num_hidden_layers": 1, "num_attention_heads": 2"#;
        let c = config(&format!(
            r#"{{{base}, "rope_parameters": {{"rope_theta": 500.0, "rope_type": "longrope",
                "partial_rotary_factor": 0.5, "original_max_position_embeddings": 16,
                "short_factor": [1.0], "long_factor": [2.0]}}}}"#
        ));
        assert_eq!(c.rope_theta, 500.0);
        assert_eq!(c.partial_rotary_factor, Some(0.5));
        assert_eq!(c.original_max_position_embeddings, Some(16));
        assert_eq!(c.rope_scaling.as_ref().unwrap().long_factor, [2.0]);
        let c = config(&format!(
            r#"{{{base}, "rope_parameters": {{
                "full_attention": {{"rope_theta": 1e6, "rope_type": "linear", "factor": 8.0}},
                "sliding_attention": {{"rope_theta": 1e4, "rope_type": "default"}}}}}}"#
        ));
        assert_eq!((c.rope_theta, c.rope_local_base_freq), (1e6, Some(1e4)));
        assert_eq!(c.rope_scaling.as_ref().unwrap().factor, 8.0);
        let c = config(&format!(
            r#"{{{base}, "rope_parameters": {{"rope_theta": 10.0, "rope_type": "default"}}}}"#
        ));
        assert_eq!((c.rope_theta, c.rope_scaling.is_none()), (10.0, true));
        let err = ModelConfig::parse(&format!(
            r#"{{{base}, "rope_parameters": {{
                "sliding_attention": {{"rope_theta": 1e4, "rope_type": "yarn"}}}}}}"#
        ))
        .unwrap_err();
        assert!(
            err.contains("sliding_attention.rope_type = \"yarn\""),
            "{err}"
        );
    }

    #[test]
    fn defaults_and_head_dim() {
        let c = config(
            r#"{"vocab_size": 10, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4, "extra": 1}"#,
        );
        assert_eq!(c.kv_heads(), 4);
        assert_eq!(c.head_dim(), 16);
        assert_eq!(c.rotary_dim(), 16);
        assert_eq!(c.activation(), Activation::Silu);
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
            r#""hidden_activation": "gelu_pytorch_tanh", "hidden_act": "gelu""#,
            r#""rope_scaling": {"rope_type": "linear", "factor": 2.0}"#,
            r#""rope_scaling": {"type": "default"}"#,
            r#""partial_rotary_factor": 1.0"#,
            r#""mlp_bias": false, "torch_dtype": "bfloat16""#,
            r#""layer_types": ["sliding_attention"]"#,
        ] {
            assert_eq!(with(ok).check(&[]), Ok(()), "{ok}");
        }
        for (bad, named) in [
            (r#""hidden_act": "relu""#, "hidden_act = \"relu\""),
            (
                r#""hidden_activation": "relu", "hidden_act": "silu""#,
                "hidden_activation = \"relu\"",
            ),
            (
                r#""rope_scaling": {"rope_type": "yarn", "factor": 4.0}"#,
                "rope_scaling.rope_type = \"yarn\"",
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
                r#""rope_scaling": {"rope_type": "longrope", "short_factor": [1.0]}"#,
                "short_factor and long_factor of 2 values",
            ),
            (
                r#""partial_rotary_factor": 0.5"#,
                "partial_rotary_factor = 0.5",
            ),
            (
                r#""partial_rotary_factor": 0.3"#,
                "even number of rotary dimensions",
            ),
            (
                r#""final_logit_softcapping": 30.0"#,
                "final_logit_softcapping = 30",
            ),
            (
                r#""query_pre_attn_scalar": 256"#,
                "query_pre_attn_scalar = 256",
            ),
            (r#""layer_types": ["chunked_attention"]"#, "layer_types"),
            (r#""layer_types": []"#, "lists 0 layers"),
        ] {
            let err = with(bad).check(&[]).unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
        // A family that applies them takes them.
        assert_eq!(
            with(r#""final_logit_softcapping": 30.0, "partial_rotary_factor": 0.5"#)
                .check(&FAMILY_KEYS),
            Ok(())
        );
    }

    #[test]
    fn layer_windows() {
        let c = config(
            r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "sliding_window": 4,
                "num_hidden_layers": 2, "num_attention_heads": 2,
                "layer_types": ["full_attention", "sliding_attention"]}"#,
        );
        assert_eq!(
            (c.layer_window(0, true), c.layer_window(1, false)),
            (None, Some(4))
        );
        let c = ModelConfig {
            layer_types: None,
            ..c
        };
        assert_eq!(
            (c.layer_window(0, true), c.layer_window(1, false)),
            (Some(4), None)
        );
    }
}
