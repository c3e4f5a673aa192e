//! `intq`: integer quantization with absmax or min/max scales.
//!
//! Wire formats (little-endian; "row" = one token's hidden vector):
//! - `int8-token`: per row an f32 scale (absmax / 127), then one i8 per element.
//! - `intn-block`: every row is cut into blocks of `block` values (the last may be shorter);
//!   per block an f16 scale (absmax / (2^(bits-1) - 1)); then all values as offset-binary
//!   `bits`-bit codes (q + 2^(bits-1) - 1), bit-packed LSB-first, padded to a whole byte.
//! - `intn-block-asym`: per block an f16 scale ((max - min) / (2^bits - 1)) and an f16 minimum,
//!   then `bits`-bit codes of round((x - min) / scale), bit-packed.
//! - `intn-affine-token`: TorchAO's asymmetric per-token affine format (see [`affine`]): per
//!   token a scale in the model dtype, then per token an i16 zero point, then unsigned
//!   `bits`-bit codes, bit-packed.
//!
//! With `entropy = "rans"` (`intn-block`, `intn-block-asym`, `intn-affine-token`), the packed
//! codes are replaced by an entropy-coded section (see [`entropy`]): a static model of the
//! tensor's code histogram, then constriction's rANS words. Scales, minima and zero points
//! stay as above. Host path only.
//!
//! Non-finite input is rejected: one Inf would turn its whole block into NaN.

pub mod affine;
mod device;
pub mod entropy;

use entropy::Entropy;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    block_kernels::Blockwise,
    convert::f32_to_bytes,
    device::DeviceCodec,
    export_plugin, params,
    quant::{decode_blocks, encode_blocks, finite_values, BlockParams},
    range::absmax,
    wire::{self, WireReader},
    Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

#[derive(Debug, Default, Serialize, Deserialize)]
struct NoParams {}

const BLOCK_DOCS: &[(&str, &str)] = &[
    ("bits", "bits per value, 2..=8"),
    ("block", "values per scale, along the hidden dimension"),
    ENTROPY_DOC,
];

pub(crate) const ENTROPY_DOC: (&str, &str) = (
    "entropy",
    "\"none\" (bit-packed codes) or \"rans\" (codes entropy-coded with constriction's rANS, \
     model in the wire)",
);

/// `intn-block` / `intn-block-asym` params: the blockwise format's, and the entropy coder.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct IntNParams {
    pub bits: u32,
    pub block: usize,
    pub entropy: Entropy,
}

impl Default for IntNParams {
    fn default() -> Self {
        let BlockParams { bits, block } = BlockParams::default();
        IntNParams {
            bits,
            block,
            entropy: Entropy::None,
        }
    }
}

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "intq".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Integer quantization: per-token int8, blockwise intN (symmetric or min/max)"
            .into(),
        codecs: vec![
            CodecInfo::new::<NoParams>(
                "int8-token",
                "symmetric absmax int8, one f32 scale per token",
                &[],
            ),
            CodecInfo::new::<IntNParams>(
                "intn-block",
                "symmetric absmax intN per block, f16 scales, bit-packed",
                BLOCK_DOCS,
            ),
            CodecInfo::new::<IntNParams>(
                "intn-block-asym",
                "asymmetric min/max intN per block, f16 scale and minimum, bit-packed",
                BLOCK_DOCS,
            ),
            CodecInfo::new::<affine::AffineParams>(
                "intn-affine-token",
                "TorchAO asymmetric affine intN per token (choose_qparams_affine): scale in the \
                 model dtype, i16 zero point, bit-packed unsigned codes",
                &[("bits", "bits per value, 2..=8"), ENTROPY_DOC],
            ),
        ],
    }
}

/// A codec name and its params, checked.
enum Variant {
    Int8Token,
    Block(Blockwise, Entropy),
    AffineToken { bits: u32, entropy: Entropy },
}

fn parse(name: &str, params_json: &str) -> Result<Variant, CodecError> {
    match name {
        "int8-token" => {
            params::parse::<NoParams>(name, params_json)?;
            Ok(Variant::Int8Token)
        }
        "intn-block" | "intn-block-asym" => {
            let p: IntNParams = params::parse(name, params_json)?;
            if !(2..=8).contains(&p.bits) {
                return Err(CodecError::new(format!(
                    "`bits` must be in 2..=8, got {}",
                    p.bits
                )));
            }
            if p.block == 0 {
                return Err(CodecError::new("`block` must be at least 1"));
            }
            Ok(Variant::Block(
                Blockwise {
                    params: BlockParams {
                        bits: p.bits,
                        block: p.block,
                    },
                    asymmetric: name == "intn-block-asym",
                },
                p.entropy,
            ))
        }
        "intn-affine-token" => {
            let p: affine::AffineParams = params::parse(name, params_json)?;
            if !(2..=8).contains(&p.bits) {
                return Err(CodecError::new(format!(
                    "`bits` must be in 2..=8, got {}",
                    p.bits
                )));
            }
            Ok(Variant::AffineToken {
                bits: p.bits,
                entropy: p.entropy,
            })
        }
        other => Err(info().unknown_codec(other)),
    }
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    Ok(match parse(name, params_json)? {
        Variant::Int8Token => Box::new(Int8Token),
        Variant::Block(format, entropy) => Box::new(IntNBlock {
            params: format.params,
            asymmetric: format.asymmetric,
            entropy,
        }),
        Variant::AffineToken { bits, entropy } => Box::new(affine::AffineToken { bits, entropy }),
    })
}

pub fn new_device_codec(
    name: &str,
    params_json: &str,
) -> Result<Option<Box<dyn DeviceCodec>>, CodecError> {
    Ok(match parse(name, params_json)? {
        Variant::Int8Token => Some(Box::new(device::Int8TokenOnDevice::new())),
        Variant::Block(format, Entropy::None) => {
            Some(Box::new(device::BlocksOnDevice::new(format)))
        }
        // Host path only: the host moves the tensor to the CPU for these.
        Variant::Block(_, Entropy::Rans) | Variant::AffineToken { .. } => None,
    })
}

export_plugin!(info, new_codec, new_device_codec);

/// Per-token symmetric int8.
pub struct Int8Token;

/// Bytes of a token's scale (f32) in the `int8-token` wire.
const TOKEN_SCALE_LEN: usize = 4;

/// Bytes of the `int8-token` wire for `rows × hidden` values, on either path.
pub(crate) fn int8_token_wire_len(rows: usize, hidden: usize) -> usize {
    rows * TOKEN_SCALE_LEN + rows * hidden
}

impl Codec for Int8Token {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = finite_values(input)?;
        let hidden = input.hidden().max(1);
        let rows = values.len() / hidden;
        let mut out = vec![0u8; int8_token_wire_len(rows, hidden)];
        let (head, body) = out.split_at_mut(rows * TOKEN_SCALE_LEN);
        head.par_chunks_mut(TOKEN_SCALE_LEN)
            .zip(body.par_chunks_mut(hidden))
            .zip(values.par_chunks(hidden))
            .for_each(|((scale, codes), row)| {
                let s = absmax(row) / 127.0;
                scale.copy_from_slice(&s.to_le_bytes());
                let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
                for (c, &v) in codes.iter_mut().zip(row) {
                    *c = (v * inv).round().clamp(-127.0, 127.0) as i8 as u8;
                }
            });
        Ok(out)
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        wire::expect_len(wire, int8_token_wire_len(rows, hidden))?;
        let mut reader = WireReader::new(wire);
        let mut scales = Vec::with_capacity(rows);
        for _ in 0..rows {
            scales.push(reader.f32()?);
        }
        let body = reader.take(rows * hidden)?;
        reader.finish()?;
        let mut values = vec![0f32; rows * hidden];
        values
            .par_chunks_mut(hidden.max(1))
            .zip(body.par_chunks(hidden.max(1)))
            .zip(scales)
            .for_each(|((out, row), s)| {
                for (o, &q) in out.iter_mut().zip(row) {
                    *o = f32::from(q as i8) * s;
                }
            });
        Ok(f32_to_bytes(&values, dtype))
    }
}

/// Blockwise intN, symmetric (absmax) or asymmetric (min/max).
pub struct IntNBlock {
    pub params: BlockParams,
    pub asymmetric: bool,
    pub entropy: Entropy,
}

impl IntNBlock {
    /// Bytes of the scales (and minima) before the codes.
    fn header_len(&self, rows: usize, hidden: usize) -> usize {
        let blocks = rows * hidden.max(1).div_ceil(self.params.block);
        blocks * if self.asymmetric { 4 } else { 2 }
    }
}

impl Codec for IntNBlock {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = finite_values(input)?;
        let mut out = encode_blocks(&values, input.hidden(), self.params, self.asymmetric);
        if self.entropy == Entropy::Rans {
            let rows = values.len() / input.hidden().max(1);
            let at = self.header_len(rows, input.hidden());
            let bits = self.params.bits;
            let mut codes = Vec::with_capacity(values.len());
            wire::unpack_bits(&out[at..], values.len(), bits, &mut codes)?;
            let codes: Vec<u8> = codes.into_iter().map(|c| c as u8).collect();
            let section = entropy::compress(&codes, bits)?;
            out.truncate(at);
            out.extend_from_slice(&section);
        }
        Ok(out)
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        let values = match self.entropy {
            Entropy::None => decode_blocks(wire, rows, hidden, self.params, self.asymmetric)?,
            Entropy::Rans => {
                let at = self.header_len(rows, hidden);
                let (head, section) = wire
                    .split_at_checked(at)
                    .ok_or_else(|| CodecError::new("wire truncated inside the scales"))?;
                let bits = self.params.bits;
                let codes = entropy::decompress(section, rows * hidden, bits)?;
                let mut blocks = head.to_vec();
                wire::pack_bits(codes.into_iter().map(u32::from), bits, &mut blocks);
                decode_blocks(&blocks, rows, hidden, self.params, self.asymmetric)?
            }
        };
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitbench_plugin_api::convert::bytes_to_f32;

    fn round(codec: &mut dyn Codec, values: &[f32], hidden: usize) -> (Vec<u8>, Vec<f32>) {
        let raw = f32_to_bytes(values, DType::F32);
        let shape = [1, values.len() / hidden, hidden];
        let view = TensorView::new(DType::F32, &shape, &raw).unwrap();
        let wire = codec.encode(&view).unwrap();
        let out = codec.decode(&wire, &shape, DType::F32).unwrap();
        (wire, bytes_to_f32(&out, DType::F32))
    }

    #[test]
    fn int8_token_by_hand() {
        // Row absmax 127 -> scale 1: values round to the nearest integer.
        let (wire, out) = round(&mut Int8Token, &[127.0, -3.4, 0.6, 2.5], 4);
        assert_eq!(&wire[..4], &1.0f32.to_le_bytes());
        assert_eq!(&wire[4..], &[127u8, (-3i8) as u8, 1, 3]);
        assert_eq!(out, [127.0, -3.0, 1.0, 3.0]);
    }

    #[test]
    fn int4_block_by_hand() {
        // bits 4: qmax 7. Block [7, -3.5, 0, 1] -> scale 1 -> q = [7, -4, 0, 1] (-3.5 rounds
        // away from zero) -> codes q+7 = [14, 3, 7, 8].
        let mut c = IntNBlock {
            params: BlockParams { bits: 4, block: 4 },
            asymmetric: false,
            entropy: Entropy::None,
        };
        let (wire, out) = round(&mut c, &[7.0, -3.5, 0.0, 1.0], 4);
        assert_eq!(wire.len(), 2 + 2);
        assert_eq!(&wire[..2], &half::f16::from_f32(1.0).to_le_bytes());
        assert_eq!(&wire[2..], &[14 | (3 << 4), 7 | (8 << 4)]);
        assert_eq!(out, [7.0, -4.0, 0.0, 1.0]);
    }

    #[test]
    fn one_massive_value_flattens_its_block() {
        // The motivating failure of plain blockwise int4: the other values collapse to 0.
        let mut c = IntNBlock {
            params: BlockParams { bits: 4, block: 4 },
            asymmetric: false,
            entropy: Entropy::None,
        };
        let (_, out) = round(&mut c, &[7000.0, 0.9, -0.8, 0.3], 4);
        assert_eq!(out, [7000.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn asym_block_by_hand() {
        // bits 2: levels 3. Block [1, 2, 3, 4]: min 1, scale 1 -> codes [0, 1, 2, 3].
        let mut c = IntNBlock {
            params: BlockParams { bits: 2, block: 4 },
            asymmetric: true,
            entropy: Entropy::None,
        };
        let (wire, out) = round(&mut c, &[1.0, 2.0, 3.0, 4.0], 4);
        assert_eq!(wire.len(), 2 + 2 + 1);
        assert_eq!(wire[4], 0b11_10_01_00);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn partial_last_block() {
        let mut c = IntNBlock {
            params: BlockParams { bits: 8, block: 4 },
            asymmetric: false,
            entropy: Entropy::None,
        };
        let (wire, out) = round(&mut c, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 6);
        assert_eq!(wire.len(), 2 * 2 + 6);
        for (a, b) in out.iter().zip([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) {
            assert!((a - b).abs() < 0.05, "{a} vs {b}");
        }
    }

    #[test]
    fn bits_out_of_range() {
        assert!(new_codec("intn-block", r#"{"bits": 9}"#).is_err());
        assert!(new_codec("intn-block", r#"{"bits": 1}"#).is_err());
        assert!(new_codec("intn-block", r#"{"block": 0}"#).is_err());
    }
}
