//! The kit on a toy family: a per-channel mean subtracted before sending f32 values. The
//! correct family passes; each planted fault is caught.

use std::sync::atomic::{AtomicU32, Ordering};

use super::calibrated_conformance;
use crate::calibration::Calibration;
use crate::convert::{bytes_to_f32, f32_to_bytes};
use crate::wire::{self, WireReader};
use crate::{Codec, CodecError, DType, TensorView};

const MAGIC: &[u8; 4] = b"MEAN";

struct MeanOffset {
    mean: Vec<f32>,
    checks_hidden: bool,
}

impl MeanOffset {
    fn hidden_of(&self, shape: &[usize]) -> Result<(usize, usize), CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        if hidden != self.mean.len() && self.checks_hidden {
            return Err(CodecError::new("hidden size differs from the state's"));
        }
        Ok((rows, hidden))
    }

    fn mean_at(&self, i: usize, hidden: usize) -> f32 {
        self.mean.get(i % hidden.max(1)).copied().unwrap_or(0.0)
    }
}

impl Codec for MeanOffset {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let (_, hidden) = self.hidden_of(input.shape())?;
        let values = input.to_f32();
        let offsets: Vec<f32> = values
            .iter()
            .enumerate()
            .map(|(i, v)| v - self.mean_at(i, hidden))
            .collect();
        Ok(f32_to_bytes(&offsets, DType::F32))
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let (rows, hidden) = self.hidden_of(shape)?;
        wire::expect_len(wire, rows * hidden * 4)?;
        let values: Vec<f32> = bytes_to_f32(wire, DType::F32)
            .iter()
            .enumerate()
            .map(|(i, v)| v + self.mean_at(i, hidden))
            .collect();
        Ok(f32_to_bytes(&values, dtype))
    }
}

fn needs(_: &str, _: &str) -> Result<bool, CodecError> {
    Ok(true)
}

fn calibrate(_: &str, _: &str, samples: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
    let hidden = samples.hidden();
    let values = samples.to_f32();
    let rows = (values.len() / hidden) as f32;
    let mut state = MAGIC.to_vec();
    state.extend_from_slice(&(hidden as u32).to_le_bytes());
    for c in 0..hidden {
        let mean = values.iter().skip(c).step_by(hidden).sum::<f32>() / rows;
        state.extend_from_slice(&mean.to_le_bytes());
    }
    Ok(state)
}

/// Reads the state; `strict` checks the magic and the exact length.
fn read_state(state: &[u8], strict: bool) -> Result<Vec<f32>, CodecError> {
    let mut reader = WireReader::new(state);
    if reader.take(4)? != MAGIC && strict {
        return Err(CodecError::new("not a mean-offset state"));
    }
    let hidden = reader.u32()? as usize;
    if strict && reader.remaining() != hidden * 4 {
        return Err(CodecError::new(
            "state length does not match its hidden size",
        ));
    }
    let count = hidden.min(reader.remaining() / 4);
    (0..count).map(|_| reader.f32()).collect()
}

fn new_codec(_: &str, _: &str, state: &[u8]) -> Result<Box<dyn Codec>, CodecError> {
    Ok(Box::new(MeanOffset {
        mean: read_state(state, true)?,
        checks_hidden: true,
    }))
}

fn family() -> Calibration {
    Calibration {
        needs_calibration: needs,
        calibrate,
        new_codec,
        new_device_codec: None,
    }
}

fn failures_of(calibration: Calibration) -> String {
    calibrated_conformance(calibration, &[("mean-offset", "{}")]).join("\n")
}

#[test]
fn a_correct_family_passes() {
    assert_eq!(failures_of(family()), "");
}

#[test]
fn a_codec_that_needs_no_calibration_fails() {
    fn no(_: &str, _: &str) -> Result<bool, CodecError> {
        Ok(false)
    }
    let failures = failures_of(Calibration {
        needs_calibration: no,
        ..family()
    });
    assert!(
        failures.contains("needs_calibration is false"),
        "{failures}"
    );
}

#[test]
fn a_drifting_fit_fails() {
    static FITS: AtomicU32 = AtomicU32::new(0);
    fn drifting(
        codec: &str,
        params: &str,
        samples: &TensorView<'_>,
    ) -> Result<Vec<u8>, CodecError> {
        let mut state = calibrate(codec, params, samples)?;
        let fit = FITS.fetch_add(1, Ordering::Relaxed) as f32;
        state[8..12].copy_from_slice(&fit.to_le_bytes());
        Ok(state)
    }
    let failures = failures_of(Calibration {
        calibrate: drifting,
        ..family()
    });
    assert!(failures.contains("different states"), "{failures}");
}

#[test]
fn a_lax_state_reader_fails() {
    fn lax(_: &str, _: &str, state: &[u8]) -> Result<Box<dyn Codec>, CodecError> {
        Ok(Box::new(MeanOffset {
            mean: read_state(state, false)?,
            checks_hidden: true,
        }))
    }
    let failures = failures_of(Calibration {
        new_codec: lax,
        ..family()
    });
    assert!(
        failures.contains("accepted a truncated state"),
        "{failures}"
    );
}

#[test]
fn a_codec_blind_to_the_hidden_size_fails() {
    fn blind(_: &str, _: &str, state: &[u8]) -> Result<Box<dyn Codec>, CodecError> {
        Ok(Box::new(MeanOffset {
            mean: read_state(state, true)?,
            checks_hidden: false,
        }))
    }
    let failures = failures_of(Calibration {
        new_codec: blind,
        ..family()
    });
    assert!(failures.contains("encode accepted hidden 65"), "{failures}");
}

#[test]
fn a_codec_taking_another_codecs_state_fails() {
    let failures =
        calibrated_conformance(family(), &[("mean-a", "{}"), ("mean-b", "{}")]).join("\n");
    assert!(
        failures.contains("accepted another codec's state"),
        "{failures}"
    );
}
