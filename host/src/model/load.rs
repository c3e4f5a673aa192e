//! Finding a model's files (a local folder or the Hub) and loading safetensors weights into
//! the decoder, optionally quantizing the projections at load.

use std::path::{Path, PathBuf};

use candle_core::{
    quantized::{GgmlDType, QMatMul, QTensor},
    safetensors::MmapedSafetensors,
    DType, Device, Tensor,
};

use super::config::{Family, ModelConfig};
use super::decoder::{Decoder, RopeStyle};
use super::layer::{Attention, Layer, Linear, Mlp};
use super::ModelError;

type Result<T> = std::result::Result<T, ModelError>;

/// The files one safetensors model consists of.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: Vec<PathBuf>,
}

impl ModelFiles {
    pub fn all(&self) -> Vec<&Path> {
        let mut files = vec![self.config.as_path(), self.tokenizer.as_path()];
        files.extend(self.weights.iter().map(PathBuf::as_path));
        files
    }
}

/// Shard names listed by a `model.safetensors.index.json`, in first-appearance order.
fn shards_of_index(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        ModelError::Invalid(format!("`{}` is not valid JSON: {e}", index.display()))
    })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::Invalid(format!("`{}` has no weight_map", index.display())))?;
    let mut shards: Vec<String> = Vec::new();
    for file in map.values().filter_map(|v| v.as_str()) {
        if !shards.iter().any(|s| s == file) {
            shards.push(file.to_string());
        }
    }
    Ok(shards)
}

/// A local model folder: config.json, tokenizer.json and model.safetensors (or shards).
pub fn local_files(dir: &Path) -> Result<ModelFiles> {
    if !dir.is_dir() {
        return Err(ModelError::Invalid(format!(
            "model folder `{}` {}; set model.path to a folder holding config.json, \
             tokenizer.json and *.safetensors, or use model.id for a Hub model",
            dir.display(),
            if dir.exists() {
                "is a file, not a folder"
            } else {
                "does not exist"
            }
        )));
    }
    let need = |name: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(ModelError::Invalid(format!(
                "model folder `{}` has no {name}",
                dir.display()
            )))
        }
    };
    let config = need("config.json")?;
    let tokenizer = need("tokenizer.json")?;
    let index = dir.join("model.safetensors.index.json");
    let weights = if index.is_file() {
        shards_of_index(&index)?
            .into_iter()
            .map(|s| need(&s))
            .collect::<Result<Vec<_>>>()?
    } else {
        vec![need("model.safetensors")?]
    };
    Ok(ModelFiles {
        config,
        tokenizer,
        weights,
    })
}

fn hub_repo(
    id: &str,
    revision: &str,
    cache_dir: Option<&Path>,
) -> Result<hf_hub::api::sync::ApiRepo> {
    let mut builder = hf_hub::api::sync::ApiBuilder::from_env().with_progress(false);
    if let Some(dir) = cache_dir {
        builder = builder.with_cache_dir(dir.to_path_buf());
    }
    let api = builder
        .build()
        .map_err(|e| ModelError::Invalid(format!("cannot set up the Hub client: {e}")))?;
    Ok(api.repo(hf_hub::Repo::with_revision(
        id.to_string(),
        hf_hub::RepoType::Model,
        revision.to_string(),
    )))
}

fn hub_error(id: &str, revision: &str, name: &str, e: hf_hub::api::sync::ApiError) -> ModelError {
    ModelError::Invalid(format!(
        "cannot fetch `{name}` of `{id}` at revision `{revision}` from the Hub: {e}. \
         Check the repo id, your network or HF_ENDPOINT, or download the model and set model.path"
    ))
}

/// One file of a Hub repo (a GGUF, say), from the cache when it is there.
pub fn hub_file(id: &str, revision: &str, name: &str, cache_dir: Option<&Path>) -> Result<PathBuf> {
    hub_repo(id, revision, cache_dir)?
        .get(name)
        .map_err(|e| hub_error(id, revision, name, e))
}

/// A Hub model through hf-hub: `HF_ENDPOINT` is honoured, files already in the cache are reused.
pub fn hub_files(id: &str, revision: &str, cache_dir: Option<&Path>) -> Result<ModelFiles> {
    let repo = hub_repo(id, revision, cache_dir)?;
    let get = |name: &str| -> Result<PathBuf> {
        repo.get(name).map_err(|e| hub_error(id, revision, name, e))
    };
    let config = get("config.json")?;
    let tokenizer = get("tokenizer.json")?;
    let weights = match repo.get("model.safetensors.index.json") {
        Ok(index) => shards_of_index(&index)?
            .iter()
            .map(|s| get(s))
            .collect::<Result<Vec<_>>>()?,
        Err(_) => vec![get("model.safetensors")?],
    };
    Ok(ModelFiles {
        config,
        tokenizer,
        weights,
    })
}

pub fn read_config(path: &Path) -> Result<(ModelConfig, Family)> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let config: ModelConfig = serde_json::from_str(&text).map_err(|e| {
        ModelError::Invalid(format!("`{}` is not a decoder config: {e}", path.display()))
    })?;
    config
        .check()
        .map_err(|why| ModelError::Invalid(format!("{why} (`{}`)", path.display())))?;
    let family = Family::from_model_type(&config.model_type).ok_or_else(|| {
        ModelError::Invalid(format!(
            "unsupported architecture `{}` in `{}`; splitbench runs {}",
            config.model_type,
            path.display(),
            Family::SUPPORTED
        ))
    })?;
    Ok((config, family))
}

/// Weight storage chosen at load for the projection matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projections {
    Dense,
    Quantize(GgmlDType),
}

/// Loads tensors by checkpoint name from memory-mapped safetensors.
struct SafetensorsSource {
    st: MmapedSafetensors,
    dtype: DType,
    device: Device,
    projections: Projections,
    /// Projections left dense because their input size is not a multiple of the block size.
    kept_dense: Vec<String>,
}

impl SafetensorsSource {
    fn has(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }

    fn tensor(&self, name: &str) -> Result<Tensor> {
        let t = self.st.load(name, &self.device).map_err(|e| {
            ModelError::Invalid(format!("checkpoint tensor `{name}` cannot be loaded: {e}"))
        })?;
        Ok(t.to_dtype(self.dtype)?)
    }

    fn linear(&mut self, prefix: &str) -> Result<Linear> {
        let weight_name = format!("{prefix}.weight");
        let w = self.tensor(&weight_name)?;
        let bias_name = format!("{prefix}.bias");
        let bias = if self.has(&bias_name) {
            Some(self.tensor(&bias_name)?)
        } else {
            None
        };
        let weight = match self.projections {
            Projections::Dense => QMatMul::Tensor(w),
            Projections::Quantize(q) => {
                if w.dim(1)? % q.block_size() == 0 {
                    let qt = QTensor::quantize(&w.to_dtype(DType::F32)?, q)?;
                    QMatMul::from_qtensor(qt)?
                } else {
                    self.kept_dense.push(weight_name);
                    QMatMul::Tensor(w)
                }
            }
        };
        Ok(Linear::new(weight, bias))
    }
}

/// Why a weights file could not be opened: a damaged file says so, and what to do.
fn unreadable_weights(e: candle_core::Error) -> ModelError {
    match e {
        candle_core::Error::WithPath { inner, path } => match *inner {
            candle_core::Error::Io(source) => ModelError::Io { path, source },
            other => ModelError::Damaged {
                path,
                why: other.to_string(),
            },
        },
        other => ModelError::Candle(other),
    }
}

/// A loaded decoder plus what the record needs to know about its weights.
pub struct LoadedWeights {
    pub decoder: Decoder,
    pub kept_dense: Vec<String>,
}

pub fn load_safetensors(
    files: &ModelFiles,
    dtype: DType,
    device: &Device,
    projections: Projections,
) -> Result<LoadedWeights> {
    let (config, family) = read_config(&files.config)?;
    // SAFETY: the files are memory-mapped read-only; splitbench never writes to them while
    // loading, which is the condition candle documents.
    let st = unsafe { MmapedSafetensors::multi(&files.weights) }.map_err(unreadable_weights)?;
    let mut src = SafetensorsSource {
        st,
        dtype,
        device: device.clone(),
        projections,
        kept_dense: Vec::new(),
    };
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let optional = |src: &SafetensorsSource, name: String| -> Result<Option<Tensor>> {
            if src.has(&name) {
                Ok(Some(src.tensor(&name)?))
            } else {
                Ok(None)
            }
        };
        let q_norm = optional(&src, format!("{p}.self_attn.q_norm.weight"))?;
        let k_norm = optional(&src, format!("{p}.self_attn.k_norm.weight"))?;
        if family == Family::Qwen3 && (q_norm.is_none() || k_norm.is_none()) {
            return Err(ModelError::Invalid(format!(
                "config.json says qwen3 but layer {i} has no q_norm/k_norm weights"
            )));
        }
        layers.push(Layer {
            input_layernorm: src.tensor(&format!("{p}.input_layernorm.weight"))?,
            self_attn: Attention {
                q_proj: src.linear(&format!("{p}.self_attn.q_proj"))?,
                k_proj: src.linear(&format!("{p}.self_attn.k_proj"))?,
                v_proj: src.linear(&format!("{p}.self_attn.v_proj"))?,
                o_proj: src.linear(&format!("{p}.self_attn.o_proj"))?,
                q_norm,
                k_norm,
            },
            post_attention_layernorm: src
                .tensor(&format!("{p}.post_attention_layernorm.weight"))?,
            mlp: Mlp {
                gate_proj: src.linear(&format!("{p}.mlp.gate_proj"))?,
                up_proj: src.linear(&format!("{p}.mlp.up_proj"))?,
                down_proj: src.linear(&format!("{p}.mlp.down_proj"))?,
            },
        });
    }
    let extra = format!(
        "model.layers.{}.input_layernorm.weight",
        config.num_hidden_layers
    );
    if src.has(&extra) {
        return Err(ModelError::Invalid(format!(
            "the weights hold `{extra}`, but config.json says num_hidden_layers = {}: the config \
             and the weights come from different models",
            config.num_hidden_layers
        )));
    }
    let embed_tokens = src.tensor("model.embed_tokens.weight")?;
    // As Hugging Face ties them: the embedding is the head when the config says so (an
    // lm_head.weight in the file is then not used), or when it says nothing and the file has
    // no head; a head the config calls separate must be in the file.
    let tied = match (config.tie_word_embeddings, src.has("lm_head.weight")) {
        (Some(tied), true) => tied,
        (None, has_head) => !has_head,
        (Some(true), false) => true,
        (Some(false), false) => {
            return Err(ModelError::Invalid(
                "config.json sets tie_word_embeddings = false, but the weights hold no \
                 lm_head.weight: the head is missing from the files (or the config belongs to \
                 another model)"
                    .into(),
            ))
        }
    };
    let lm_head = if tied {
        Linear::new(QMatMul::Tensor(embed_tokens.clone()), None)
    } else {
        src.linear("lm_head")?
    };
    let norm = src.tensor("model.norm.weight")?;
    let decoder = Decoder::new(
        config,
        family,
        embed_tokens,
        layers,
        norm,
        lm_head,
        RopeStyle::Halves,
        dtype,
        device.clone(),
    )?;
    Ok(LoadedWeights {
        decoder,
        kept_dense: src.kept_dense,
    })
}
