//! `splitbench synth-model`: a random-weight model of a given shape, written as Hugging Face
//! writes one (config.json, model.safetensors, tokenizer.json), for tests and GPU benchmarks
//! on machines without the Hub.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::quantized::QMatMul;
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::config::ModelConfig;
use super::families::Family;
use super::linear::Linear;
use super::weights::{split_rows, Bias, Init, WeightSource};
use super::ModelError;
use crate::config::ModelDtype;

/// Real models' shapes, for benchmarks that should cost what the real model costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Qwen3-0.6B: 28 layers, hidden 1024, 16 heads (8 KV) of 128, MLP 3072, vocab 151936.
    #[value(name = "qwen3-0.6b")]
    Qwen3_0_6b,
    /// Llama-3-8B: 32 layers, hidden 4096, 32 heads (8 KV), MLP 14336, vocab 128256.
    #[value(name = "llama-3-8b")]
    Llama3_8b,
    /// Qwen3-30B-A3B: 48 layers, hidden 2048, 32 heads (4 KV) of 128, 128 experts of 768,
    /// 8 per token, vocab 151936.
    #[value(name = "qwen3-30b-a3b")]
    Qwen3_30bA3b,
}

/// The shape of a synthetic model.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthShape {
    /// A real model's shape; overrides the shape options below.
    #[arg(long)]
    pub preset: Option<Preset>,
    /// The model family (`splitbench synth-model --help` lists them in the error for an
    /// unknown one): llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3, olmo2, mixtral,
    /// qwen3_moe.
    #[arg(long, default_value = "llama")]
    pub family: String,
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    #[arg(long, default_value_t = 128)]
    pub intermediate: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 2)]
    pub kv_heads: usize,
    /// Defaults to hidden / heads.
    #[arg(long)]
    pub head_dim: Option<usize>,
    #[arg(long, default_value_t = 2048)]
    pub max_positions: usize,
    #[arg(long)]
    pub tie_embeddings: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Embedding rows (the byte tokenizer uses 257).
    #[arg(long, default_value_t = 320)]
    pub vocab: usize,
    #[arg(long, default_value_t = 10000.0)]
    pub rope_theta: f64,
    /// Weight dtype in model.safetensors.
    #[arg(long, value_enum, default_value_t = ModelDtype::F32)]
    pub dtype: ModelDtype,
    /// Mixtures of experts: the number of experts (default 4).
    #[arg(long)]
    pub experts: Option<usize>,
    /// Mixtures of experts: the experts each token is routed to (default 2).
    #[arg(long)]
    pub experts_per_token: Option<usize>,
    /// Qwen3-MoE: each expert's intermediate size (default 48).
    #[arg(long)]
    pub moe_intermediate: Option<usize>,
}

impl SynthShape {
    /// The shape with its preset applied.
    pub fn resolved(&self) -> SynthShape {
        let mut s = self.clone();
        match self.preset {
            None => {}
            Some(Preset::Qwen3_0_6b) => {
                s.family = "qwen3".into();
                (s.layers, s.hidden, s.intermediate) = (28, 1024, 3072);
                (s.heads, s.kv_heads, s.head_dim) = (16, 8, Some(128));
                (s.vocab, s.rope_theta, s.tie_embeddings) = (151_936, 1_000_000.0, true);
                s.max_positions = 40_960;
            }
            Some(Preset::Llama3_8b) => {
                s.family = "llama".into();
                (s.layers, s.hidden, s.intermediate) = (32, 4096, 14_336);
                (s.heads, s.kv_heads, s.head_dim) = (32, 8, Some(128));
                (s.vocab, s.rope_theta, s.tie_embeddings) = (128_256, 500_000.0, false);
                s.max_positions = 8192;
            }
            Some(Preset::Qwen3_30bA3b) => {
                s.family = "qwen3_moe".into();
                (s.layers, s.hidden, s.intermediate) = (48, 2048, 6144);
                (s.heads, s.kv_heads, s.head_dim) = (32, 4, Some(128));
                (s.vocab, s.rope_theta, s.tie_embeddings) = (151_936, 1_000_000.0, false);
                (s.experts, s.experts_per_token, s.moe_intermediate) =
                    (Some(128), Some(8), Some(768));
                s.max_positions = 40_960;
            }
        }
        s
    }
}

/// A byte-level BPE over the 256 byte symbols with a `<s>` BOS that the post-processor adds,
/// like the Llama-family tokenizers.
pub fn byte_tokenizer() -> Result<Tokenizer> {
    let alphabet = ByteLevel::alphabet();
    let mut symbols: Vec<char> = alphabet.into_iter().collect();
    symbols.sort_unstable();
    let vocab: Vocab = symbols
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32 + 1))
        .chain([("<s>".to_string(), 0)])
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .map_err(|e| anyhow::anyhow!("building the BPE model: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.add_special_tokens(&[AddedToken::from("<s>", true)]);
    let template = TemplateProcessing::builder()
        .try_single("<s> $A")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .special_tokens(vec![("<s>", 0)])
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tokenizer.with_post_processor(Some(template));
    Ok(tokenizer)
}

/// Draws each tensor a family asks for, uniformly as `Init` says, in the order asked, and keeps
/// it to write out.
struct RandomSource {
    config: ModelConfig,
    rng: StdRng,
    dtype: candle_core::DType,
    tensors: HashMap<String, Tensor>,
}

impl RandomSource {
    fn draw(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor, ModelError> {
        let (scale, offset) = init.range();
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| offset + scale * (self.rng.random::<f32>() * 2.0 - 1.0))
            .collect();
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(self.dtype)?;
        self.tensors.insert(name.to_string(), t.clone());
        Ok(t)
    }
}

impl WeightSource for RandomSource {
    /// Only the head is asked about, and a synthetic model has one exactly when untied.
    fn contains(&self, name: &str) -> bool {
        name == "lm_head.weight" && self.config.tie_word_embeddings == Some(false)
    }

    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor, ModelError> {
        self.draw(name, shape, init)
    }

    fn linears(
        &mut self,
        prefix: &str,
        parts: &[usize],
        inp: usize,
        bias: Bias,
    ) -> Result<Vec<Linear>, ModelError> {
        let out: usize = parts.iter().sum();
        let init = if prefix == "lm_head" {
            Init::Head
        } else {
            Init::Matrix { fan_in: inp }
        };
        let w = self.draw(&format!("{prefix}.weight"), &[out, inp], init)?;
        let b = match bias {
            Bias::Yes => Some(self.draw(&format!("{prefix}.bias"), &[out], Init::Bias)?),
            Bias::No => None,
        };
        Ok(split_rows(w, b, parts)?
            .into_iter()
            .map(|(w, b)| Linear::new(QMatMul::Tensor(w), b))
            .collect())
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }
}

/// The config.json of `shape`, as Hugging Face writes one for its family.
fn config_json(shape: &SynthShape, family: Family) -> Result<serde_json::Value> {
    let dtype = shape.dtype.candle();
    let head_dim = shape.head_dim.unwrap_or(shape.hidden / shape.heads);
    let mut config = serde_json::json!({
        "model_type": family.spec().model_types[0],
        "vocab_size": shape.vocab,
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": 1e-6,
        "rope_theta": shape.rope_theta,
        "torch_dtype": match dtype {
            candle_core::DType::BF16 => "bfloat16",
            candle_core::DType::F16 => "float16",
            _ => "float32",
        },
        "max_position_embeddings": shape.max_positions,
        "tie_word_embeddings": shape.tie_embeddings,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "hidden_act": "silu",
    });
    (family.spec().synth_config)(&mut config);
    if let Some(experts) = shape.experts {
        for key in ["num_experts", "num_local_experts"] {
            if config.get(key).is_some() {
                config[key] = experts.into();
            }
        }
    }
    if let Some(k) = shape.experts_per_token {
        config["num_experts_per_tok"] = k.into();
    }
    if let Some(m) = shape.moe_intermediate {
        config["moe_intermediate_size"] = m.into();
    }
    Ok(config)
}

pub fn write_model(dir: &Path, shape: &SynthShape) -> Result<()> {
    let shape = &shape.resolved();
    let family = Family::from_name(&shape.family).with_context(|| {
        format!(
            "no model family `{}`; synth-model makes {}",
            shape.family,
            Family::supported()
        )
    })?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let tokenizer = byte_tokenizer()?;
    let config = config_json(shape, family)?;
    let model_config =
        ModelConfig::parse(&config.to_string()).map_err(|e| anyhow::anyhow!("{e}"))?;
    model_config
        .check(family.spec().applies)
        .map_err(|why| anyhow::anyhow!("{why}"))?;
    let mut source = RandomSource {
        config: model_config.clone(),
        rng: StdRng::seed_from_u64(shape.seed),
        dtype: shape.dtype.candle(),
        tensors: HashMap::new(),
    };
    (family.spec().build)(&model_config, &mut source)?;
    candle_core::safetensors::save(&source.tensors, dir.join("model.safetensors"))?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    tokenizer
        .save(dir.join("tokenizer.json"), true)
        .map_err(|e| anyhow::anyhow!("writing tokenizer.json: {e}"))?;
    Ok(())
}

/// A 4-layer random Llama (hidden 32, vocabulary 320) on the CPU, for unit tests.
#[cfg(test)]
pub fn tiny_decoder() -> super::Decoder {
    let dir = crate::scratch::ScratchDir::new("tiny-decoder");
    let shape = SynthShape {
        family: "llama".into(),
        layers: 4,
        hidden: 32,
        intermediate: 64,
        heads: 4,
        kv_heads: 2,
        head_dim: None,
        max_positions: 256,
        tie_embeddings: false,
        seed: 9,
        vocab: 320,
        preset: None,
        rope_theta: 10000.0,
        dtype: ModelDtype::F32,
        experts: None,
        experts_per_token: None,
        moe_intermediate: None,
    };
    write_model(&dir, &shape).unwrap();
    super::load::load_safetensors(
        &super::load::local_files(&dir).unwrap(),
        candle_core::DType::F32,
        &Device::Cpu,
        super::load::Projections::Dense,
    )
    .unwrap()
    .decoder
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        shape: SynthShape,
    }

    #[test]
    fn presets_are_the_real_models_shapes() {
        let shape = Args::parse_from(["x", "--preset", "llama-3-8b", "--layers", "2"])
            .shape
            .resolved();
        assert_eq!(
            (shape.layers, shape.hidden, shape.intermediate, shape.vocab),
            (32, 4096, 14_336, 128_256)
        );
        assert_eq!(
            (shape.heads, shape.kv_heads, shape.head_dim),
            (32, 8, Some(128))
        );
        let shape = Args::parse_from(["x", "--preset", "qwen3-0.6b"])
            .shape
            .resolved();
        assert_eq!(shape.family, "qwen3");
        assert_eq!(
            (shape.layers, shape.hidden, shape.head_dim),
            (28, 1024, Some(128))
        );
        assert!(shape.tie_embeddings);
        let shape = Args::parse_from(["x", "--layers", "3"]).shape.resolved();
        assert_eq!((shape.family.as_str(), shape.layers), ("llama", 3));
    }
}
