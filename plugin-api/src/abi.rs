#![allow(non_local_definitions)] // abi_stable 0.11's sabi_trait expands to impls inside a const.
//! The `#[repr(C)]` types that cross the plugin boundary.
//!
//! The root module is a prefix type. abi_stable lets a host load plugins whose root module has
//! *more* fields than the host knows, never fewer; so the root module stays as 0.1.0 defined it,
//! and each later entry point comes as its own module behind its own exported symbol, which
//! older plugins simply lack. 0.1.1 added [`DeviceModule`], the CUDA path; 0.1.2
//! [`CalibrationModule`], codecs fitted to a link's activations.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// Element type of a hidden state, as it crosses the boundary.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfiDType {
    F32,
    F16,
    BF16,
}

/// A borrowed hidden state: dtype, shape (`[batch, tokens, hidden]`) and little-endian bytes.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FfiTensorView<'a> {
    pub dtype: FfiDType,
    pub shape: RSlice<'a, u64>,
    pub bytes: RSlice<'a, u8>,
}

/// One codec instance, owned by the host for one link.
#[sabi_trait]
pub trait FfiCodec: Send + Sync {
    fn encode(&mut self, input: FfiTensorView<'_>) -> RResult<RVec<u8>, RString>;

    #[sabi(last_prefix_field)]
    fn decode(
        &mut self,
        wire: RSlice<'_, u8>,
        shape: RSlice<'_, u64>,
        dtype: FfiDType,
    ) -> RResult<RVec<u8>, RString>;
}

/// The boxed trait object a plugin hands to the host.
pub type FfiCodecBox = FfiCodec_TO<'static, RBox<()>>;

/// The CUDA state the host lends a device codec for one call. Handles are the driver API's
/// `CUcontext` and `CUstream`, passed as integers; the plugin launches its kernels on `stream`
/// and must not synchronize the whole context.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct FfiCudaStream {
    pub context: u64,
    pub stream: u64,
    pub device_ordinal: i32,
    pub compute_major: i32,
    pub compute_minor: i32,
}

/// A contiguous tensor in device memory (`CUdeviceptr`), row-major.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct FfiDeviceTensor<'a> {
    pub dtype: FfiDType,
    pub shape: RSlice<'a, u64>,
    pub ptr: u64,
}

/// A byte buffer in device memory: `len` bytes valid, room for `capacity`.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct FfiDeviceBuffer {
    pub ptr: u64,
    pub len: u64,
    pub capacity: u64,
}

/// One device-side codec instance, owned by the host for one link. The wire stays in device
/// memory; its length is what crosses the link.
#[sabi_trait]
pub trait FfiDeviceCodec: Send + Sync {
    /// The largest wire `encode` writes for this shape and dtype; the host allocates it.
    fn max_wire_len(&self, shape: RSlice<'_, u64>, dtype: FfiDType) -> RResult<u64, RString>;

    /// Encodes `input` into `wire` (its `len` is 0 on entry); returns the wire's length.
    fn encode(
        &mut self,
        cuda: FfiCudaStream,
        input: FfiDeviceTensor<'_>,
        wire: FfiDeviceBuffer,
    ) -> RResult<u64, RString>;

    /// Decodes `wire` into `output`, whose shape and dtype the host sets.
    #[sabi(last_prefix_field)]
    fn decode(
        &mut self,
        cuda: FfiCudaStream,
        wire: FfiDeviceBuffer,
        output: FfiDeviceTensor<'_>,
    ) -> RResult<(), RString>;
}

/// The boxed device codec a plugin hands to the host.
pub type FfiDeviceCodecBox = FfiDeviceCodec_TO<'static, RBox<()>>;

#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiParamInfo {
    pub name: RString,
    /// The default value, as JSON.
    pub default_json: RString,
    pub description: RString,
}

#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiCodecInfo {
    pub name: RString,
    pub description: RString,
    pub params: RVec<FfiParamInfo>,
}

#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiPluginInfo {
    pub name: RString,
    pub version: RString,
    pub description: RString,
    pub codecs: RVec<FfiCodecInfo>,
}

/// The root module every plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(option))]
pub struct PluginModule {
    pub describe: extern "C" fn() -> RResult<FfiPluginInfo, RString>,

    /// `new_codec(codec_name, params_json)`: one call per link.
    #[sabi(last_prefix_field)]
    pub new_codec: extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<FfiCodecBox, RString>,
}

/// The device entry points (since 0.1.1), exported as [`DEVICE_MODULE_SYMBOL`] with its
/// layout as [`DEVICE_LAYOUT_SYMBOL`], which the host checks before the first call.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = DeviceModuleRef)))]
#[sabi(missing_field(option))]
pub struct DeviceModule {
    /// `new_device_codec(codec_name, params_json)`: the CUDA path of that codec, or `None`
    /// when it has none (the host then uses the host path).
    #[sabi(last_prefix_field)]
    pub new_device_codec:
        extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<ROption<FfiDeviceCodecBox>, RString>,
}

/// `extern "C" fn() -> DeviceModuleRef`.
pub const DEVICE_MODULE_SYMBOL: &[u8] = b"splitbench_device_module\0";
/// `extern "C" fn() -> &'static TypeLayout` of [`DeviceModuleRef`].
pub const DEVICE_LAYOUT_SYMBOL: &[u8] = b"splitbench_device_module_layout\0";

/// The calibration entry points (since 0.1.2), exported as [`CALIBRATION_MODULE_SYMBOL`] with
/// its layout as [`CALIBRATION_LAYOUT_SYMBOL`]. A codec that needs calibration refuses the
/// root module's `new_codec`, so a host from before 0.1.2 names it instead of running it
/// unfitted.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = CalibrationModuleRef)))]
#[sabi(missing_field(option))]
pub struct CalibrationModule {
    /// `needs_calibration(codec_name, params_json)`: whether the codec must be fitted before
    /// it runs; an error when the params are wrong (checked before the model loads).
    pub needs_calibration: extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<bool, RString>,

    /// `calibrate(codec_name, params_json, samples)`: fits the codec to `samples`
    /// (`[1, rows, hidden]`, the uncompressed states entering one link) and returns the fitted
    /// state, which the host stores and sends once per link.
    pub calibrate:
        extern "C" fn(RStr<'_>, RStr<'_>, FfiTensorView<'_>) -> RResult<RVec<u8>, RString>,

    /// `new_calibrated_codec(codec_name, params_json, state)`: one call per link.
    pub new_calibrated_codec:
        extern "C" fn(RStr<'_>, RStr<'_>, RSlice<'_, u8>) -> RResult<FfiCodecBox, RString>,

    /// The CUDA path of a fitted codec, or `None` when it has none.
    #[sabi(last_prefix_field)]
    pub new_calibrated_device_codec: extern "C" fn(
        RStr<'_>,
        RStr<'_>,
        RSlice<'_, u8>,
    )
        -> RResult<ROption<FfiDeviceCodecBox>, RString>,
}

/// `extern "C" fn() -> CalibrationModuleRef`.
pub const CALIBRATION_MODULE_SYMBOL: &[u8] = b"splitbench_calibration_module\0";
/// `extern "C" fn() -> &'static TypeLayout` of [`CalibrationModuleRef`].
pub const CALIBRATION_LAYOUT_SYMBOL: &[u8] = b"splitbench_calibration_module_layout\0";

/// Name under which abi_stable reports this root module.
pub const ROOT_MODULE_NAME: &str = "splitbench_codec_plugin";

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = ROOT_MODULE_NAME;
    const NAME: &'static str = ROOT_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
