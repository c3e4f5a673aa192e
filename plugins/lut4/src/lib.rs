//! `lut4`: bitsandbytes' 4-bit lookup-table formats, NF4 and FP4 (`quantize_4bit` /
//! `dequantize_4bit`), numerically as bitsandbytes' CPU backend computes them.
//!
//! Wire (little-endian), for the whole `[batch, tokens, hidden]` tensor flattened, cut into
//! blocks of `block` consecutive values (the last may be shorter; blocks cross token
//! boundaries, as `quantize_4bit` on the hidden state does):
//! - per block an f32 absmax;
//! - then one 4-bit code per value, two a byte, the first value in the high nibble
//!   (bitsandbytes' packing); an odd count is padded with the code of 0.0 in the last low
//!   nibble, which the decoder ignores.
//!
//! Encoding (bitsandbytes 0.50 `backends/default/ops.py`, which its CPU backend uses):
//! full blocks are scaled by `x * (1 / max(absmax, 1e-38))`, a partial last block by
//! `x / max(absmax, 1e-38)` and stores that clamped absmax; the scaled value goes to the
//! `torch.bucketize` bucket of the midpoints between the sorted code values (a value on a
//! midpoint takes the lower code). Decoding is `code[q] * absmax` in f32, then rounded to the
//! model dtype. Non-finite input is rejected: one Inf would turn its whole block into NaN.
//!
//! A device path (`device.rs`, `lut4.cu`) writes the same wire with CUDA kernels.

mod device;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::f32_to_bytes, device::DeviceCodec, export_plugin, params, quant::finite_values,
    range::absmax, wire, Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

/// NF4: quantiles of N(0, 1) (QLoRA), as `bitsandbytes.functional.get_4bit_type("nf4")`.
#[allow(clippy::excessive_precision)]
const NF4: [f32; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

/// FP4 (1 sign, 2 exponent, 1 mantissa bits) in bit-pattern order, before bitsandbytes divides
/// the table by its largest magnitude (12) in f32.
const FP4_RAW: [f32; 16] = [
    0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0,
];

/// FP4 codes in ascending value order: `torch.argsort` of the table (stable, so +0.0 at code 0
/// comes before -0.0 at code 8, and a small positive scaled value gets code 8, -0.0).
const FP4_ORDER: [u8; 16] = [11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3];

/// A 4-bit code table with its quantization bounds.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Value of each code, in [-1, 1].
    pub code: [f32; 16],
    /// Codes in ascending value order.
    pub(crate) order: [u8; 16],
    /// Midpoints between consecutive sorted values, in f32 as bitsandbytes computes them.
    pub(crate) bounds: [f32; 15],
}

impl Table {
    fn new(code: [f32; 16], order: [u8; 16]) -> Table {
        let mut bounds = [0f32; 15];
        for (k, b) in bounds.iter_mut().enumerate() {
            *b = (code[order[k] as usize] + code[order[k + 1] as usize]) / 2.0;
        }
        Table {
            code,
            order,
            bounds,
        }
    }

    pub fn nf4() -> Table {
        Table::new(NF4, std::array::from_fn(|i| i as u8))
    }

    pub fn fp4() -> Table {
        Table::new(FP4_RAW.map(|v| v / 12.0), FP4_ORDER)
    }

    /// The code of a scaled value: `torch.bucketize(x, bounds)` (right = false counts the
    /// bounds strictly below x), then mapped back through the sort order.
    pub fn quantize(&self, scaled: f32) -> u8 {
        let bucket = self.bounds.partition_point(|&b| b < scaled);
        self.order[bucket]
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Lut4Params {
    pub block: usize,
}

impl Default for Lut4Params {
    fn default() -> Self {
        // bitsandbytes' default blocksize.
        Lut4Params { block: 64 }
    }
}

const DOCS: &[(&str, &str)] = &[(
    "block",
    "values per f32 absmax, over the flattened tensor (bitsandbytes' blocksize)",
)];

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "lut4".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "bitsandbytes' 4-bit formats: NF4 and FP4 codes, f32 absmax per block".into(),
        codecs: vec![
            CodecInfo::new::<Lut4Params>(
                "nf4",
                "bitsandbytes NF4 (normal-quantile codes), f32 absmax per block, 2 codes a byte",
                DOCS,
            ),
            CodecInfo::new::<Lut4Params>(
                "fp4",
                "bitsandbytes FP4 (E2M1 codes), f32 absmax per block, 2 codes a byte",
                DOCS,
            ),
        ],
    }
}

/// Largest `block` accepted: far above bitsandbytes' 4096, small enough that a block's
/// scratch can never matter.
const MAX_BLOCK: usize = 1 << 24;

/// A codec name and its params, checked.
fn parse(name: &str, params_json: &str) -> Result<(Table, usize), CodecError> {
    let table = match name {
        "nf4" => Table::nf4(),
        "fp4" => Table::fp4(),
        other => return Err(info().unknown_codec(other)),
    };
    let p: Lut4Params = params::parse(name, params_json)?;
    if !(1..=MAX_BLOCK).contains(&p.block) {
        return Err(CodecError::new(format!(
            "`block` must be in 1..={MAX_BLOCK}, got {}",
            p.block
        )));
    }
    Ok((table, p.block))
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    let (table, block) = parse(name, params_json)?;
    Ok(Box::new(Lut4 { table, block }))
}

pub fn new_device_codec(
    name: &str,
    params_json: &str,
) -> Result<Option<Box<dyn DeviceCodec>>, CodecError> {
    let (table, block) = parse(name, params_json)?;
    Ok(Some(Box::new(device::Lut4OnDevice::new(table, block))))
}

export_plugin!(info, new_codec, new_device_codec);

/// NF4 or FP4 with an f32 absmax per block.
pub struct Lut4 {
    pub table: Table,
    pub block: usize,
}

/// Below this absmax bitsandbytes clamps the divisor (and a partial block's stored absmax).
const MIN_ABSMAX: f32 = 1e-38;

/// Bytes of the wire for `n` values.
pub(crate) fn wire_len(n: usize, block: usize) -> Result<usize, CodecError> {
    n.div_ceil(block)
        .checked_mul(4)
        .and_then(|scales| scales.checked_add(n.div_ceil(2)))
        .ok_or_else(|| CodecError::new("wire size overflows usize"))
}

impl Lut4 {
    /// Per block, the stored absmax and the codes of its values.
    fn encode_block(&self, block: &[f32], partial: bool, codes: &mut [u8]) -> f32 {
        let amax = absmax(block);
        let clamped = amax.max(MIN_ABSMAX);
        if partial {
            for (c, &v) in codes.iter_mut().zip(block) {
                *c = self.table.quantize((v / clamped).clamp(-1.0, 1.0));
            }
            clamped
        } else {
            let inv = 1.0 / clamped;
            for (c, &v) in codes.iter_mut().zip(block) {
                *c = self.table.quantize((v * inv).clamp(-1.0, 1.0));
            }
            amax
        }
    }
}

impl Codec for Lut4 {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = finite_values(input)?;
        let n = values.len();
        let block = self.block;
        let full = n / block * block;
        let mut codes = vec![0u8; n];
        let absmaxes: Vec<f32> = values
            .par_chunks(block)
            .zip(codes.par_chunks_mut(block))
            .enumerate()
            .map(|(b, (values, codes))| self.encode_block(values, b * block >= full, codes))
            .collect();
        let mut out = Vec::with_capacity(wire_len(n, block)?);
        for a in &absmaxes {
            out.extend_from_slice(&a.to_le_bytes());
        }
        // bitsandbytes pads an odd count with a scaled 0.0 before bucketizing.
        let pad = self.table.quantize(0.0);
        let packed: Vec<u8> = codes
            .par_chunks(2)
            .map(|pair| (pair[0] << 4) | pair.get(1).copied().unwrap_or(pad))
            .collect();
        out.extend_from_slice(&packed);
        Ok(out)
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let n = splitbench_plugin_api::element_count(shape)?;
        let block = self.block;
        wire::expect_len(wire, wire_len(n, block)?)?;
        let (head, packed) = wire.split_at(n.div_ceil(block) * 4);
        let code = self.table.code;
        let mut values = vec![0f32; n];
        values
            .par_chunks_mut(block)
            .zip(head.par_chunks_exact(4))
            .enumerate()
            .for_each(|(b, (out, a))| {
                let amax = f32::from_le_bytes([a[0], a[1], a[2], a[3]]);
                for (j, o) in out.iter_mut().enumerate() {
                    let i = b * block + j;
                    let byte = packed[i / 2];
                    let q = if i & 1 == 0 { byte >> 4 } else { byte & 0x0F };
                    *o = code[q as usize] * amax;
                }
            });
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitbench_plugin_api::convert::bytes_to_f32;

    fn round(codec: &mut dyn Codec, values: &[f32]) -> (Vec<u8>, Vec<f32>) {
        let raw = f32_to_bytes(values, DType::F32);
        let shape = [1, 1, values.len()];
        let view = TensorView::new(DType::F32, &shape, &raw).unwrap();
        let wire = codec.encode(&view).unwrap();
        let out = codec.decode(&wire, &shape, DType::F32).unwrap();
        (wire, bytes_to_f32(&out, DType::F32))
    }

    #[test]
    fn bounds_are_bitsandbytes_midpoints() {
        // Printed by `_get_4bit_quantize_bounds` in bitsandbytes 0.50.2 (float.hex()).
        let nf4 = Table::nf4();
        assert_eq!(nf4.bounds[0], -f32::from_bits(0x3F591CD8)); // -0x1.b239b0p-1
        assert_eq!(nf4.bounds[7], f32::from_bits(0x3D22FAFF)); // 0x1.45f5fep-5
        let fp4 = Table::fp4();
        assert_eq!(fp4.bounds[5], -0.0859375);
        assert_eq!(fp4.bounds[7], 0.0);
        assert_eq!(fp4.bounds[14], f32::from_bits(0x3F555556)); // 0x1.aaaaacp-1
        assert!(nf4.bounds.windows(2).all(|w| w[0] < w[1]));
        assert!(fp4.bounds.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn nf4_by_hand() {
        // absmax 2 -> scaled [1, -0.5, 0, 0.04, 0.03979...]: 1 -> code 15; -0.5 is nearer
        // -0.525 (code 2) than -0.395; 0 -> code 7; 0.08/2 = 0.04 is above the midpoint
        // 0.0397901 -> code 8; a value exactly on that midpoint takes the lower code 7.
        let mid = Table::nf4().bounds[7];
        let mut c = new_codec("nf4", r#"{"block": 6}"#).unwrap();
        let (wire, out) = round(c.as_mut(), &[2.0, -1.0, 0.0, 0.08, 2.0 * mid, -2.0]);
        assert_eq!(&wire[..4], &2.0f32.to_le_bytes());
        assert_eq!(&wire[4..], &[0xF2, 0x78, 0x70]);
        assert_eq!(out[0], 2.0);
        assert_eq!(out[1], NF4[2] * 2.0);
        assert_eq!(out[2], 0.0);
        assert_eq!(out[3], NF4[8] * 2.0);
        assert_eq!(out[4], 0.0);
        assert_eq!(out[5], -2.0);
    }

    #[test]
    fn fp4_by_hand() {
        // absmax 12 -> scaled by 1/12: 12 -> 1.0 (code 3), -6 -> -0.5 (code 13), 0.01 -> a
        // small positive value in the (0, 0.0026] bucket, which bitsandbytes maps to code 8
        // (-0.0), 1 -> 1/12 = 0.0833 below the midpoint 0.0859 -> code 1 (0.0052).
        let mut c = new_codec("fp4", r#"{"block": 4}"#).unwrap();
        let (wire, out) = round(c.as_mut(), &[12.0, -6.0, 0.01, 1.0]);
        assert_eq!(&wire[4..], &[0x3D, 0x81]);
        assert_eq!(out[0], 12.0);
        assert_eq!(out[1], -6.0);
        assert!(out[2] == 0.0 && out[2].is_sign_negative());
        assert_eq!(out[3], 0.0625);
    }

    #[test]
    fn partial_block_and_odd_count() {
        // 5 values, block 4: the second block holds one value, stores its absmax, and the
        // last low nibble is the padding code of 0.0 (7 for NF4).
        let mut c = new_codec("nf4", r#"{"block": 4}"#).unwrap();
        let (wire, out) = round(c.as_mut(), &[1.0, 0.0, 0.0, 0.0, -3.0]);
        assert_eq!(wire.len(), 2 * 4 + 3);
        assert_eq!(&wire[4..8], &3.0f32.to_le_bytes());
        assert_eq!(wire[10], 0x07);
        assert_eq!(out, [1.0, 0.0, 0.0, 0.0, -3.0]);
    }

    #[test]
    fn zero_blocks_store_what_bitsandbytes_stores() {
        // A full zero block stores absmax 0; a partial one stores the clamp 1e-38.
        let mut c = new_codec("nf4", r#"{"block": 2}"#).unwrap();
        let (wire, out) = round(c.as_mut(), &[0.0, 0.0, 0.0]);
        assert_eq!(&wire[..4], &0f32.to_le_bytes());
        assert_eq!(&wire[4..8], &MIN_ABSMAX.to_le_bytes());
        assert_eq!(out, [0.0; 3]);
    }

    #[test]
    fn bad_params() {
        assert!(new_codec("nf4", r#"{"block": 0}"#).is_err());
        assert!(new_codec("nf5", "{}").is_err());
    }
}
