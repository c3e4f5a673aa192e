//! The one ABI between splitbench and its codec plugins.
//!
//! Plugin authors implement [`Codec`] and describe their plugin with [`PluginInfo`], then call
//! [`export_plugin!`]; they never touch abi_stable types. The host loads plugins with
//! [`Plugin::load`] and drives codecs through [`CodecHandle`]. [`testkit`] is the conformance
//! kit a plugin crate runs from its own `cargo test`.

pub mod abi;
pub mod block_kernels;
pub mod calibration;
mod codec;
pub mod convert;
pub mod cuda;
pub mod device;
#[doc(hidden)]
pub mod export;
pub mod fp8;
mod loader;
pub mod measure;
pub mod params;
pub mod quant;
pub mod range;
pub mod testkit;
pub mod wire;

pub use codec::{
    element_count, Codec, CodecError, CodecInfo, DType, ParamInfo, PluginInfo, TensorView,
};
pub use loader::{CodecHandle, DeviceCodecHandle, LoadError, Plugin};

/// Re-exported so that `export_plugin!` and plugin crates use the exact abi_stable this crate uses.
pub use abi_stable;

/// The version of this crate, which is the ABI version a plugin is built against.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");
