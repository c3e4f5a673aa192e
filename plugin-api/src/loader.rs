//! Host side: loading a plugin file and creating codecs from it.
//!
//! Uses `lib_header_from_path(..).init_root_module()` instead of `RootModule::load_from_file`,
//! which caches by interface type and would hand every later path the first plugin loaded.

use std::path::{Path, PathBuf};

use abi_stable::{
    abi_stability::abi_checking::check_layout_compatibility,
    library::{lib_header_from_path, LibraryError, RawLibrary},
    std_types::{ROption, RResult, RSlice},
    type_layout::TypeLayout,
    StableAbi,
};

use crate::abi::{
    CalibrationModuleRef, DeviceModuleRef, FfiCodecBox, FfiCudaStream, FfiDeviceBuffer,
    FfiDeviceCodecBox, FfiDeviceTensor, FfiTensorView, PluginModuleRef, CALIBRATION_LAYOUT_SYMBOL,
    CALIBRATION_MODULE_SYMBOL, DEVICE_LAYOUT_SYMBOL, DEVICE_MODULE_SYMBOL, ROOT_MODULE_NAME,
};
use crate::cuda::CudaStream;
use crate::device::{DeviceBuffer, DeviceTensor};
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
    #[error("codec `{codec}` of plugin `{plugin}` could not be calibrated: {message}")]
    Calibrate {
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
    /// The device module, `Ok(None)` for plugins from before it, `Err` when its layout does
    /// not match this host's.
    device: Result<Option<DeviceModuleRef>, String>,
    /// The calibration module (0.1.2), the same way.
    calibration: Result<Option<CalibrationModuleRef>, String>,
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
        let library = match RawLibrary::load_at(path) {
            // The root module's loader already mapped the library and never unmaps it; this
            // handle is leaked so that the function pointers taken from it stay valid too.
            Ok(library) => Ok(&*Box::leak(Box::new(library))),
            Err(e) => Err(first_line(&e.to_string())),
        };
        Ok(Plugin {
            path: path_buf,
            module,
            device: optional_module(
                &library,
                DEVICE_LAYOUT_SYMBOL,
                DEVICE_MODULE_SYMBOL,
                "device",
            ),
            calibration: optional_module(
                &library,
                CALIBRATION_LAYOUT_SYMBOL,
                CALIBRATION_MODULE_SYMBOL,
                "calibration",
            ),
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
            RResult::RErr(message) => Err(self.new_codec_error(codec, message)),
        }
    }
}

/// Looks up a module exported after 0.1.0 (the device module, the calibration module):
/// `Ok(None)` in plugins built before it, `Err` when its layout is not this host's.
fn optional_module<M: StableAbi + Copy>(
    library: &Result<&'static RawLibrary, String>,
    layout_symbol: &[u8],
    module_symbol: &[u8],
    what: &str,
) -> Result<Option<M>, String> {
    let library = library.clone()?;
    // SAFETY: the export macro defines both symbols with exactly these signatures; `M` is the
    // module type the symbol names, which the layout check below confirms before any call.
    let (layout, module) = unsafe {
        let layout = library.get::<extern "C" fn() -> &'static TypeLayout>(layout_symbol);
        let module = library.get::<extern "C" fn() -> M>(module_symbol);
        match (layout, module) {
            (Ok(layout), Ok(module)) => (*layout, *module),
            _ => return Ok(None),
        }
    };
    check_layout_compatibility(<M as StableAbi>::LAYOUT, layout()).map_err(|e| {
        format!(
            "its {what} module's layout differs from this host's ({})",
            first_line(&e.to_string())
        )
    })?;
    Ok(Some(module()))
}

impl Plugin {
    /// Whether the plugin exports a device module this host can use (plugins built against
    /// splitbench-plugin-api 0.1.1 or later).
    pub fn has_device_entry(&self) -> bool {
        matches!(self.device, Ok(Some(_)))
    }

    /// Why the plugin has no usable device module, if it has none.
    pub fn device_entry_problem(&self) -> Option<String> {
        match &self.device {
            Ok(Some(_)) => None,
            Ok(None) => Some(format!(
                "it was built against splitbench-plugin-api {}, before device codecs",
                self.api_version
            )),
            Err(why) => Some(why.clone()),
        }
    }

    /// The device path of a codec: `Ok(None)` when the plugin predates device codecs or offers
    /// none for this codec and these params.
    pub fn new_device_codec(
        &self,
        codec: &str,
        params_json: &str,
    ) -> Result<Option<DeviceCodecHandle>, LoadError> {
        let Ok(Some(module)) = &self.device else {
            return Ok(None);
        };
        match (module.new_device_codec())(codec.into(), params_json.into()) {
            RResult::ROk(ROption::RSome(inner)) => Ok(Some(DeviceCodecHandle { inner })),
            RResult::ROk(ROption::RNone) => Ok(None),
            RResult::RErr(message) => Err(self.new_codec_error(codec, message)),
        }
    }
}

impl Plugin {
    /// The calibration module, or why there is none this host can use; `Ok(None)` for plugins
    /// built before 0.1.2, whose codecs never need calibration.
    fn calibration_module(&self, codec: &str) -> Result<Option<CalibrationModuleRef>, LoadError> {
        self.calibration
            .clone()
            .map_err(|message| LoadError::Calibrate {
                plugin: self.info.name.clone(),
                codec: codec.to_string(),
                message,
            })
    }

    fn new_codec_error(&self, codec: &str, message: impl Into<String>) -> LoadError {
        LoadError::NewCodec {
            plugin: self.info.name.clone(),
            codec: codec.to_string(),
            message: message.into(),
        }
    }

    fn calibration_error(&self, codec: &str, message: impl Into<String>) -> LoadError {
        LoadError::Calibrate {
            plugin: self.info.name.clone(),
            codec: codec.to_string(),
            message: message.into(),
        }
    }

    /// Whether `codec` with these params must be calibrated before it runs (never for plugins
    /// built before splitbench-plugin-api 0.1.2). Checks the params too.
    pub fn needs_calibration(&self, codec: &str, params_json: &str) -> Result<bool, LoadError> {
        let Some(module) = self.calibration_module(codec)? else {
            return Ok(false);
        };
        match (module.needs_calibration())(codec.into(), params_json.into()) {
            RResult::ROk(needs) => Ok(needs),
            RResult::RErr(message) => Err(self.new_codec_error(codec, message)),
        }
    }

    /// Fits `codec` to `samples` (`[1, rows, hidden]`); returns its state.
    pub fn calibrate(
        &self,
        codec: &str,
        params_json: &str,
        samples: &TensorView<'_>,
    ) -> Result<Vec<u8>, LoadError> {
        let module = self
            .calibration_module(codec)?
            .ok_or_else(|| self.calibration_error(codec, "the plugin has no calibration"))?;
        let shape = shape_to_ffi(samples.shape());
        let view = FfiTensorView {
            dtype: samples.dtype().into(),
            shape: RSlice::from_slice(&shape),
            bytes: RSlice::from_slice(samples.bytes()),
        };
        match (module.calibrate())(codec.into(), params_json.into(), view) {
            RResult::ROk(state) => Ok(state.into_vec()),
            RResult::RErr(message) => Err(self.calibration_error(codec, message)),
        }
    }

    /// A fitted codec instance (one per link) from the state [`calibrate`](Self::calibrate)
    /// returned.
    pub fn new_calibrated_codec(
        &self,
        codec: &str,
        params_json: &str,
        state: &[u8],
    ) -> Result<CodecHandle, LoadError> {
        let module = self
            .calibration_module(codec)?
            .ok_or_else(|| self.calibration_error(codec, "the plugin has no calibration"))?;
        match (module.new_calibrated_codec())(
            codec.into(),
            params_json.into(),
            RSlice::from_slice(state),
        ) {
            RResult::ROk(inner) => Ok(CodecHandle {
                inner,
                name: codec.to_string(),
            }),
            RResult::RErr(message) => Err(self.new_codec_error(codec, message)),
        }
    }

    /// The device path of a fitted codec: `Ok(None)` when it has none.
    pub fn new_calibrated_device_codec(
        &self,
        codec: &str,
        params_json: &str,
        state: &[u8],
    ) -> Result<Option<DeviceCodecHandle>, LoadError> {
        let Some(module) = self.calibration_module(codec)? else {
            return Ok(None);
        };
        match (module.new_calibrated_device_codec())(
            codec.into(),
            params_json.into(),
            RSlice::from_slice(state),
        ) {
            RResult::ROk(ROption::RSome(inner)) => Ok(Some(DeviceCodecHandle { inner })),
            RResult::ROk(ROption::RNone) => Ok(None),
            RResult::RErr(message) => Err(self.new_codec_error(codec, message)),
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

/// One device codec instance inside a loaded plugin.
pub struct DeviceCodecHandle {
    inner: FfiDeviceCodecBox,
}

fn cuda_to_ffi(cuda: &CudaStream) -> FfiCudaStream {
    FfiCudaStream {
        context: cuda.context,
        stream: cuda.stream,
        device_ordinal: cuda.device_ordinal,
        compute_major: cuda.compute_capability.0,
        compute_minor: cuda.compute_capability.1,
    }
}

fn buffer_to_ffi(buffer: DeviceBuffer) -> FfiDeviceBuffer {
    FfiDeviceBuffer {
        ptr: buffer.ptr,
        len: buffer.len as u64,
        capacity: buffer.capacity as u64,
    }
}

fn shape_to_ffi(shape: &[usize]) -> Vec<u64> {
    shape.iter().map(|&d| d as u64).collect()
}

fn from_rresult<T>(r: RResult<T, abi_stable::std_types::RString>) -> Result<T, CodecError> {
    match r {
        RResult::ROk(v) => Ok(v),
        RResult::RErr(message) => Err(CodecError(message.into())),
    }
}

fn len_from_ffi(len: u64) -> Result<usize, CodecError> {
    usize::try_from(len).map_err(|_| CodecError::new("the plugin returned a length over usize"))
}

impl DeviceCodecHandle {
    pub fn max_wire_len(&self, shape: &[usize], dtype: DType) -> Result<usize, CodecError> {
        let shape = shape_to_ffi(shape);
        len_from_ffi(from_rresult(
            self.inner
                .max_wire_len(RSlice::from_slice(&shape), dtype.into()),
        )?)
    }

    pub fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError> {
        let shape = shape_to_ffi(input.shape);
        let input = FfiDeviceTensor {
            dtype: input.dtype.into(),
            shape: RSlice::from_slice(&shape),
            ptr: input.ptr,
        };
        len_from_ffi(from_rresult(self.inner.encode(
            cuda_to_ffi(cuda),
            input,
            buffer_to_ffi(wire),
        ))?)
    }

    pub fn decode(
        &mut self,
        cuda: &CudaStream,
        wire: DeviceBuffer,
        output: &DeviceTensor<'_>,
    ) -> Result<(), CodecError> {
        let shape = shape_to_ffi(output.shape);
        let output = FfiDeviceTensor {
            dtype: output.dtype.into(),
            shape: RSlice::from_slice(&shape),
            ptr: output.ptr,
        };
        from_rresult(
            self.inner
                .decode(cuda_to_ffi(cuda), buffer_to_ffi(wire), output),
        )
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
