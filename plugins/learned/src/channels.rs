//! `outlier-channels`: the channels with the largest mean |x| on the calibration samples
//! travel in f16 on every token; the other channels are symmetric intN with one f16 absmax
//! scale per token ([`splitbench_plugin_api::quant`], one block per token). The channels are
//! chosen once, so no index travels.
//!
//! State: header (`SBOC`), u32 count k, the k channel indices (u32, ascending).
//! Wire: every token's k kept values (f16), then the remaining channels in `quant`'s blockwise
//! format: per token an f16 scale, then all codes bit-packed: 2k + 2 + (hidden - k) · bits / 8
//! bytes per token.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::f32_to_bytes,
    quant::{blocks_wire_len, decode_blocks, encode_blocks, finite_values, BlockParams},
    wire::{self, WireReader},
    Codec, CodecError, DType, TensorView,
};

use crate::state::{self, StateReader};

pub const NAME: &str = "outlier-channels";
const MAGIC: &[u8; 4] = b"SBOC";
/// Kept channels when neither `channels` nor `fraction` is given.
const DEFAULT_CHANNELS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChannelParams {
    pub channels: Option<usize>,
    pub fraction: Option<f64>,
    pub bits: u32,
}

impl Default for ChannelParams {
    fn default() -> Self {
        ChannelParams {
            channels: None,
            fraction: None,
            bits: 4,
        }
    }
}

pub const DOCS: &[(&str, &str)] = &[
    (
        "channels",
        "channels kept in f16 (8 when neither this nor `fraction` is given)",
    ),
    (
        "fraction",
        "or: the fraction of hidden kept in f16, in [0, 1]",
    ),
    ("bits", "bits per other value, 2..=8"),
];

pub fn check(p: &ChannelParams) -> Result<(), CodecError> {
    crate::check_bits(p.bits)?;
    match (p.channels, p.fraction) {
        (Some(_), Some(_)) => Err(CodecError::new(
            "give `channels` (a count) or `fraction` (of hidden, in [0, 1]), not both",
        )),
        (None, Some(f)) if !(0.0..=1.0).contains(&f) => Err(CodecError::new(format!(
            "`fraction` must be in [0, 1], got {f}"
        ))),
        _ => Ok(()),
    }
}

/// Channels kept at hidden size `hidden`.
fn kept_count(p: &ChannelParams, hidden: usize) -> Result<usize, CodecError> {
    let k = match (p.channels, p.fraction) {
        (_, Some(f)) => (f * hidden as f64).round() as usize,
        (c, None) => c.unwrap_or(DEFAULT_CHANNELS),
    };
    if k > hidden {
        return Err(CodecError::new(format!(
            "`channels` must be in 0..={hidden} (the hidden size), got {k}"
        )));
    }
    Ok(k)
}

pub fn calibrate(p: &ChannelParams, samples: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
    let (_, hidden) = state::sample_dims(samples.shape(), NAME)?;
    let k = kept_count(p, hidden)?;
    let values = finite_values(samples)?;
    let mut sums = vec![0f64; hidden];
    for row in values.chunks(hidden) {
        for (s, v) in sums.iter_mut().zip(row) {
            *s += f64::from(v.abs());
        }
    }
    let mut ranked: Vec<usize> = (0..hidden).collect();
    // Largest mean first; ties to the lower index, so the choice is deterministic.
    ranked.sort_by(|&a, &b| sums[b].total_cmp(&sums[a]).then(a.cmp(&b)));
    let mut kept = ranked[..k].to_vec();
    kept.sort_unstable();
    let mut out = state::header(MAGIC, hidden);
    state::put_u32(&mut out, k);
    kept.into_iter().for_each(|c| state::put_u32(&mut out, c));
    Ok(out)
}

pub struct OutlierChannels {
    hidden: usize,
    bits: u32,
    kept: Vec<usize>,
}

impl OutlierChannels {
    pub fn from_state(p: &ChannelParams, state: &[u8]) -> Result<Self, CodecError> {
        let mut reader = StateReader::open(state, MAGIC, NAME)?;
        let hidden = reader.hidden;
        let k = reader.u32()?;
        let expected = kept_count(p, hidden)?;
        if k != expected {
            return Err(CodecError::new(format!(
                "the `{NAME}` state keeps {k} channels; the params keep {expected}"
            )));
        }
        let kept = (0..k)
            .map(|_| reader.u32())
            .collect::<Result<Vec<_>, _>>()?;
        reader.finish()?;
        if kept.iter().any(|&c| c >= hidden) || kept.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CodecError::new(format!(
                "the `{NAME}` state's channels are not ascending indices below {hidden}"
            )));
        }
        Ok(OutlierChannels {
            hidden,
            bits: p.bits,
            kept,
        })
    }

    /// The channels that are not kept, ascending: the quantized part's order. Listed on the
    /// fly: a state's length does not bound its hidden size, so nothing of that size is
    /// allocated before a tensor of it arrives.
    fn rest(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.hidden).filter(|c| self.kept.binary_search(c).is_err())
    }

    fn rest_len(&self) -> usize {
        self.hidden - self.kept.len()
    }

    fn rest_params(&self) -> BlockParams {
        BlockParams {
            bits: self.bits,
            block: self.rest_len().max(1),
        }
    }
}

impl Codec for OutlierChannels {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        state::fitted_rows(input.shape(), self.hidden, NAME)?;
        let values = finite_values(input)?;
        let rows: Vec<&[f32]> = values.chunks(self.hidden).collect();
        let mut out = Vec::new();
        for row in &rows {
            self.kept
                .iter()
                .for_each(|&c| wire::put_f16(&mut out, row[c]));
        }
        let rest: Vec<f32> = rows
            .par_iter()
            .flat_map_iter(|row| self.rest().map(|c| row[c]))
            .collect();
        out.extend(encode_blocks(
            &rest,
            self.rest_len(),
            self.rest_params(),
            false,
        ));
        Ok(out)
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let rows = state::fitted_rows(shape, self.hidden, NAME)?;
        let kept_len = rows * self.kept.len() * 2;
        let rest_len = blocks_wire_len(rows, self.rest_len(), self.rest_params(), false);
        wire::expect_len(wire, kept_len + rest_len)?;
        let mut reader = WireReader::new(wire);
        let mut values = vec![0f32; rows * self.hidden];
        for row in values.chunks_mut(self.hidden) {
            for &c in &self.kept {
                row[c] = reader.f16()?;
            }
        }
        let rest = decode_blocks(
            reader.take(rest_len)?,
            rows,
            self.rest_len(),
            self.rest_params(),
            false,
        )?;
        reader.finish()?;
        for (row, rest_row) in values
            .chunks_mut(self.hidden)
            .zip(rest.chunks(self.rest_len().max(1)))
        {
            for (c, &v) in self.rest().zip(rest_row) {
                row[c] = v;
            }
        }
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitbench_plugin_api::convert::{bytes_to_f32, round_to};

    fn fitted(p: ChannelParams, samples: &[f32], hidden: usize) -> OutlierChannels {
        let state = crate::on_samples(samples, hidden, |view| calibrate(&p, view));
        OutlierChannels::from_state(&p, &state.unwrap()).unwrap()
    }

    #[test]
    fn the_largest_channels_are_kept_by_hand() {
        // Mean |x| per channel: 1, 50, 0.5, 20: with 2 kept, channels 1 and 3.
        let samples = [1.0, -60.0, 0.5, 20.0, -1.0, 40.0, -0.5, -20.0];
        let p = ChannelParams {
            channels: Some(2),
            ..Default::default()
        };
        let mut c = fitted(p, &samples, 4);
        assert_eq!(c.kept, [1, 3]);
        assert_eq!(c.rest().collect::<Vec<_>>(), [0, 2]);
        // Kept 300 and -7 in f16; the rest [0.7, -0.35] at 4 bits: scale 0.1 (f16), codes 7, -3.5 -> -4.
        let raw = f32_to_bytes(&[0.7, 300.0, -0.35, -7.0], DType::F32);
        let view = TensorView::new(DType::F32, &[1, 1, 4], &raw).unwrap();
        let wire = c.encode(&view).unwrap();
        // 2 kept f16 + f16 scale + two 4-bit codes (1 byte).
        assert_eq!(wire.len(), 4 + 2 + 1);
        let out = bytes_to_f32(
            &c.decode(&wire, &[1, 1, 4], DType::F32).unwrap(),
            DType::F32,
        );
        let scale = round_to(DType::F16, 0.7 / 7.0);
        assert_eq!(out, [7.0 * scale, 300.0, -4.0 * scale, -7.0]);
    }

    #[test]
    fn fraction_and_channels_agree_with_the_state() {
        let samples: Vec<f32> = (0..20).map(|v| v as f32).collect();
        let quarter = ChannelParams {
            fraction: Some(0.25),
            ..Default::default()
        };
        let c = fitted(quarter, &samples, 10);
        // 0.25 · 10 rounds to 3 (half away from zero): the three largest, 7, 8, 9.
        assert_eq!(c.kept, [7, 8, 9]);
        let raw = f32_to_bytes(&samples, DType::F32);
        let view = TensorView::new(DType::F32, &[1, 2, 10], &raw).unwrap();
        let state = calibrate(&quarter, &view).unwrap();
        let two = ChannelParams {
            channels: Some(2),
            ..Default::default()
        };
        let err = OutlierChannels::from_state(&two, &state).err().unwrap();
        assert!(err.to_string().contains("keeps 3 channels"), "{err}");
    }

    #[test]
    fn param_errors_name_the_param() {
        let both = ChannelParams {
            channels: Some(2),
            fraction: Some(0.1),
            ..Default::default()
        };
        assert!(check(&both).unwrap_err().to_string().contains("not both"));
        let too_many = ChannelParams {
            channels: Some(5),
            ..Default::default()
        };
        let err = kept_count(&too_many, 4).unwrap_err().to_string();
        assert!(err.contains("`channels` must be in 0..=4"), "{err}");
    }
}
