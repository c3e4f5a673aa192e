//! `scale-calibrated`: symmetric intN with one scale per channel, fitted once on the
//! calibration samples (the channel's largest magnitude, or its `percentile` of magnitudes
//! with larger values clipped), so that only the codes travel.
//!
//! State: header (`SBSC`), u32 bits, then per channel its f32 scale (clip / (2^(bits-1) - 1)).
//! Wire: every value's code q + 2^(bits-1) - 1, q = clamp(round(x / scale), ±(2^(bits-1) - 1)),
//! bit-packed LSB-first over the whole tensor: ⌈rows · hidden · bits / 8⌉ bytes, hidden · bits
//! / 8 per token.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::f32_to_bytes,
    quant::finite_values,
    wire::{self},
    Codec, CodecError, DType, TensorView,
};

use crate::state::{self, StateReader};

pub const NAME: &str = "scale-calibrated";
const MAGIC: &[u8; 4] = b"SBSC";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleParams {
    pub bits: u32,
    pub percentile: f64,
}

impl Default for ScaleParams {
    fn default() -> Self {
        // 8 bits: with no per-token scale, 4 bits leave too few levels for a token far from
        // the calibration's range.
        ScaleParams {
            bits: 8,
            percentile: 1.0,
        }
    }
}

pub const DOCS: &[(&str, &str)] = &[
    ("bits", "bits per value, 2..=8"),
    (
        "percentile",
        "fraction of each channel's calibration magnitudes below its clip, in (0, 1]; 1 = absmax",
    ),
];

pub fn check(p: &ScaleParams) -> Result<(), CodecError> {
    crate::check_bits(p.bits)?;
    if !(p.percentile > 0.0 && p.percentile <= 1.0) {
        return Err(CodecError::new(format!(
            "`percentile` must be in (0, 1], got {}",
            p.percentile
        )));
    }
    Ok(())
}

fn qmax(bits: u32) -> f32 {
    ((1i32 << (bits - 1)) - 1) as f32
}

/// The magnitude at `percentile` of `magnitudes` (the k-th smallest, k = ⌈p · n⌉).
fn clip(mut magnitudes: Vec<f32>, percentile: f64) -> f32 {
    let n = magnitudes.len();
    let k = ((percentile * n as f64).ceil() as usize).clamp(1, n) - 1;
    *magnitudes.select_nth_unstable_by(k, f32::total_cmp).1
}

pub fn calibrate(p: &ScaleParams, samples: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
    let (_, hidden) = state::sample_dims(samples.shape(), NAME)?;
    let values = finite_values(samples)?;
    let scales: Vec<f32> = (0..hidden)
        .into_par_iter()
        .map(|c| {
            let magnitudes = values.iter().skip(c).step_by(hidden).map(|v| v.abs());
            clip(magnitudes.collect(), p.percentile) / qmax(p.bits)
        })
        .collect();
    let mut out = state::header(MAGIC, hidden);
    state::put_u32(&mut out, p.bits as usize);
    state::put_f32s(&mut out, scales);
    Ok(out)
}

pub struct ScaleCalibrated {
    bits: u32,
    scales: Vec<f32>,
}

impl ScaleCalibrated {
    pub fn from_state(p: &ScaleParams, state: &[u8]) -> Result<Self, CodecError> {
        let mut reader = StateReader::open(state, MAGIC, NAME)?;
        let bits = reader.u32()?;
        if bits != p.bits as usize {
            return Err(CodecError::new(format!(
                "the `{NAME}` state was fitted for `bits` = {bits}; the params say {}",
                p.bits
            )));
        }
        let scales = reader.f32s(reader.hidden)?;
        reader.finish()?;
        if scales.iter().any(|&s| s < 0.0) {
            return Err(CodecError::new(format!(
                "the `{NAME}` state holds a negative scale"
            )));
        }
        Ok(ScaleCalibrated {
            bits: p.bits,
            scales,
        })
    }
}

impl Codec for ScaleCalibrated {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let hidden = self.scales.len();
        state::fitted_rows(input.shape(), hidden, NAME)?;
        let values = finite_values(input)?;
        let qmax = qmax(self.bits);
        let mut codes = vec![0u8; values.len()];
        codes
            .par_chunks_mut(hidden)
            .zip(values.par_chunks(hidden))
            .for_each(|(codes, row)| {
                for ((code, &x), &scale) in codes.iter_mut().zip(row).zip(&self.scales) {
                    let q = if scale > 0.0 {
                        (x / scale).round()
                    } else {
                        0.0
                    };
                    *code = (q.clamp(-qmax, qmax) + qmax) as u8;
                }
            });
        Ok(wire::pack_codes(&codes, self.bits))
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let hidden = self.scales.len();
        let rows = state::fitted_rows(shape, hidden, NAME)?;
        wire::expect_len(wire, wire::packed_len(rows * hidden, self.bits))?;
        let qmax = qmax(self.bits);
        let mut values = vec![0f32; rows * hidden];
        values
            .par_chunks_mut(hidden)
            .enumerate()
            .for_each(|(r, row)| {
                for (c, (v, &scale)) in row.iter_mut().zip(&self.scales).enumerate() {
                    let q = wire::read_code(wire, r * hidden + c, self.bits) as f32;
                    *v = (q - qmax) * scale;
                }
            });
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitbench_plugin_api::convert::bytes_to_f32;

    fn fitted(p: ScaleParams, samples: &[f32], hidden: usize) -> ScaleCalibrated {
        let state = crate::on_samples(samples, hidden, |view| calibrate(&p, view));
        ScaleCalibrated::from_state(&p, &state.unwrap()).unwrap()
    }

    #[test]
    fn absmax_scales_by_hand() {
        // Channel 0 reaches 7, channel 1 reaches 14: at 4 bits (qmax 7) scales 1 and 2.
        let p = ScaleParams {
            bits: 4,
            percentile: 1.0,
        };
        let mut c = fitted(p, &[7.0, -2.0, -3.0, 14.0], 2);
        assert_eq!(c.scales, [1.0, 2.0]);
        // 2.6 -> 3 (code 10), -5 -> -2.5 rounds away to -3 (code 4); 100 clips to 7 (code 14).
        let raw = f32_to_bytes(&[2.6, -5.0, 100.0, 0.0], DType::F32);
        let view = TensorView::new(DType::F32, &[1, 2, 2], &raw).unwrap();
        let wire = c.encode(&view).unwrap();
        assert_eq!(wire, [10 | 4 << 4, 14 | 7 << 4]);
        let out = bytes_to_f32(
            &c.decode(&wire, &[1, 2, 2], DType::F32).unwrap(),
            DType::F32,
        );
        assert_eq!(out, [3.0, -6.0, 7.0, 0.0]);
    }

    #[test]
    fn percentile_clips_the_largest() {
        // Magnitudes 1..=10 in one channel: the 0.9 percentile is the 9th smallest, 9.
        let samples: Vec<f32> = (1..=10).map(|v| v as f32).collect();
        let p = ScaleParams {
            bits: 8,
            percentile: 0.9,
        };
        assert_eq!(fitted(p, &samples, 1).scales, [9.0 / 127.0]);
    }

    #[test]
    fn a_state_for_other_bits_is_refused() {
        let p = ScaleParams::default();
        let raw = f32_to_bytes(&[1.0, 2.0], DType::F32);
        let view = TensorView::new(DType::F32, &[1, 1, 2], &raw).unwrap();
        let state = calibrate(&p, &view).unwrap();
        let four = ScaleParams { bits: 4, ..p };
        let err = ScaleCalibrated::from_state(&four, &state).err().unwrap();
        assert!(err.to_string().contains("`bits` = 8"), "{err}");
    }

    #[test]
    fn percentile_outside_its_range_is_named() {
        let p = ScaleParams {
            percentile: 0.0,
            ..Default::default()
        };
        assert!(check(&p).unwrap_err().to_string().contains("`percentile`"));
    }
}
