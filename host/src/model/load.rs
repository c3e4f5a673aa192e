//! Finding a model's files (a local folder or the Hub) and loading safetensors weights into
//! the decoder, optionally quantizing the projections at load.

use std::path::{Path, PathBuf};

use candle_core::{safetensors::MmapedSafetensors, DType, Device};

use super::config::ModelConfig;
use super::decoder::{Decoder, RopeStyle};
use super::families::Family;
pub use super::weights::Projections;
use super::weights::SafetensorsWeights;
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

/// A model's files fetched by name (from the Hub: `setup::hub`): the config, the tokenizer, and
/// the shards `model.safetensors.index.json` lists when the repo has one, else
/// `model.safetensors`.
pub fn fetch_files<E: From<ModelError>>(
    fetch: impl Fn(&str) -> std::result::Result<PathBuf, E>,
) -> std::result::Result<ModelFiles, E> {
    let config = fetch("config.json")?;
    let tokenizer = fetch("tokenizer.json")?;
    let weights = match fetch("model.safetensors.index.json") {
        Ok(index) => shards_of_index(&index)?
            .iter()
            .map(|s| fetch(s))
            .collect::<std::result::Result<Vec<_>, E>>()?,
        Err(_) => vec![fetch("model.safetensors")?],
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
    let config = ModelConfig::parse(&text)
        .map_err(|e| ModelError::Invalid(format!("{e} (`{}`)", path.display())))?;
    let family = Family::from_model_type(&config.model_type).ok_or_else(|| {
        ModelError::Invalid(format!(
            "unsupported architecture `{}` in `{}`; splitbench runs {}",
            config.model_type,
            path.display(),
            Family::supported()
        ))
    })?;
    config
        .check(family.spec().applies)
        .map_err(|why| ModelError::Invalid(format!("{why} (`{}`)", path.display())))?;
    Ok((config, family))
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

/// A safetensors model: its family builds it by Hugging Face names.
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
    let mut weights =
        SafetensorsWeights::new(st, config.clone(), dtype, device.clone(), projections);
    let parts = (family.spec().build)(&config, &mut weights)?;
    let decoder = Decoder::new(
        config,
        family,
        parts,
        RopeStyle::Halves,
        dtype,
        device.clone(),
    );
    Ok(LoadedWeights {
        decoder,
        kept_dense: weights.kept_dense,
    })
}
