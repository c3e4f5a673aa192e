//! The codecs at the links: loading plugins once per file, one codec instance per link, and
//! moving hidden states through them while counting what crosses the wire.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use serde::Serialize;
use splitbench_plugin_api::{testkit::ErrorStats, Codec, CodecHandle, Plugin, TensorView};

use crate::config::{CodecPath, CodecSpec, NonFinitePolicy};
use crate::plan::{Link, Plan};
use crate::plugin_search::PluginSearch;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    NotFound(#[from] crate::plugin_search::NotFound),
    #[error(transparent)]
    Load(#[from] splitbench_plugin_api::LoadError),
    #[error("codec `{codec}` on link `{link}` failed to {stage}: {message}")]
    Codec {
        codec: String,
        link: String,
        stage: &'static str,
        message: String,
    },
    #[error(
        "codec `{codec}` on link `{link}` decoded {got} bytes; the hidden state needs {expected}"
    )]
    WrongLength {
        codec: String,
        link: String,
        got: usize,
        expected: usize,
    },
    #[error(
        "codec `{codec}` on link `{link}` decoded {count} NaN/Inf values that the hidden state did \
         not have; set eval.nonfinite = \"report\" to count them instead of failing"
    )]
    NonFinite {
        codec: String,
        link: String,
        count: u64,
    },
    #[error("moving the hidden state at link `{link}`: {source}")]
    Tensor {
        link: String,
        source: candle_core::Error,
    },
    #[error(
        "codec `{codec}` asks for path = \"device\", but {why}; use path = \"auto\" or \"host\""
    )]
    NoDevicePath { codec: String, why: String },
    #[cfg(feature = "cuda")]
    #[error("codec `{codec}` on link `{link}` (device path): {source}")]
    Device {
        codec: String,
        link: String,
        source: Box<crate::cuda_link::DeviceLinkError>,
    },
    #[error("cannot read plugin `{path}` to hash it: {source}")]
    Hash {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a plugin came from, for the record.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PluginProvenance {
    pub path: PathBuf,
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub plugin_api_version: String,
}

/// Loads each plugin file once (by canonical path) and makes codecs from it.
pub struct CodecHost {
    search: PluginSearch,
    plugins: HashMap<PathBuf, (Plugin, PluginProvenance)>,
    nonfinite: NonFinitePolicy,
    on_gpu: bool,
    verify_wire: bool,
}

impl CodecHost {
    pub fn new(search: PluginSearch, nonfinite: NonFinitePolicy) -> Self {
        CodecHost {
            search,
            plugins: HashMap::new(),
            nonfinite,
            on_gpu: false,
            verify_wire: false,
        }
    }

    /// Codecs for a model on `device`: on a GPU, links use plugins' device paths where they
    /// have one; `verify_wire` checks each device wire against the host path.
    pub fn for_device(mut self, device: &Device, verify_wire: bool) -> Self {
        self.on_gpu = device.is_cuda();
        self.verify_wire = verify_wire;
        self
    }

    pub fn plugin(
        &mut self,
        spec: &str,
        base_dir: &Path,
    ) -> Result<&(Plugin, PluginProvenance), LinkError> {
        let path = self.search.resolve(spec, base_dir)?;
        let canonical = path.canonicalize().unwrap_or(path);
        if !self.plugins.contains_key(&canonical) {
            let plugin = Plugin::load(&canonical)?;
            let bytes = std::fs::read(&canonical).map_err(|source| LinkError::Hash {
                path: canonical.clone(),
                source,
            })?;
            let provenance = PluginProvenance {
                path: canonical.clone(),
                sha256: crate::data::sha256_hex(&bytes),
                name: plugin.info().name.clone(),
                version: plugin.info().version.clone(),
                plugin_api_version: plugin.api_version().to_string(),
            };
            self.plugins.insert(canonical.clone(), (plugin, provenance));
        }
        Ok(&self.plugins[&canonical])
    }

    /// One codec per link for `spec`, with per-link overrides applied; and the provenance of
    /// every plugin used.
    pub fn link_codecs(
        &mut self,
        spec: &CodecSpec,
        plan: &Plan,
        base_dir: &Path,
    ) -> Result<(Vec<LinkCodec>, Vec<PluginProvenance>), LinkError> {
        let mut codecs = Vec::with_capacity(plan.links.len());
        let mut provenance: Vec<PluginProvenance> = Vec::new();
        let (on_gpu, verify_wire, nonfinite) = (self.on_gpu, self.verify_wire, self.nonfinite);
        for link in &plan.links {
            let chosen = link_override(spec, link).unwrap_or(spec);
            let codec = match (&chosen.plugin, &chosen.codec) {
                (Some(plugin), Some(codec)) => {
                    let (plugin, prov) = self.plugin(plugin, base_dir)?;
                    if !provenance.iter().any(|p| p.path == prov.path) {
                        provenance.push(prov.clone());
                    }
                    let params = chosen.params_json();
                    let label = chosen.display_name();
                    let device = device_codec(plugin, codec, &params, chosen.path, on_gpu)
                        .map_err(|why| match why {
                            DevicePathError::Load(e) => LinkError::Load(e),
                            DevicePathError::Missing(why) => LinkError::NoDevicePath {
                                codec: label.clone(),
                                why,
                            },
                        })?;
                    #[cfg(feature = "cuda")]
                    let device = device.map(|codec| {
                        Box::new(crate::cuda_link::DeviceLink::new(codec, verify_wire))
                    });
                    // Only a CUDA build on a GPU gets device codecs back, and so wires to verify.
                    #[cfg(not(feature = "cuda"))]
                    let _ = (device, verify_wire);
                    LinkCodec::Plugin {
                        handle: plugin.new_codec(codec, &params)?,
                        label,
                        nonfinite,
                        #[cfg(feature = "cuda")]
                        device,
                        #[cfg(feature = "cuda")]
                        staging: crate::cuda_link::PinnedStaging::default(),
                    }
                }
                _ => LinkCodec::None,
            };
            codecs.push(codec);
        }
        Ok((codecs, provenance))
    }
}

enum DevicePathError {
    Load(splitbench_plugin_api::LoadError),
    Missing(String),
}

/// The device codec a link uses, if any, under `path`.
fn device_codec(
    plugin: &Plugin,
    codec: &str,
    params: &str,
    path: CodecPath,
    on_gpu: bool,
) -> Result<Option<splitbench_plugin_api::DeviceCodecHandle>, DevicePathError> {
    if path == CodecPath::Host {
        return Ok(None);
    }
    if !on_gpu || !cfg!(feature = "cuda") {
        return match path {
            CodecPath::Device => Err(DevicePathError::Missing(
                "the model is not on a GPU (model.device) or this splitbench has no CUDA".into(),
            )),
            _ => Ok(None),
        };
    }
    let found = plugin
        .new_device_codec(codec, params)
        .map_err(DevicePathError::Load)?;
    match (found, path) {
        (None, CodecPath::Device) => Err(DevicePathError::Missing(
            match plugin.device_entry_problem() {
                Some(problem) => format!(
                    "plugin `{}` has no device path: {problem}",
                    plugin.info().name
                ),
                None => format!("plugin `{}` has no device path for it", plugin.info().name),
            },
        )),
        (found, _) => Ok(found),
    }
}

/// The override for `link` in `spec.links`: by full name, or by `layer:N` / `embed`.
fn link_override<'a>(spec: &'a CodecSpec, link: &Link) -> Option<&'a CodecSpec> {
    spec.links.get(&link.name).or_else(|| {
        let short = link.name.rsplit_once(':').map(|(head, _)| head)?;
        spec.links.get(short)
    })
}

/// Counters of one link over a run.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct LinkTraffic {
    pub bytes: u64,
    pub raw_bytes: u64,
    pub transmissions: u64,
    pub tokens_processed: u64,
    pub elements: u64,
    pub encode_s: f64,
    pub decode_s: f64,
    pub transfer_s: f64,
    /// NaN/Inf values in decoded hidden states.
    pub nonfinite_decoded: u64,
    /// Σx² and Σ(x − x̂)² over every element sent, and the largest |x − x̂|: the
    /// reconstruction error of the decoded hidden states.
    pub signal_sq: f64,
    pub noise_sq: f64,
    pub max_abs_error: f64,
    /// `--verify-wire` on the device path: wires checked, wires that differ from the host
    /// path's, and the largest difference between device and host decodes of one wire.
    #[serde(default)]
    pub wire_checks: u64,
    #[serde(default)]
    pub wire_mismatches: u64,
    #[serde(default)]
    pub verify_max_decode_diff: f64,
}

impl LinkTraffic {
    pub fn add(&mut self, other: &LinkTraffic) {
        self.bytes += other.bytes;
        self.raw_bytes += other.raw_bytes;
        self.transmissions += other.transmissions;
        self.tokens_processed += other.tokens_processed;
        self.elements += other.elements;
        self.encode_s += other.encode_s;
        self.decode_s += other.decode_s;
        self.transfer_s += other.transfer_s;
        self.nonfinite_decoded += other.nonfinite_decoded;
        self.signal_sq += other.signal_sq;
        self.noise_sq += other.noise_sq;
        self.max_abs_error = self.max_abs_error.max(other.max_abs_error);
        self.wire_checks += other.wire_checks;
        self.wire_mismatches += other.wire_mismatches;
        self.verify_max_decode_diff = self
            .verify_max_decode_diff
            .max(other.verify_max_decode_diff);
    }

    /// Relative L2 error, SNR (dB) and max abs error of everything decoded at this link.
    pub fn reconstruction(&self) -> ErrorStats {
        ErrorStats {
            rel_l2: if self.signal_sq > 0.0 {
                (self.noise_sq / self.signal_sq).sqrt()
            } else {
                0.0
            },
            snr_db: if self.noise_sq > 0.0 {
                10.0 * (self.signal_sq / self.noise_sq).log10()
            } else {
                f64::INFINITY
            },
            max_abs: self.max_abs_error,
        }
    }
}

/// Adds the squared signal and error of one decoded hidden state to `traffic` (in parallel:
/// on the host path this runs on every link of every batch).
fn add_error(
    traffic: &mut LinkTraffic,
    sent: &[u8],
    decoded: &[u8],
    dtype: splitbench_plugin_api::DType,
) {
    let x = splitbench_plugin_api::convert::bytes_to_f32(sent, dtype);
    let y = splitbench_plugin_api::convert::bytes_to_f32(decoded, dtype);
    let chunk = splitbench_plugin_api::convert::PARALLEL_CHUNK;
    // Per-chunk partial sums, collected in order and added serially: the same total whatever
    // the thread count, so reruns and resumed runs report identical errors.
    let partials: Vec<(f64, f64, f64)> = x
        .par_chunks(chunk)
        .zip(y.par_chunks(chunk))
        .map(|(x, y)| {
            let mut acc = (0f64, 0f64, 0f64);
            for (&a, &b) in x.iter().zip(y) {
                let (a, b) = (f64::from(a), f64::from(b));
                let d = a - b;
                if d.is_finite() {
                    acc.0 += a * a;
                    acc.1 += d * d;
                    acc.2 = acc.2.max(d.abs());
                }
            }
            acc
        })
        .collect();
    let (signal, noise, max_abs) = partials.iter().fold((0f64, 0f64, 0f64), |a, b| {
        (a.0 + b.0, a.1 + b.1, a.2.max(b.2))
    });
    traffic.signal_sq += signal;
    traffic.noise_sq += noise;
    traffic.max_abs_error = traffic.max_abs_error.max(max_abs);
}

/// What runs at one link.
pub enum LinkCodec {
    /// The prototype's baseline: nothing moves, bytes = elements × dtype size.
    None,
    Plugin {
        handle: CodecHandle,
        label: String,
        nonfinite: NonFinitePolicy,
        #[cfg(feature = "cuda")]
        device: Option<Box<crate::cuda_link::DeviceLink>>,
        #[cfg(feature = "cuda")]
        staging: crate::cuda_link::PinnedStaging,
    },
}

pub(crate) fn plugin_dtype(dtype: DType) -> Option<splitbench_plugin_api::DType> {
    match dtype {
        DType::F32 => Some(splitbench_plugin_api::DType::F32),
        DType::F16 => Some(splitbench_plugin_api::DType::F16),
        DType::BF16 => Some(splitbench_plugin_api::DType::BF16),
        _ => None,
    }
}

pub(crate) fn host_bytes(h: &Tensor) -> candle_core::Result<Vec<u8>> {
    let flat = h.flatten_all()?.to_device(&Device::Cpu)?;
    Ok(match h.dtype() {
        DType::F32 => bytemuck::cast_slice(&flat.to_vec1::<f32>()?).to_vec(),
        DType::F16 => bytemuck::cast_slice(&flat.to_vec1::<half::f16>()?).to_vec(),
        DType::BF16 => bytemuck::cast_slice(&flat.to_vec1::<half::bf16>()?).to_vec(),
        other => candle_core::bail!("hidden states in {other:?} cannot cross a link"),
    })
}

fn count_nonfinite(bytes: &[u8], dtype: DType) -> u64 {
    match dtype {
        DType::F32 => bytemuck::cast_slice::<u8, f32>(bytes)
            .iter()
            .filter(|v| !v.is_finite())
            .count() as u64,
        DType::F16 => bytes
            .chunks_exact(2)
            .filter(|c| !half::f16::from_le_bytes([c[0], c[1]]).is_finite())
            .count() as u64,
        _ => bytes
            .chunks_exact(2)
            .filter(|c| !half::bf16::from_le_bytes([c[0], c[1]]).is_finite())
            .count() as u64,
    }
}

impl LinkCodec {
    pub fn label(&self) -> &str {
        match self {
            LinkCodec::None => "none",
            LinkCodec::Plugin { label, .. } => label,
        }
    }

    /// Where this link's codec runs: `none` (nothing to run), `host` or `device`.
    pub fn path(&self) -> &'static str {
        match self {
            LinkCodec::None => "none",
            #[cfg(feature = "cuda")]
            LinkCodec::Plugin {
                device: Some(_), ..
            } => "device",
            LinkCodec::Plugin { .. } => "host",
        }
    }

    /// Sends `h` across `link`: returns what the receiving node gets.
    pub fn transmit(
        &mut self,
        h: &Tensor,
        link: &Link,
        traffic: &mut LinkTraffic,
    ) -> Result<Tensor, LinkError> {
        let dims = h.dims().to_vec();
        let elements = h.elem_count();
        let raw = (elements * h.dtype().size_in_bytes()) as u64;
        let tokens = dims.iter().rev().skip(1).product::<usize>() as u64;
        traffic.transmissions += 1;
        traffic.tokens_processed += tokens;
        traffic.elements += elements as u64;
        traffic.raw_bytes += raw;
        let tensor_err = |source| LinkError::Tensor {
            link: link.name.clone(),
            source,
        };
        match self {
            LinkCodec::None => {
                // Nothing is decoded, so nothing is lost; the signal is not read back either.
                traffic.bytes += raw;
                Ok(h.clone())
            }
            LinkCodec::Plugin {
                handle,
                label,
                nonfinite,
                #[cfg(feature = "cuda")]
                device,
                #[cfg(feature = "cuda")]
                staging,
            } => {
                #[cfg(feature = "cuda")]
                if let Some(device) = device.as_mut() {
                    let (out, appeared, had) = transmit_on_device(device, handle, h, traffic)
                        .map_err(|source| LinkError::Device {
                            codec: label.clone(),
                            link: link.name.clone(),
                            source: Box::new(source),
                        })?;
                    check_nonfinite(*nonfinite, appeared, || had, label, link)?;
                    return Ok(out);
                }
                let codec_err = |stage, message: String| LinkError::Codec {
                    codec: label.clone(),
                    link: link.name.clone(),
                    stage,
                    message,
                };
                let dtype = plugin_dtype(h.dtype()).ok_or_else(|| {
                    codec_err("encode", format!("unsupported dtype {:?}", h.dtype()))
                })?;
                let start = Instant::now();
                #[cfg(feature = "cuda")]
                let contiguous;
                #[cfg(feature = "cuda")]
                let bytes: std::borrow::Cow<[u8]> = if h.device().is_cuda() {
                    contiguous = h.contiguous().map_err(tensor_err)?;
                    std::borrow::Cow::Borrowed(staging.stage(&contiguous).map_err(|source| {
                        LinkError::Device {
                            codec: label.clone(),
                            link: link.name.clone(),
                            source: Box::new(source),
                        }
                    })?)
                } else {
                    std::borrow::Cow::Owned(host_bytes(h).map_err(tensor_err)?)
                };
                #[cfg(not(feature = "cuda"))]
                let bytes = host_bytes(h).map_err(tensor_err)?;
                traffic.transfer_s += start.elapsed().as_secs_f64();
                let view =
                    TensorView::new(dtype, &dims, &bytes).map_err(|e| codec_err("encode", e.0))?;
                let start = Instant::now();
                let wire = handle.encode(&view).map_err(|e| codec_err("encode", e.0))?;
                traffic.encode_s += start.elapsed().as_secs_f64();
                traffic.bytes += wire.len() as u64;
                let start = Instant::now();
                let decoded = handle
                    .decode(&wire, &dims, dtype)
                    .map_err(|e| codec_err("decode", e.0))?;
                traffic.decode_s += start.elapsed().as_secs_f64();
                if decoded.len() != bytes.len() {
                    return Err(LinkError::WrongLength {
                        codec: label.clone(),
                        link: link.name.clone(),
                        got: decoded.len(),
                        expected: bytes.len(),
                    });
                }
                let appeared = count_nonfinite(&decoded, h.dtype());
                traffic.nonfinite_decoded += appeared;
                check_nonfinite(
                    *nonfinite,
                    appeared,
                    || count_nonfinite(&bytes, h.dtype()),
                    label,
                    link,
                )?;
                add_error(traffic, &bytes, &decoded, dtype);
                let start = Instant::now();
                let out = Tensor::from_raw_buffer(&decoded, h.dtype(), &dims, h.device())
                    .map_err(tensor_err)?;
                traffic.transfer_s += start.elapsed().as_secs_f64();
                Ok(out)
            }
        }
    }
}

/// Under `fail`, an error when a decoded state holds more NaN/Inf (`appeared`) than the state
/// that was sent (`had`, counted only then).
fn check_nonfinite(
    policy: NonFinitePolicy,
    appeared: u64,
    had: impl FnOnce() -> u64,
    codec: &str,
    link: &Link,
) -> Result<(), LinkError> {
    if policy == NonFinitePolicy::Fail && appeared > 0 {
        let had = had();
        if appeared > had {
            return Err(LinkError::NonFinite {
                codec: codec.to_string(),
                link: link.name.clone(),
                count: appeared - had,
            });
        }
    }
    Ok(())
}

/// The device path of [`LinkCodec::transmit`]: the wire never leaves the GPU; error
/// statistics are reduced there too. Returns the decoded state and its NaN/Inf count beside
/// the sent state's.
#[cfg(feature = "cuda")]
fn transmit_on_device(
    device: &mut crate::cuda_link::DeviceLink,
    host: &mut CodecHandle,
    h: &Tensor,
    traffic: &mut LinkTraffic,
) -> Result<(Tensor, u64, u64), crate::cuda_link::DeviceLinkError> {
    let sent = device.transmit(h, host)?;
    traffic.bytes += sent.wire_len as u64;
    traffic.encode_s += sent.encode_s;
    traffic.decode_s += sent.decode_s;
    let [signal, noise, max_abs, appeared, had] =
        crate::cuda_link::device_error_stats(h, &sent.decoded)?;
    traffic.nonfinite_decoded += appeared as u64;
    traffic.signal_sq += signal;
    traffic.noise_sq += noise;
    traffic.max_abs_error = traffic.max_abs_error.max(max_abs);
    if let Some(check) = sent.verify {
        traffic.wire_checks += 1;
        traffic.wire_mismatches += u64::from(!check.wire_matches);
        traffic.verify_max_decode_diff = traffic.verify_max_decode_diff.max(check.decode_max_diff);
    }
    Ok((sent.decoded, appeared as u64, had as u64))
}
