#![allow(non_local_definitions)] // abi_stable 0.11's sabi_trait expands to impls inside a const.
//! The `#[repr(C)]` types that cross the plugin boundary.
//!
//! The root module is a prefix type: later versions append fields after `new_codec` (a
//! device-side encode, for example) and older plugins keep loading; their accessors return
//! `None` for the fields they lack.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec},
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

/// Name under which abi_stable reports this root module.
pub const ROOT_MODULE_NAME: &str = "splitbench_codec_plugin";

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = ROOT_MODULE_NAME;
    const NAME: &'static str = ROOT_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
