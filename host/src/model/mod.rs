//! The model: config, the families, our own decoder with a per-layer API, and loading its
//! weights.

mod attention;
#[cfg(any(feature = "cuda", test))]
mod attention_kernel;
pub mod config;
mod context;
pub mod cpu;
pub mod decoder;
#[cfg(any(feature = "cuda", test))]
mod elementwise_kernel;
#[cfg(test)]
mod emulated;
pub mod families;
pub mod gguf;
#[cfg(feature = "cuda")]
#[path = "gpu_cuda.rs"]
pub mod gpu;
#[cfg(not(feature = "cuda"))]
#[path = "gpu_none.rs"]
pub mod gpu;
pub mod layer;
pub mod linear;
pub mod load;
mod mask;
pub mod moe;
pub mod rope;
pub mod synth;
pub mod weights;

pub use context::{BatchContext, KvCache};
pub use decoder::Decoder;
pub use families::Family;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "model file `{path}` is damaged or incomplete ({why}); download it again (for a Hub \
         model, delete it from the cache and run again) or check the copy"
    )]
    Damaged {
        path: std::path::PathBuf,
        why: String,
    },
}

#[cfg(test)]
mod reference_tests;
