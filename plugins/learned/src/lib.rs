//! `learned`: codecs fitted once per link to the activations entering it (the host's
//! calibration, [`splitbench_plugin_api::calibration`]), then run with that fitted state:
//!
//! - `pca` ([`pca`]): the calibration mean and top principal directions; the coefficients
//!   travel (f16, int8 or int4), optionally with the reconstruction error quantized on top;
//! - `outlier-channels` ([`channels`]): the channels largest on the calibration samples in f16,
//!   the rest intN with a per-token scale;
//! - `scale-calibrated` ([`scales`]): intN with per-channel scales fitted once: only codes
//!   travel.
//!
//! Every codec needs calibration: the root `new_codec` refuses them, naming the codec. States
//! and wires are documented in each module; every state starts with [`state`]'s header.

pub mod channels;
pub mod pca;
pub mod scales;
pub mod state;

use splitbench_plugin_api::{
    calibration::{needs_calibration_error, Calibration},
    export_plugin, params,
    quant::BlockParams,
    Codec, CodecError, CodecInfo, PluginInfo, TensorView,
};

use channels::{ChannelParams, OutlierChannels};
use pca::{Pca, PcaParams};
use scales::{ScaleCalibrated, ScaleParams};

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "learned".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Codecs fitted once per link on calibration activations".into(),
        codecs: vec![
            CodecInfo::new::<PcaParams>(
                pca::NAME,
                "mean + top principal directions; coefficients f16/int8/int4 (2·rank bytes per \
                 token in f16), optional quantized residual",
                pca::DOCS,
            ),
            CodecInfo::new::<ChannelParams>(
                channels::NAME,
                "calibrated outlier channels in f16, the rest intN per token (2k + 2 + \
                 (hidden - k)·bits/8 bytes per token)",
                channels::DOCS,
            ),
            CodecInfo::new::<ScaleParams>(
                scales::NAME,
                "intN with per-channel scales fitted once; only codes on the wire \
                 (hidden·bits/8 bytes per token)",
                scales::DOCS,
            ),
        ],
    }
}

/// A codec's params, checked.
enum Params {
    Pca(PcaParams),
    Channels(ChannelParams),
    Scales(ScaleParams),
}

fn parse(name: &str, params_json: &str) -> Result<Params, CodecError> {
    match name {
        pca::NAME => {
            let p = params::parse(name, params_json)?;
            pca::check(&p)?;
            Ok(Params::Pca(p))
        }
        channels::NAME => {
            let p = params::parse(name, params_json)?;
            channels::check(&p)?;
            Ok(Params::Channels(p))
        }
        scales::NAME => {
            let p = params::parse(name, params_json)?;
            scales::check(&p)?;
            Ok(Params::Scales(p))
        }
        other => Err(info().unknown_codec(other)),
    }
}

/// The root module's factory: every codec here must be calibrated first.
pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    parse(name, params_json)?;
    Err(needs_calibration_error(name))
}

fn needs_calibration(name: &str, params_json: &str) -> Result<bool, CodecError> {
    parse(name, params_json).map(|_| true)
}

pub fn calibrate(
    name: &str,
    params_json: &str,
    samples: &TensorView<'_>,
) -> Result<Vec<u8>, CodecError> {
    match parse(name, params_json)? {
        Params::Pca(p) => pca::calibrate(&p, samples),
        Params::Channels(p) => channels::calibrate(&p, samples),
        Params::Scales(p) => scales::calibrate(&p, samples),
    }
}

pub fn new_calibrated_codec(
    name: &str,
    params_json: &str,
    state: &[u8],
) -> Result<Box<dyn Codec>, CodecError> {
    Ok(match parse(name, params_json)? {
        Params::Pca(p) => Box::new(Pca::from_state(&p, state)?),
        Params::Channels(p) => Box::new(OutlierChannels::from_state(&p, state)?),
        Params::Scales(p) => Box::new(ScaleCalibrated::from_state(&p, state)?),
    })
}

pub const CALIBRATION: Calibration = Calibration {
    needs_calibration,
    calibrate,
    new_codec: new_calibrated_codec,
    new_device_codec: None,
};

export_plugin!(info, new_codec, calibration: CALIBRATION);

/// `bits` as the intN codecs take it.
fn check_bits(bits: u32) -> Result<(), CodecError> {
    if (2..=8).contains(&bits) {
        Ok(())
    } else {
        Err(CodecError::new(format!(
            "`bits` must be in 2..=8, got {bits}"
        )))
    }
}

/// The option named `value` of param `param`, or an error naming both and every option.
fn choice<T: Copy>(param: &str, value: &str, options: &[(&str, T)]) -> Result<T, String> {
    options
        .iter()
        .find(|(name, _)| *name == value)
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            format!(
                "`{param}` must be one of {}, got \"{value}\"",
                names.join(", ")
            )
        })
}

/// Symmetric intN with one f16 absmax scale per token: `quant`'s blockwise format with a
/// block as long as the row.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quantized(u32);

impl Quantized {
    fn per_token(self, row: usize) -> BlockParams {
        BlockParams {
            bits: self.0,
            block: row.max(1),
        }
    }
}

/// `f` on `samples` (rows of `hidden`) as an f32 tensor: a test's calibration samples.
#[cfg(test)]
fn on_samples<T>(samples: &[f32], hidden: usize, f: impl FnOnce(&TensorView<'_>) -> T) -> T {
    let raw =
        splitbench_plugin_api::convert::f32_to_bytes(samples, splitbench_plugin_api::DType::F32);
    let shape = [1, samples.len() / hidden, hidden];
    f(&TensorView::new(splitbench_plugin_api::DType::F32, &shape, &raw).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_needs_calibration() {
        for name in [pca::NAME, channels::NAME, scales::NAME] {
            assert!(needs_calibration(name, "{}").unwrap());
            let err = new_codec(name, "{}").err().unwrap().to_string();
            assert!(err.contains("must be calibrated"), "{err}");
        }
        assert!(needs_calibration("svd", "{}").is_err());
    }

    #[test]
    fn param_errors_name_the_param_and_its_values() {
        let cases = [
            (
                pca::NAME,
                r#"{"coeff": "int2"}"#,
                r#"`coeff` must be one of "f16", "int8", "int4""#,
            ),
            (
                pca::NAME,
                r#"{"residual": "f16"}"#,
                r#"`residual` must be one of "none""#,
            ),
            (pca::NAME, r#"{"rank": 4, "energy": 0.9}"#, "not both"),
            (
                pca::NAME,
                r#"{"energy": 1.5}"#,
                "`energy` must be in (0, 1]",
            ),
            (pca::NAME, r#"{"rank": 0}"#, "`rank` must be in 1..=hidden"),
            (
                channels::NAME,
                r#"{"bits": 9}"#,
                "`bits` must be in 2..=8, got 9",
            ),
            (
                channels::NAME,
                r#"{"fraction": 2}"#,
                "`fraction` must be in [0, 1]",
            ),
            (
                scales::NAME,
                r#"{"bits": 1}"#,
                "`bits` must be in 2..=8, got 1",
            ),
        ];
        for (name, params, expected) in cases {
            let err = needs_calibration(name, params).unwrap_err().to_string();
            assert!(err.contains(expected), "{name} {params}: {err}");
        }
    }
}
