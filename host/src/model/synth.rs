//! `splitbench synth-model`: a random-weight model of a given shape, written as Hugging Face
//! writes one (config.json, model.safetensors, tokenizer.json), for tests and GPU benchmarks
//! on machines without the Hub.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

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
}

/// The shape of a synthetic model.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthShape {
    /// A real model's shape; overrides the shape options below.
    #[arg(long)]
    pub preset: Option<Preset>,
    /// llama, mistral, qwen2 or qwen3
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

pub fn write_model(dir: &Path, shape: &SynthShape) -> Result<()> {
    let shape = &shape.resolved();
    let dtype = shape.dtype.candle();
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let tokenizer = byte_tokenizer()?;
    let vocab = shape.vocab;
    let head_dim = shape.head_dim.unwrap_or(shape.hidden / shape.heads);
    let mut config = serde_json::json!({
        "architectures": [match shape.family.as_str() {
            "mistral" => "MistralForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            "qwen3" => "Qwen3ForCausalLM",
            _ => "LlamaForCausalLM",
        }],
        "model_type": shape.family,
        "vocab_size": vocab,
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
    if shape.family == "qwen2" {
        config["attention_bias"] = true.into();
    }
    let mut rng = StdRng::seed_from_u64(shape.seed);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: String, dims: &[usize], scale: f32, offset: f32| -> Result<()> {
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| offset + scale * (rng.random::<f32>() * 2.0 - 1.0))
            .collect();
        let tensor = Tensor::from_vec(values, dims, &Device::Cpu)?.to_dtype(dtype)?;
        tensors.insert(name, tensor);
        Ok(())
    };
    let (h, q, kv, f) = (
        shape.hidden,
        shape.heads * head_dim,
        shape.kv_heads * head_dim,
        shape.intermediate,
    );
    put("model.embed_tokens.weight".into(), &[vocab, h], 1.0, 0.0)?;
    put("model.norm.weight".into(), &[h], 0.1, 1.0)?;
    if !shape.tie_embeddings {
        put("lm_head.weight".into(), &[vocab, h], 0.1, 0.0)?;
    }
    for i in 0..shape.layers {
        let p = format!("model.layers.{i}");
        let s = 1.0 / (h as f32).sqrt();
        put(format!("{p}.input_layernorm.weight"), &[h], 0.1, 1.0)?;
        put(
            format!("{p}.post_attention_layernorm.weight"),
            &[h],
            0.1,
            1.0,
        )?;
        put(format!("{p}.self_attn.q_proj.weight"), &[q, h], s, 0.0)?;
        put(format!("{p}.self_attn.k_proj.weight"), &[kv, h], s, 0.0)?;
        put(format!("{p}.self_attn.v_proj.weight"), &[kv, h], s, 0.0)?;
        put(
            format!("{p}.self_attn.o_proj.weight"),
            &[h, q],
            1.0 / (q as f32).sqrt(),
            0.0,
        )?;
        put(format!("{p}.mlp.gate_proj.weight"), &[f, h], s, 0.0)?;
        put(format!("{p}.mlp.up_proj.weight"), &[f, h], s, 0.0)?;
        put(
            format!("{p}.mlp.down_proj.weight"),
            &[h, f],
            1.0 / (f as f32).sqrt(),
            0.0,
        )?;
        if shape.family == "qwen2" {
            put(format!("{p}.self_attn.q_proj.bias"), &[q], 0.1, 0.0)?;
            put(format!("{p}.self_attn.k_proj.bias"), &[kv], 0.1, 0.0)?;
            put(format!("{p}.self_attn.v_proj.bias"), &[kv], 0.1, 0.0)?;
        }
        if shape.family == "qwen3" {
            put(
                format!("{p}.self_attn.q_norm.weight"),
                &[head_dim],
                0.1,
                1.0,
            )?;
            put(
                format!("{p}.self_attn.k_norm.weight"),
                &[head_dim],
                0.1,
                1.0,
            )?;
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
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
