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

/// The shape of a synthetic model.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthShape {
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
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let tokenizer = byte_tokenizer()?;
    let vocab = shape.vocab;
    let head_dim = shape.head_dim.unwrap_or(shape.hidden / shape.heads);
    let mut config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": shape.family,
        "vocab_size": vocab,
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
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
        tensors.insert(name, Tensor::from_vec(values, dims, &Device::Cpu)?);
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
