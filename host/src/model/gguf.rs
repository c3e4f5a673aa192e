//! GGUF models (llama.cpp's format): architecture, weights and tokenizer from one file.
//!
//! llama.cpp permutes the q/k rows of llama-architecture checkpoints so that its interleaved
//! rope applies; qwen2/qwen3 files keep the Hugging Face order and use the "halves" rope. We
//! keep the rows as stored and pick the matching rope (`RopeStyle`) instead of undoing the
//! permutation, so quantized rows are never touched. The layout was checked numerically: on the
//! first 4096 WikiText-2 test tokens the SmolLM2 GGUF scores PPL 23.1 with the interleaved rope
//! and 490.5 with the halves rope; `tests/real_model.rs` asserts the plausible band.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::config::ModelConfig;
use super::decoder::{Decoder, RopeStyle};
use super::families::Family;
use super::linear::Linear;
use super::weights::{shape_mismatch, split_rows, Bias, Init, WeightSource};
use super::ModelError;

type Result<T> = std::result::Result<T, ModelError>;

/// How GGUF matrices are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufWeights {
    /// As stored (Q4_1, Q8_0, …), multiplied by candle's quantized matmul.
    Native,
    /// Turned into the model dtype at load.
    Dequantize,
}

pub struct GgufModel {
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
}

fn invalid(msg: impl Into<String>) -> ModelError {
    ModelError::Invalid(msg.into())
}

/// Every tensor's data lies inside the file: a truncated download is reported as such before
/// any tensor is read.
fn check_tensor_extents(content: &gguf_file::Content, file: &File, path: &Path) -> Result<()> {
    let len = file
        .metadata()
        .map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    for (name, info) in &content.tensor_infos {
        let dtype = info.ggml_dtype;
        let bytes = (info.shape.elem_count() / dtype.block_size() * dtype.type_size()) as u64;
        let end = content.tensor_data_offset + info.offset + bytes;
        if end > len {
            return Err(ModelError::Damaged {
                path: path.to_path_buf(),
                why: format!("tensor `{name}` ends at byte {end}, the file has {len}"),
            });
        }
    }
    Ok(())
}

struct Gguf {
    content: gguf_file::Content,
    file: File,
    path: std::path::PathBuf,
}

/// llama.cpp's name for a Hugging Face tensor name of the Llama-shaped families.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.into());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let (module, suffix) = part.rsplit_once('.')?;
    let gguf = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

/// A GGUF file's tensors by Hugging Face name; matrices as stored (`Native`) or dequantized.
struct GgufSource<'a> {
    gguf: &'a mut Gguf,
    config: ModelConfig,
    weights: GgufWeights,
    dtype: DType,
    device: Device,
}

impl GgufSource<'_> {
    fn name(&self, hf: &str) -> Result<String> {
        gguf_name(hf).ok_or_else(|| {
            invalid(format!(
                "the {} model needs `{hf}`, which has no llama.cpp name splitbench knows",
                self.config.model_type
            ))
        })
    }

    /// The file's tensor for `hf`, its shape checked, named as the file names it.
    fn qtensor(&mut self, hf: &str, shape: &[usize]) -> Result<QTensor> {
        let name = self.name(hf)?;
        if !self.gguf.has(&name) {
            return Err(invalid(format!(
                "`{}` has no tensor `{name}`, which a {} model of this config needs",
                self.gguf.path.display(),
                self.config.model_type
            )));
        }
        let q = self.gguf.qtensor(&name, &self.device)?;
        if q.shape().dims() != shape {
            return Err(shape_mismatch(&self.config, &name, q.shape().dims(), shape));
        }
        Ok(q)
    }

    fn dense(&self, q: QTensor) -> Result<Tensor> {
        Ok(q.dequantize(&self.device)?.to_dtype(self.dtype)?)
    }

    fn matrix(&self, q: QTensor) -> Result<QMatMul> {
        Ok(match self.weights {
            GgufWeights::Native => QMatMul::from_qtensor(q)?,
            GgufWeights::Dequantize => QMatMul::Tensor(self.dense(q)?),
        })
    }
}

impl WeightSource for GgufSource<'_> {
    fn contains(&self, hf: &str) -> bool {
        gguf_name(hf).is_some_and(|n| self.gguf.has(&n))
    }

    fn tensor(&mut self, hf: &str, shape: &[usize], _init: Init) -> Result<Tensor> {
        let q = self.qtensor(hf, shape)?;
        self.dense(q)
    }

    fn linears(
        &mut self,
        prefix: &str,
        parts: &[usize],
        inp: usize,
        bias: Bias,
    ) -> Result<Vec<Linear>> {
        let out: usize = parts.iter().sum();
        let w = self.qtensor(&format!("{prefix}.weight"), &[out, inp])?;
        let b = match bias {
            Bias::Yes => {
                let b = self.qtensor(&format!("{prefix}.bias"), &[out])?;
                Some(self.dense(b)?)
            }
            Bias::No => None,
        };
        if parts.len() == 1 {
            return Ok(vec![Linear::new(self.matrix(w)?, b)]);
        }
        // Fused projections split as dense matrices (no family read from GGUF has them).
        split_rows(self.dense(w)?, b, parts)?
            .into_iter()
            .map(|(w, b)| Ok(Linear::new(QMatMul::Tensor(w), b)))
            .collect()
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// llama.cpp ties the head by multiplying with the (possibly quantized) embedding matrix.
    fn tied_head(&mut self, _embed: &Tensor) -> Result<Linear> {
        let c = &self.config;
        let shape = [c.vocab_size, c.hidden_size];
        let q = self.qtensor("model.embed_tokens.weight", &shape)?;
        Ok(Linear::new(self.matrix(q)?, None))
    }
}

impl Gguf {
    fn meta(&self, key: &str) -> Option<&gguf_file::Value> {
        self.content.metadata.get(key)
    }

    fn u32(&self, key: &str) -> Result<u32> {
        self.meta(key)
            .ok_or_else(|| {
                invalid(format!(
                    "`{}` has no metadata key `{key}`",
                    self.path.display()
                ))
            })?
            .to_u32()
            .map_err(|e| invalid(format!("metadata `{key}`: {e}")))
    }

    fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        match self.meta(key) {
            Some(v) => v
                .to_f32()
                .map_err(|e| invalid(format!("metadata `{key}`: {e}"))),
            None => Ok(default),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn qtensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        self.content
            .tensor(&mut self.file, name, device)
            .map_err(|e| invalid(format!("GGUF tensor `{name}`: {e}")))
    }
}

pub fn load_gguf(
    path: &Path,
    dtype: DType,
    device: &Device,
    weights: GgufWeights,
) -> Result<GgufModel> {
    let mut file = File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| {
        let mut magic = [0u8; 4];
        let starts_like_gguf = File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && &magic == b"GGUF";
        if starts_like_gguf {
            ModelError::Damaged {
                path: path.to_path_buf(),
                why: format!("its header cannot be read: {e}"),
            }
        } else {
            invalid(format!("`{}` is not a GGUF file: {e}", path.display()))
        }
    })?;
    check_tensor_extents(&content, &file, path)?;
    let mut g = Gguf {
        content,
        file,
        path: path.to_path_buf(),
    };
    let arch = g
        .meta("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| invalid("the GGUF has no general.architecture"))?;
    let rope_style = match arch.as_str() {
        "llama" => RopeStyle::Interleaved,
        "qwen2" | "qwen3" => RopeStyle::Halves,
        other => {
            return Err(invalid(format!(
                "GGUF architecture `{other}` is not supported; splitbench reads llama, qwen2 and qwen3 GGUF files"
            )))
        }
    };
    let family = Family::from_model_type(&arch)
        .ok_or_else(|| invalid(format!("GGUF architecture `{arch}` has no family")))?;
    let (vocab, hidden) = match g.content.tensor_infos.get("token_embd.weight") {
        Some(info) => info.shape.dims2()?,
        None => return Err(invalid("the GGUF has no token_embd.weight")),
    };
    let heads = g.u32(&format!("{arch}.attention.head_count"))? as usize;
    // llama.cpp's rope scaling: linear is applied; others would run a different model.
    let scaling_type = g
        .meta(&format!("{arch}.rope.scaling.type"))
        .and_then(|v| v.to_string().ok())
        .cloned();
    let rope_scaling = match scaling_type.as_deref() {
        None | Some("none") => None,
        Some("linear") => Some(super::config::RopeScaling {
            rope_type: "linear".into(),
            factor: g.f32_or(&format!("{arch}.rope.scaling.factor"), 1.0)? as f64,
            low_freq_factor: 0.0,
            high_freq_factor: 0.0,
            original_max_position_embeddings: 0,
            short_factor: Vec::new(),
            long_factor: Vec::new(),
            attention_factor: None,
        }),
        Some(other) => {
            return Err(invalid(format!(
                "the GGUF sets {arch}.rope.scaling.type = `{other}`, which splitbench's decoder \
                 does not apply (it applies linear); running it would evaluate a different model"
            )))
        }
    };
    let config = ModelConfig {
        model_type: arch.clone(),
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: g.u32(&format!("{arch}.feed_forward_length"))? as usize,
        num_hidden_layers: g.u32(&format!("{arch}.block_count"))? as usize,
        num_attention_heads: heads,
        num_key_value_heads: Some(g.u32(&format!("{arch}.attention.head_count_kv"))? as usize),
        head_dim: match g.meta(&format!("{arch}.attention.key_length")) {
            Some(v) => Some(v.to_u32()? as usize),
            None => None,
        },
        rms_norm_eps: g.f32_or(&format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-6)? as f64,
        rope_theta: g.f32_or(&format!("{arch}.rope.freq_base"), 10_000.0)? as f64,
        rope_scaling,
        max_position_embeddings: g.u32(&format!("{arch}.context_length"))? as usize,
        tie_word_embeddings: Some(!g.has("output.weight")),
        // Biases where the file has them (qwen2's q, k, v).
        attention_bias: Some(false),
        ..ModelConfig::default()
    };
    config.check(family.spec().applies).map_err(invalid)?;
    let tokenizer = tokenizer_from_metadata(&g.content.metadata)?;
    let mut source = GgufSource {
        gguf: &mut g,
        config: config.clone(),
        weights,
        dtype,
        device: device.clone(),
    };
    let parts = (family.spec().build)(&config, &mut source)?;
    let mut decoder = Decoder::new(config, family, parts, rope_style, dtype, device.clone());
    if g.has("rope_freqs.weight") {
        // Llama 3 rope scaling, stored by llama.cpp as per-frequency divisors.
        let factors: Vec<f32> = g
            .qtensor("rope_freqs.weight", device)?
            .dequantize(&Device::Cpu)?
            .to_vec1()?;
        decoder.divide_rope_frequencies(&factors)?;
    }
    Ok(GgufModel { decoder, tokenizer })
}

fn strings(md: &HashMap<String, gguf_file::Value>, key: &str) -> Result<Vec<String>> {
    md.get(key)
        .ok_or_else(|| invalid(format!("the GGUF has no tokenizer metadata `{key}`")))?
        .to_vec()?
        .iter()
        .map(|v| Ok(v.to_string()?.clone()))
        .collect()
}

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A `tokenizers::Tokenizer` from `tokenizer.ggml.*`: gpt2-style byte-level BPE with the
/// pre-tokenizer llama.cpp names in `tokenizer.ggml.pre`.
pub fn tokenizer_from_metadata(md: &HashMap<String, gguf_file::Value>) -> Result<Tokenizer> {
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if model != "gpt2" {
        return Err(invalid(format!(
            "GGUF tokenizer model `{model}` is not supported; splitbench builds gpt2-style BPE tokenizers"
        )));
    }
    let tokens = strings(md, "tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = strings(md, "tokenizer.ggml.merges")?
        .into_iter()
        .filter_map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()?
            .iter()
            .map(|t| t.to_i32())
            .collect::<candle_core::Result<_>>()?,
        None => vec![1; tokens.len()],
    };
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_else(|| "default".into());
    let bytes_regex = |regex: &str| -> Result<PreTokenizerWrapper> {
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(
                Split::new(
                    SplitPattern::Regex(regex.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| invalid(format!("pre-tokenizer regex: {e}")))?,
            ),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
        ])))
    };
    let (pre_tokenizer, ignore_merges) = match pre.as_str() {
        "default" | "gpt-2" | "gpt2" => (PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)), false),
        "smollm" | "starcoder" | "refact" => (
            PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
            ])),
            false,
        ),
        "llama3" | "llama-bpe" => (bytes_regex(LLAMA3_SPLIT)?, true),
        "qwen2" => (bytes_regex(QWEN2_SPLIT)?, false),
        other => {
            return Err(invalid(format!(
                "GGUF pre-tokenizer `{other}` is not supported; supported: gpt-2, smollm, starcoder, refact, llama3/llama-bpe, qwen2"
            )))
        }
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| invalid(format!("building the BPE tokenizer: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    // Control (3) and user-defined (4) tokens are matched whole in the text, as HF's added tokens.
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == 3 || t == 4)
        .map(|(s, &t)| AddedToken::from(s.clone(), t == 3))
        .collect();
    tokenizer.add_special_tokens(&special);
    let add_bos = md
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(false);
    if add_bos {
        let bos_id = md
            .get("tokenizer.ggml.bos_token_id")
            .ok_or_else(|| invalid("add_bos_token is set but bos_token_id is missing"))?
            .to_u32()?;
        let bos = tokens
            .get(bos_id as usize)
            .ok_or_else(|| invalid(format!("bos_token_id {bos_id} is outside the vocabulary")))?
            .clone();
        let template = TemplateProcessing::builder()
            .try_single(format!("{bos} $A"))
            .map_err(|e| invalid(e.to_string()))?
            .special_tokens(vec![(bos, bos_id)])
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        tokenizer.with_post_processor(Some(template));
    }
    Ok(tokenizer)
}
