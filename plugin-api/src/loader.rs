//! Host side: loading a plugin file and creating codecs from it.
//!
//! Uses `lib_header_from_path(..).init_root_module()` instead of `RootModule::load_from_file`,
//! which caches by interface type and would hand every later path the first plugin loaded.

use std::path::{Path, PathBuf};

use abi_stable::{
    library::{lib_header_from_path, LibraryError},
    std_types::{RResult, RSlice},
};

use crate::abi::{FfiCodecBox, FfiTensorView, PluginModuleRef, ROOT_MODULE_NAME};
use crate::{Codec, CodecError, DType, PluginInfo, TensorView, API_VERSION};

/// Why a plugin could not be loaded or could not make a codec.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open plugin `{path}`: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("`{path}` is not a splitbench codec plugin: {reason}")]
    NotAPlugin { path: PathBuf, reason: String },
    #[error(
        "`{path}` was built against splitbench-plugin-api {found}, but this splitbench needs \
         splitbench-plugin-api {needed} ({why}); rebuild the plugin against \
         splitbench-plugin-api {series}"
    )]
    IncompatibleApi {
        path: PathBuf,
        found: String,
        needed: &'static str,
        why: &'static str,
        series: String,
    },
    #[error("plugin `{path}` failed to describe itself: {message}")]
    Describe { path: PathBuf, message: String },
    #[error("plugin `{plugin}` has no codec `{codec}`; it offers: {offers}")]
    UnknownCodec {
        plugin: String,
        codec: String,
        offers: String,
    },
    #[error("codec `{codec}` of plugin `{plugin}` could not be created: {message}")]
    NewCodec {
        plugin: String,
        codec: String,
        message: String,
    },
}

/// `major.minor` for 0.x versions, `major` otherwise: what abi_stable treats as compatible.
fn compatible_series(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_string(),
        _ => version.to_string(),
    }
}

/// A loaded plugin: its root module and what it says about itself.
#[derive(Clone)]
pub struct Plugin {
    path: PathBuf,
    module: PluginModuleRef,
    info: PluginInfo,
    api_version: String,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

impl Plugin {
    /// Loads the plugin at `path`. The library stays mapped for the life of the process.
    pub fn load(path: &Path) -> Result<Plugin, LoadError> {
        let path_buf = path.to_path_buf();
        if !path.is_file() {
            return Err(LoadError::Open {
                path: path_buf,
                reason: "no such file".into(),
            });
        }
        let header = lib_header_from_path(path).map_err(|e| match e {
            LibraryError::OpenError { err, .. } => LoadError::NotAPlugin {
                path: path_buf.clone(),
                reason: format!("it is not a loadable shared library ({err})"),
            },
            LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
                path: path_buf.clone(),
                reason: "it exports no abi_stable root module (is it a cdylib that calls \
                         `splitbench_plugin_api::export_plugin!`?)"
                    .into(),
            },
            LibraryError::InvalidAbiHeader(header) => LoadError::IncompatibleApi {
                path: path_buf.clone(),
                found: format!("an unknown version (abi_stable header {header:?})"),
                needed: API_VERSION,
                why: "it uses an incompatible abi_stable",
                series: compatible_series(API_VERSION),
            },
            other => LoadError::NotAPlugin {
                path: path_buf.clone(),
                reason: first_line(&other.to_string()),
            },
        })?;
        let consts = header.root_mod_consts();
        if consts.name().as_str() != ROOT_MODULE_NAME {
            return Err(LoadError::NotAPlugin {
                path: path_buf,
                reason: format!(
                    "it is an abi_stable library for `{}`, not `{ROOT_MODULE_NAME}`",
                    consts.name()
                ),
            });
        }
        let found = header.version_strings().version.to_string();
        let module = header
            .init_root_module::<PluginModuleRef>()
            .map_err(|e| match e {
                LibraryError::IncompatibleVersionNumber { .. }
                | LibraryError::ParseVersionError(_) => LoadError::IncompatibleApi {
                    path: path_buf.clone(),
                    found: found.clone(),
                    needed: API_VERSION,
                    why: "the versions are not semver-compatible",
                    series: compatible_series(API_VERSION),
                },
                LibraryError::AbiInstability(_) | LibraryError::InvalidCAbi { .. } => {
                    LoadError::IncompatibleApi {
                        path: path_buf.clone(),
                        found: found.clone(),
                        needed: API_VERSION,
                        why: "its ABI layout differs from this host's",
                        series: compatible_series(API_VERSION),
                    }
                }
                other => LoadError::NotAPlugin {
                    path: path_buf.clone(),
                    reason: format!(
                        "its root module failed to load: {}",
                        first_line(&other.to_string())
                    ),
                },
            })?;
        let info = match (module.describe())() {
            RResult::ROk(info) => PluginInfo::from(&info),
            RResult::RErr(message) => {
                return Err(LoadError::Describe {
                    path: path_buf,
                    message: message.into(),
                })
            }
        };
        Ok(Plugin {
            path: path_buf,
            module,
            info,
            api_version: found,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }
    /// The splitbench-plugin-api version the plugin was built against.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// A new codec instance (one per link). `params_json` is a JSON object.
    pub fn new_codec(&self, codec: &str, params_json: &str) -> Result<CodecHandle, LoadError> {
        if self.info.codec(codec).is_none() {
            return Err(LoadError::UnknownCodec {
                plugin: self.info.name.clone(),
                codec: codec.to_string(),
                offers: self.info.codec_names().join(", "),
            });
        }
        match (self.module.new_codec())(codec.into(), params_json.into()) {
            RResult::ROk(inner) => Ok(CodecHandle {
                inner,
                name: codec.to_string(),
            }),
            RResult::RErr(message) => Err(LoadError::NewCodec {
                plugin: self.info.name.clone(),
                codec: codec.to_string(),
                message: message.into(),
            }),
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// One codec instance inside a loaded plugin.
pub struct CodecHandle {
    inner: FfiCodecBox,
    name: String,
}

impl CodecHandle {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Codec for CodecHandle {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let shape: Vec<u64> = input.shape().iter().map(|&d| d as u64).collect();
        let view = FfiTensorView {
            dtype: input.dtype().into(),
            shape: RSlice::from_slice(&shape),
            bytes: RSlice::from_slice(input.bytes()),
        };
        match self.inner.encode(view) {
            RResult::ROk(wire) => Ok(wire.into_vec()),
            RResult::RErr(message) => Err(CodecError(message.into())),
        }
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        match self.inner.decode(
            RSlice::from_slice(wire),
            RSlice::from_slice(&shape),
            dtype.into(),
        ) {
            RResult::ROk(raw) => Ok(raw.into_vec()),
            RResult::RErr(message) => Err(CodecError(message.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::compatible_series;

    #[test]
    fn series_follows_semver_for_zero_versions() {
        assert_eq!(compatible_series("0.1.7"), "0.1");
        assert_eq!(compatible_series("2.3.1"), "2");
    }
}
