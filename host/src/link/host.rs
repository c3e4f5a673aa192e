//! The plugins behind the links: each plugin file loaded once, one codec instance per link
//! with per-link overrides applied, and where every plugin came from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use splitbench_plugin_api::Plugin;

use super::calibration::{CalibratedLink, CalibrationStates, CalibrationTarget};
use super::codec::LinkCodec;
use super::device::{DeviceLink, PinnedStaging, BUILT_WITH_CUDA};
use super::error::LinkError;
use super::plugins::PluginSearch;
use crate::config::{CodecPath, CodecSpec, NonFinitePolicy};
use crate::digest::sha256_hex;
use crate::plan::{Link, Plan};

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
    /// Per link of the plan: whether the node that sends it is on a GPU.
    gpu_links: Vec<bool>,
    verify_wire: bool,
    calibration: CalibrationStates,
}

impl CodecHost {
    pub fn new(search: PluginSearch, nonfinite: NonFinitePolicy) -> Self {
        CodecHost {
            search,
            plugins: HashMap::new(),
            nonfinite,
            gpu_links: Vec::new(),
            verify_wire: false,
            calibration: CalibrationStates::default(),
        }
    }

    /// Codecs for a model whose links are sent from a GPU where `gpu_links` says so: those use
    /// plugins' device paths where they have one; `verify_wire` checks each device wire against
    /// the host path.
    pub fn for_model(mut self, gpu_links: Vec<bool>, verify_wire: bool) -> Self {
        self.gpu_links = gpu_links;
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
                sha256: sha256_hex(&bytes),
                name: plugin.info().name.clone(),
                version: plugin.info().version.clone(),
                plugin_api_version: plugin.api_version().to_string(),
            };
            self.plugins.insert(canonical.clone(), (plugin, provenance));
        }
        Ok(&self.plugins[&canonical])
    }

    /// Loads the plugins the codecs name and creates each codec (per-link overrides too) once
    /// with its params, so that a missing or foreign plugin file, an unknown codec or a bad
    /// param is reported before the model loads. True when some codec must be calibrated.
    pub fn check(&mut self, codecs: &[CodecSpec], base_dir: &Path) -> Result<bool, LinkError> {
        let mut calibrated = false;
        for spec in codecs {
            for chosen in std::iter::once(spec).chain(spec.links.values()) {
                if let (Some(plugin), Some(codec)) = (&chosen.plugin, &chosen.codec) {
                    let (plugin, _) = self.plugin(plugin, base_dir)?;
                    let params = chosen.params_json();
                    let create = |source| LinkError::Create {
                        codec: spec.display_name(),
                        source: Box::new(source),
                    };
                    // A calibrated codec checks its params here; it is created once fitted.
                    match plugin.needs_calibration(codec, &params).map_err(create)? {
                        true => calibrated = true,
                        false => drop(plugin.new_codec(codec, &params).map_err(create)?),
                    }
                }
            }
        }
        Ok(calibrated)
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
        let (verify_wire, nonfinite) = (self.verify_wire, self.nonfinite);
        for (k, link) in plan.links.iter().enumerate() {
            let on_gpu = self.gpu_links.get(k).copied().unwrap_or(false);
            let chosen = link_override(spec, link).unwrap_or(spec);
            let codec = match (&chosen.plugin, &chosen.codec) {
                (Some(plugin), Some(codec)) => {
                    let canonical = self.plugin(plugin, base_dir)?.1.path.clone();
                    let (plugin, prov) = &self.plugins[&canonical];
                    if !provenance.iter().any(|p| p.path == prov.path) {
                        provenance.push(prov.clone());
                    }
                    let params = chosen.params_json();
                    let label = chosen.display_name();
                    let state = match plugin.needs_calibration(codec, &params)? {
                        false => None,
                        true => {
                            let target = target(&prov.path, codec, &params, k, link);
                            Some(self.calibration.get(&target).ok_or_else(|| {
                                LinkError::NotCalibrated {
                                    codec: label.clone(),
                                    link: link.name.clone(),
                                }
                            })?)
                        }
                    };
                    let device = device_codec(plugin, codec, &params, state, chosen.path, on_gpu)
                        .map_err(|why| match why {
                            DevicePathError::Load(e) => LinkError::Load(e),
                            DevicePathError::Missing(why) => LinkError::NoDevicePath {
                                codec: label.clone(),
                                why: format!("at {}: {why}", link.name),
                            },
                        })?
                        .and_then(|codec| DeviceLink::wrap(codec, verify_wire));
                    let handle = match state {
                        Some(state) => plugin.new_calibrated_codec(codec, &params, state)?,
                        None => plugin.new_codec(codec, &params)?,
                    };
                    LinkCodec::Plugin {
                        handle,
                        label,
                        nonfinite,
                        device,
                        staging: PinnedStaging::default(),
                    }
                }
                _ => LinkCodec::None,
            };
            codecs.push(codec);
        }
        Ok((codecs, provenance))
    }

    /// Every codec configuration at every link that must be fitted before the codecs of
    /// `specs` (per-link overrides included) can run on `plan`.
    pub fn calibration_targets(
        &mut self,
        specs: &[CodecSpec],
        plan: &Plan,
        base_dir: &Path,
    ) -> Result<Vec<CalibrationTarget>, LinkError> {
        let mut targets: Vec<CalibrationTarget> = Vec::new();
        for spec in specs {
            for (k, link) in plan.links.iter().enumerate() {
                let chosen = link_override(spec, link).unwrap_or(spec);
                let (Some(plugin), Some(codec)) = (&chosen.plugin, &chosen.codec) else {
                    continue;
                };
                let (plugin, prov) = self.plugin(plugin, base_dir)?;
                let params = chosen.params_json();
                if plugin.needs_calibration(codec, &params)? {
                    let target = target(&prov.path, codec, &params, k, link);
                    if !targets.contains(&target) {
                        targets.push(target);
                    }
                }
            }
        }
        Ok(targets)
    }

    /// Fits `target`'s codec to `samples` (`[1, rows, hidden]` at its link); returns the state.
    pub fn calibrate(
        &mut self,
        target: &CalibrationTarget,
        samples: &splitbench_plugin_api::TensorView<'_>,
    ) -> Result<Vec<u8>, LinkError> {
        let (plugin, _) = self.loaded(&target.plugin)?;
        Ok(plugin.calibrate(&target.codec, &target.params_json, samples)?)
    }

    /// Gives the host `target`'s fitted state, which its codecs are then created with.
    pub fn set_calibration_state(&mut self, target: CalibrationTarget, state: Vec<u8>) {
        self.calibration.insert(target, state);
    }

    /// The fitted states `spec`'s links run with, for its record; empty when it has none.
    pub fn calibrated_links(
        &mut self,
        spec: &CodecSpec,
        plan: &Plan,
        base_dir: &Path,
    ) -> Result<Vec<CalibratedLink>, LinkError> {
        let targets = self.calibration_targets(std::slice::from_ref(spec), plan, base_dir)?;
        Ok(targets
            .iter()
            .filter_map(|t| self.calibration.describe(t))
            .collect())
    }

    fn loaded(&mut self, canonical: &Path) -> Result<&(Plugin, PluginProvenance), LinkError> {
        let spec = canonical.to_string_lossy().to_string();
        self.plugin(&spec, Path::new("/"))
    }
}

fn target(
    plugin: &Path,
    codec: &str,
    params: &str,
    link_index: usize,
    link: &Link,
) -> CalibrationTarget {
    CalibrationTarget {
        plugin: plugin.to_path_buf(),
        codec: codec.to_string(),
        params_json: params.to_string(),
        link: link_index,
        link_name: link.name.clone(),
    }
}

enum DevicePathError {
    Load(splitbench_plugin_api::LoadError),
    Missing(String),
}

/// The device codec a link uses, if any, under `path`; `state` for a calibrated codec.
fn device_codec(
    plugin: &Plugin,
    codec: &str,
    params: &str,
    state: Option<&[u8]>,
    path: CodecPath,
    on_gpu: bool,
) -> Result<Option<splitbench_plugin_api::DeviceCodecHandle>, DevicePathError> {
    if path == CodecPath::Host {
        return Ok(None);
    }
    if !on_gpu || !BUILT_WITH_CUDA {
        return match path {
            CodecPath::Device => Err(DevicePathError::Missing(
                "the node that sends it is not on a GPU (model.device, plan.devices) or this \
                 splitbench has no CUDA"
                    .into(),
            )),
            _ => Ok(None),
        };
    }
    let found = match state {
        Some(state) => plugin.new_calibrated_device_codec(codec, params, state),
        None => plugin.new_device_codec(codec, params),
    }
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
