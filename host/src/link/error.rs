//! What can go wrong at a link, said for the user.

use std::path::PathBuf;

use super::device::DeviceLinkError;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    NotFound(#[from] super::plugins::NotFound),
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
    #[error("codec `{codec}` on link `{link}` (device path): {source}")]
    Device {
        codec: String,
        link: String,
        source: Box<DeviceLinkError>,
    },
    #[error("codec `{codec}`: {source}")]
    Create {
        codec: String,
        source: Box<splitbench_plugin_api::LoadError>,
    },
    #[error(
        "codec `{codec}` must be calibrated at link `{link}` before it runs, and no fitted state \
         was given for it"
    )]
    NotCalibrated { codec: String, link: String },
    #[error("cannot read plugin `{path}` to hash it: {source}")]
    Hash {
        path: PathBuf,
        source: std::io::Error,
    },
}
