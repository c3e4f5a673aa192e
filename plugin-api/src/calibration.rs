//! The author-facing side of calibrated codecs: a codec fitted once per link to the
//! uncompressed activations entering that link, then run with its fitted state.
//!
//! A family offers calibrated codecs by filling a [`Calibration`] and passing it to
//! [`export_plugin!`](crate::export_plugin) as `calibration: MY_CALIBRATION`. The host calls
//! [`Calibration::calibrate`] once per link with states captured on a calibration text that
//! never overlaps the evaluation text, keeps the returned bytes in the run folder (so a resumed
//! or merged run reuses them) and reports their size: they cross the link once, not per token.
//! The state is the family's own format; put a version or magic in it so that a state from
//! another build is refused instead of misread.

use crate::device::DeviceCodec;
use crate::{Codec, CodecError, TensorView};

/// `(codec_name, params_json, state)`: the fitted codec.
pub type CalibratedCodecFactory = fn(&str, &str, &[u8]) -> Result<Box<dyn Codec>, CodecError>;

/// `(codec_name, params_json, state)`: the fitted codec's device path, `Ok(None)` when it has
/// none.
pub type CalibratedDeviceCodecFactory =
    fn(&str, &str, &[u8]) -> Result<Option<Box<dyn DeviceCodec>>, CodecError>;

/// A family's calibration entry points.
#[derive(Clone, Copy)]
pub struct Calibration {
    /// Whether `(codec_name, params_json)` must be fitted before it runs. Errors on params the
    /// codec refuses, so that the host reports them before the model loads.
    pub needs_calibration: fn(&str, &str) -> Result<bool, CodecError>,
    /// Fits the codec to `samples`, `[1, rows, hidden]` in the link's dtype; returns the state.
    pub calibrate: fn(&str, &str, &TensorView<'_>) -> Result<Vec<u8>, CodecError>,
    pub new_codec: CalibratedCodecFactory,
    pub new_device_codec: Option<CalibratedDeviceCodecFactory>,
}

/// The error the root module's `new_codec` gives for a codec that needs calibration: all a
/// host from before calibration can call.
pub fn needs_calibration_error(codec: &str) -> CodecError {
    CodecError::new(format!(
        "codec `{codec}` must be calibrated on the link's activations before it runs, which \
         needs a splitbench built with splitbench-plugin-api 0.1.2 or later; update splitbench"
    ))
}
