//! `[model]` into a decoder and tokenizer: a safetensors folder (local or from the Hub) or a
//! GGUF file, in `model.dtype` on `model.device`, with what the record says about it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::{quantized::GgmlDType, DType, Device, DeviceLocation};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::device::{configure_gemm, open_device};
use super::hub;
use crate::config::{DeviceSpec, LoadedExperiment, Weights};
use crate::model::decoder::Placement;
use crate::model::gguf::{load_gguf, GgufWeights};
use crate::model::load::{self, ModelFiles, Projections};
use crate::model::Decoder;
use crate::plan::Plan;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The loaded model, as the records keep it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: Option<String>,
    pub revision: Option<String>,
    pub path: Option<PathBuf>,
    pub family: crate::model::Family,
    pub dtype: String,
    pub weights: String,
    /// Projections left dense when quantizing at load (input size not a multiple of the block).
    pub kept_dense: Vec<String>,
    pub layers: usize,
    pub hidden_size: usize,
    pub vocab_size: usize,
    pub files: Vec<FileInfo>,
}

/// The model, tokenizer and where they came from.
pub struct LoadedModel {
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
    pub info: ModelInfo,
}

fn file_info(path: &Path) -> FileInfo {
    FileInfo {
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        path: path.to_path_buf(),
    }
}

fn load_gguf_model(
    exp: &LoadedExperiment,
    gguf: &Path,
    dtype: DType,
    device: &Device,
) -> Result<LoadedModel> {
    let m = &exp.experiment.model;
    let weights = m.weights.unwrap_or(Weights::Native);
    let mode = match weights {
        Weights::Dequantize => GgufWeights::Dequantize,
        // Config validation allows only native and dequantize for GGUF files.
        _ => GgufWeights::Native,
    };
    let path = match &m.id {
        Some(id) => hub::model_file(
            id,
            &m.revision,
            &gguf.to_string_lossy(),
            m.cache_dir.as_ref().map(|c| exp.resolve(c)).as_deref(),
        )?,
        None => exp.resolve(gguf),
    };
    if !path.is_file() {
        bail!("GGUF file `{}` does not exist; check model.gguf (relative paths start at the config's folder)", path.display());
    }
    let model = load_gguf(&path, dtype, device, mode)?;
    let decoder = model.decoder;
    let info = ModelInfo {
        id: m.id.clone(),
        revision: m.id.as_ref().map(|_| m.revision.clone()),
        path: Some(path.clone()),
        family: decoder.family,
        dtype: m.dtype.to_string(),
        weights: weights.as_str().into(),
        kept_dense: Vec::new(),
        layers: decoder.num_layers(),
        hidden_size: decoder.hidden_size(),
        vocab_size: decoder.vocab_size(),
        files: vec![file_info(&path)],
    };
    Ok(LoadedModel {
        decoder,
        tokenizer: model.tokenizer,
        info,
    })
}

/// How a safetensors model's projections are held.
fn projections(weights: Weights) -> Projections {
    match weights {
        Weights::Q8_0 => Projections::Quantize(GgmlDType::Q8_0),
        Weights::Q4_0 => Projections::Quantize(GgmlDType::Q4_0),
        Weights::Q4k => Projections::Quantize(GgmlDType::Q4K),
        Weights::Q6k => Projections::Quantize(GgmlDType::Q6K),
        // Config validation leaves dense as the only other choice for safetensors.
        _ => Projections::Dense,
    }
}

/// Each node's device from `plan.devices`, every distinct one opened once (two nodes on
/// `cuda:0` share one device, so their tensors meet without a copy); None without the key.
fn open_node_devices(exp: &LoadedExperiment) -> Result<Option<Vec<Device>>> {
    let Some(specs) = &exp.experiment.plan.devices else {
        return Ok(None);
    };
    let mut opened: Vec<(DeviceSpec, Device)> = Vec::new();
    let mut out = Vec::with_capacity(specs.len());
    for (node, &spec) in specs.iter().enumerate() {
        let device = match opened.iter().find(|(s, _)| *s == spec) {
            Some((_, d)) => d.clone(),
            None => {
                let d = open_device(spec, &format!("plan.devices[{node}]"))?;
                configure_gemm(&d, exp.experiment.model.dtype.candle());
                opened.push((spec, d.clone()));
                d
            }
        };
        out.push(device);
    }
    Ok(Some(out))
}

/// Moves each node's layers, and the embedding and head with their nodes, to the node's device.
fn place(decoder: Decoder, exp: &LoadedExperiment, nodes: Vec<Device>) -> Result<Decoder> {
    let plan = Plan::from_section(&exp.experiment.plan, decoder.num_layers())?;
    let placement = Placement {
        embed: nodes[plan.embed_node].clone(),
        layers: plan
            .layer_to_node
            .iter()
            .map(|&n| nodes[n].clone())
            .collect(),
        head: nodes[plan.head_node].clone(),
    };
    Ok(decoder.place(placement)?)
}

/// `cpu`, `cuda:1`: a device as a config names it.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// `weights: 538.2 MB on cpu` or `weights: 270.1 MB on cuda:0, 268.1 MB on cuda:1`.
fn weights_line(decoder: &Decoder) -> String {
    let parts: Vec<String> = decoder
        .weight_bytes()
        .iter()
        .map(|(d, b)| format!("{:.1} MB on {}", *b as f64 / 1e6, device_name(d)))
        .collect();
    format!("weights: {}", parts.join(", "))
}

pub fn load_model(exp: &LoadedExperiment) -> Result<LoadedModel> {
    let nodes = open_node_devices(exp)?;
    let model = load_on_one_device(exp, nodes.is_some())?;
    let model = match nodes {
        Some(nodes) => LoadedModel {
            decoder: place(model.decoder, exp, nodes)?,
            ..model
        },
        None => model,
    };
    eprintln!("splitbench: {}", weights_line(&model.decoder));
    Ok(model)
}

/// The model on `model.device`, or in host memory when `plan.devices` will place it.
fn load_on_one_device(exp: &LoadedExperiment, to_be_placed: bool) -> Result<LoadedModel> {
    let m = &exp.experiment.model;
    let dtype = m.dtype.candle();
    let device = if to_be_placed {
        Device::Cpu
    } else {
        open_device(m.device, "model.device")?
    };
    configure_gemm(&device, dtype);
    if let Some(gguf) = &m.gguf {
        return load_gguf_model(exp, gguf, dtype, &device);
    }
    let weights = m.weights.unwrap_or(Weights::Dense);
    let files: ModelFiles = match (&m.path, &m.id) {
        (Some(path), _) => load::local_files(&exp.resolve(path))?,
        (None, Some(id)) => {
            let cache = m.cache_dir.as_ref().map(|c| exp.resolve(c));
            hub::model_files(id, &m.revision, cache.as_deref())?
        }
        (None, None) => bail!("[model] needs `path` or `id`"),
    };
    let tokenizer = Tokenizer::from_file(&files.tokenizer).map_err(|e| {
        anyhow::anyhow!(
            "cannot load the tokenizer `{}`: {e}",
            files.tokenizer.display()
        )
    })?;
    let loaded = load::load_safetensors(&files, dtype, &device, projections(weights))?;
    let decoder = loaded.decoder;
    let tokenizer_vocab = tokenizer.get_vocab_size(true);
    if tokenizer_vocab > decoder.vocab_size() {
        bail!(
            "the tokenizer has {tokenizer_vocab} tokens but the model's embedding has only {} rows: \
             tokenizer.json does not belong to this model",
            decoder.vocab_size()
        );
    }
    let info = ModelInfo {
        id: m.id.clone(),
        revision: m.id.as_ref().map(|_| m.revision.clone()),
        path: m.path.as_ref().map(|p| exp.resolve(p)),
        family: decoder.family,
        dtype: m.dtype.to_string(),
        weights: weights.as_str().into(),
        kept_dense: loaded.kept_dense,
        layers: decoder.num_layers(),
        hidden_size: decoder.hidden_size(),
        vocab_size: decoder.vocab_size(),
        files: files.all().into_iter().map(file_info).collect(),
    };
    Ok(LoadedModel {
        decoder,
        tokenizer,
        info,
    })
}
