//! The links between nodes: the codec at each (loaded from a plugin, on the host path or the
//! GPU's device path), what crossed it, and finding plugin files.
//!
//! `host` makes a [`LinkCodec`] per link; `codec` moves a hidden state through it and counts
//! the traffic; `device` is the GPU path (empty in a build without CUDA, so nothing else here
//! needs a `cfg`); `bytes` is the one place that says which dtypes cross a link.

mod bytes;
mod calibration;
mod codec;
#[cfg(feature = "cuda")]
#[path = "device_cuda.rs"]
mod device;
#[cfg(not(feature = "cuda"))]
#[path = "device_none.rs"]
mod device;
mod error;
#[cfg(any(feature = "cuda", test))]
mod error_stats;
mod host;
pub mod plugins;
mod traffic;

pub use calibration::{CalibratedLink, CalibrationTarget};
pub use codec::LinkCodec;
pub use error::LinkError;
pub use host::{CodecHost, PluginProvenance};
pub use plugins::PluginSearch;
pub use traffic::LinkTraffic;
