//! `outlier`: values (or whole channels) with |x| above a threshold travel exactly as f16 with
//! their positions; everything else is symmetric intN per block (or per token), as in `intq`
//! ([`splitbench_plugin_api::quant`]).
//!
//! A plain int4 block of 64 that holds one massive activation loses its other 63 values to
//! the block's scale; taking the outliers out first keeps them.
//!
//! Wire (little-endian), `value` mode:
//! - per token, the outlier count (u16 when hidden ≤ 65535, else u32);
//! - all outlier positions within their token, bit-packed with ceil(log2(hidden)) bits;
//! - all outlier values as f16;
//! - the dense remainder (outliers zeroed) in the symmetric blockwise format of [`splitbench_plugin_api::quant`].
//!
//! `channel` mode: a u32 channel count, the channel indices bit-packed, then per token the f16
//! values of those channels, then the dense remainder. Non-finite input is rejected.

mod device;

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::f32_to_bytes,
    device::DeviceCodec,
    export_plugin, params,
    quant::{blocks_wire_len, decode_blocks, encode_blocks, finite_values, BlockParams},
    wire::{self, WireReader},
    Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Value,
    Channel,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct OutlierParams {
    pub threshold: f32,
    pub mode: Mode,
    pub bits: u32,
    pub block: usize,
}

impl Default for OutlierParams {
    fn default() -> Self {
        // 6.0 is LLM.int8()'s outlier threshold.
        OutlierParams {
            threshold: 6.0,
            mode: Mode::Value,
            bits: 4,
            block: 64,
        }
    }
}

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "outlier".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Outliers kept exactly (f16) with positions; the rest intN".into(),
        codecs: vec![CodecInfo::new::<OutlierParams>(
            "outlier",
            "outlier values or channels in f16, the rest blockwise intN",
            &[
                ("threshold", "|x| above this is an outlier"),
                (
                    "mode",
                    "\"value\" (each value) or \"channel\" (whole channels)",
                ),
                ("bits", "bits per dense value, 2..=8"),
                ("block", "values per scale; 0 = one scale per token"),
            ],
        )],
    }
}

fn parse(name: &str, params_json: &str) -> Result<OutlierParams, CodecError> {
    match name {
        "outlier" => {
            let p: OutlierParams = params::parse(name, params_json)?;
            if !(2..=8).contains(&p.bits) {
                return Err(CodecError::new(format!(
                    "`bits` must be in 2..=8, got {}",
                    p.bits
                )));
            }
            if !(p.threshold.is_finite() && p.threshold >= 0.0) {
                return Err(CodecError::new("`threshold` must be a finite number ≥ 0"));
            }
            Ok(p)
        }
        other => Err(info().unknown_codec(other)),
    }
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    Ok(Box::new(Outlier {
        params: parse(name, params_json)?,
    }))
}

pub fn new_device_codec(
    name: &str,
    params_json: &str,
) -> Result<Option<Box<dyn DeviceCodec>>, CodecError> {
    Ok(Some(Box::new(device::OutlierOnDevice::new(parse(
        name,
        params_json,
    )?))))
}

export_plugin!(info, new_codec, new_device_codec);

pub struct Outlier {
    pub params: OutlierParams,
}

impl Outlier {
    fn block_params(&self, hidden: usize) -> BlockParams {
        block_params(&self.params, hidden)
    }
}

/// The dense remainder's blockwise parameters (`block = 0`: one block per token).
fn block_params(params: &OutlierParams, hidden: usize) -> BlockParams {
    BlockParams {
        bits: params.bits,
        block: if params.block == 0 {
            hidden.max(1)
        } else {
            params.block
        },
    }
}

fn count_width(hidden: usize) -> usize {
    if hidden <= u16::MAX as usize {
        2
    } else {
        4
    }
}

impl Codec for Outlier {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let mut values = finite_values(input)?;
        let hidden = input.hidden();
        let bits = wire::index_bits(hidden);
        let threshold = self.params.threshold;
        let mut out = Vec::new();
        let mut positions = Vec::new();
        let mut kept = Vec::new();
        match self.params.mode {
            Mode::Value => {
                let mut counts = Vec::new();
                for row in values.chunks_mut(hidden.max(1)) {
                    let before = positions.len();
                    for (i, v) in row.iter_mut().enumerate() {
                        if v.abs() > threshold {
                            positions.push(i as u32);
                            kept.push(*v);
                            *v = 0.0;
                        }
                    }
                    counts.push(positions.len() - before);
                }
                for c in counts {
                    if count_width(hidden) == 2 {
                        out.extend_from_slice(&(c as u16).to_le_bytes());
                    } else {
                        out.extend_from_slice(&(c as u32).to_le_bytes());
                    }
                }
            }
            Mode::Channel => {
                let mut channels: Vec<u32> = (0..hidden as u32)
                    .filter(|&c| {
                        values
                            .chunks(hidden)
                            .any(|row| row[c as usize].abs() > threshold)
                    })
                    .collect();
                channels.sort_unstable();
                for row in values.chunks_mut(hidden.max(1)) {
                    for &c in &channels {
                        kept.push(row[c as usize]);
                        row[c as usize] = 0.0;
                    }
                }
                out.extend_from_slice(&(channels.len() as u32).to_le_bytes());
                positions = channels;
            }
        }
        wire::pack_bits(positions, bits, &mut out);
        for v in kept {
            wire::put_f16(&mut out, v);
        }
        out.extend(encode_blocks(
            &values,
            hidden,
            self.block_params(hidden),
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
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        let bits = wire::index_bits(hidden);
        let dense_len = blocks_wire_len(rows, hidden, self.block_params(hidden), false);
        let mut reader = WireReader::new(wire);
        // Per-row outlier positions as (row, position) pairs, counted before anything is
        // allocated from the wire's say-so.
        let (counts, total): (Vec<usize>, usize) = match self.params.mode {
            Mode::Value => {
                let mut counts = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let c = if count_width(hidden) == 2 {
                        reader.u16()? as usize
                    } else {
                        reader.u32()? as usize
                    };
                    if c > hidden {
                        return Err(CodecError::new(format!(
                            "wire says {c} outliers in a token of {hidden}"
                        )));
                    }
                    counts.push(c);
                }
                let total = counts.iter().sum();
                (counts, total)
            }
            Mode::Channel => {
                let c = reader.u32()? as usize;
                if c > hidden {
                    return Err(CodecError::new(format!(
                        "wire says {c} outlier channels of {hidden}"
                    )));
                }
                (vec![c; rows], c)
            }
        };
        let index_count = if self.params.mode == Mode::Value {
            total
        } else {
            counts.first().copied().unwrap_or(0)
        };
        let value_count = counts.iter().sum::<usize>();
        let needed = wire::packed_len(index_count, bits) + value_count * 2 + dense_len;
        if reader.remaining() != needed {
            return Err(CodecError::new(format!(
                "wire has {} bytes after the header, its outlier counts need {needed}",
                reader.remaining()
            )));
        }
        let mut positions = Vec::new();
        wire::unpack_bits(
            reader.take(wire::packed_len(index_count, bits))?,
            index_count,
            bits,
            &mut positions,
        )?;
        if let Some(&p) = positions.iter().find(|&&p| p as usize >= hidden) {
            return Err(CodecError::new(format!(
                "outlier position {p} is outside hidden size {hidden}"
            )));
        }
        let mut kept = Vec::with_capacity(value_count);
        for _ in 0..value_count {
            kept.push(reader.f16()?);
        }
        let mut values = decode_blocks(
            reader.take(dense_len)?,
            rows,
            hidden,
            self.block_params(hidden),
            false,
        )?;
        reader.finish()?;
        let mut next_value = kept.into_iter();
        let mut next_position = 0;
        for (row_index, &count) in counts.iter().enumerate() {
            let row_positions = match self.params.mode {
                Mode::Value => {
                    let p = &positions[next_position..next_position + count];
                    next_position += count;
                    p
                }
                Mode::Channel => &positions[..],
            };
            for &p in row_positions {
                values[row_index * hidden + p as usize] = next_value.next().unwrap_or(0.0);
            }
        }
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitbench_plugin_api::convert::bytes_to_f32;

    fn round(c: &mut Outlier, values: &[f32], hidden: usize) -> (Vec<u8>, Vec<f32>) {
        let raw = f32_to_bytes(values, DType::F32);
        let shape = [1, values.len() / hidden, hidden];
        let wire = c
            .encode(&TensorView::new(DType::F32, &shape, &raw).unwrap())
            .unwrap();
        let out = bytes_to_f32(&c.decode(&wire, &shape, DType::F32).unwrap(), DType::F32);
        (wire, out)
    }

    #[test]
    fn massive_value_no_longer_flattens_its_block() {
        // Same block as intq's `one_massive_value_flattens_its_block`: here 7000 travels as
        // f16 and the remaining block [0, 0.9, -0.8, 0.3] gets scale 0.9/7.
        let mut c = Outlier {
            params: OutlierParams {
                block: 4,
                ..Default::default()
            },
        };
        let (wire, out) = round(&mut c, &[7000.0, 0.9, -0.8, 0.3], 4);
        // count u16 + one 2-bit position (1 byte) + one f16 + dense (f16 scale + 2 bytes).
        assert_eq!(wire.len(), 2 + 1 + 2 + 2 + 2);
        assert_eq!(out[0], 7000.0);
        let scale = half::f16::from_f32(0.9 / 7.0).to_f32();
        assert_eq!(out[1], 7.0 * scale);
        assert_eq!(out[2], -6.0 * scale);
        assert_eq!(out[3], 2.0 * scale);
    }

    #[test]
    fn channel_mode_lists_channels_once() {
        let mut c = Outlier {
            params: OutlierParams {
                mode: Mode::Channel,
                block: 0,
                ..Default::default()
            },
        };
        // Channel 2 is an outlier on the first token only; both tokens send it.
        let (wire, out) = round(&mut c, &[0.5, 1.0, 300.0, -1.0, 0.25, 1.0, 2.0, -1.0], 4);
        // u32 count + one 2-bit index (1 byte) + 2 f16 values + dense 2 × (f16 scale + 2 bytes).
        assert_eq!(wire.len(), 4 + 1 + 4 + 2 * (2 + 2));
        assert_eq!(out[2], 300.0);
        assert_eq!(out[6], 2.0);
    }

    #[test]
    fn count_above_hidden_is_an_error() {
        let mut c = Outlier {
            params: OutlierParams::default(),
        };
        let wire = [9u8, 0, 0, 0, 0, 0, 0, 0];
        assert!(c.decode(&wire, &[1, 1, 4], DType::F32).is_err());
    }
}
