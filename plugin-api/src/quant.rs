//! Blockwise integer quantization shared by codec families (`intq`, `outlier`, and yours).
//!
//! Format: every row (one token's hidden vector) is cut into blocks of `block` values (the
//! last may be shorter). Symmetric: per block an f16 scale (absmax / (2^(bits-1) - 1)), codes
//! q + 2^(bits-1) - 1. Asymmetric: per block an f16 scale ((max - min) / (2^bits - 1)), then
//! (after all scales) an f16 minimum per block, codes round((x - min) / scale). Then all codes,
//! `bits` each, bit-packed LSB-first and padded to a whole byte.

use serde::{Deserialize, Serialize};

use crate::wire::{self, WireReader};
use crate::{CodecError, TensorView};

/// Bits per code and values per scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlockParams {
    pub bits: u32,
    pub block: usize,
}

impl Default for BlockParams {
    fn default() -> Self {
        BlockParams { bits: 4, block: 64 }
    }
}

/// The view's values, or an error if any is NaN/Inf (which would poison a scale).
pub fn finite_values(input: &TensorView<'_>) -> Result<Vec<f32>, CodecError> {
    let values = input.to_f32();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(CodecError::new(
            "the hidden state holds NaN/Inf, which integer quantization cannot carry",
        ));
    }
    Ok(values)
}

/// Largest magnitude (0 for an empty slice).
pub fn absmax(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Bytes of a blockwise wire for `rows × hidden` values.
pub fn blocks_wire_len(rows: usize, hidden: usize, params: BlockParams, asymmetric: bool) -> usize {
    let blocks = rows * hidden.div_ceil(params.block);
    let header = if asymmetric { 4 } else { 2 };
    blocks * header + wire::packed_len(rows * hidden, params.bits)
}

/// f32 rounded through f16, as the receiver will see it.
fn via_f16(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// Encodes finite `values` (rows of `hidden`) in the blockwise format described above.
pub fn encode_blocks(
    values: &[f32],
    hidden: usize,
    params: BlockParams,
    asymmetric: bool,
) -> Vec<u8> {
    let bits = params.bits;
    let levels = (1u32 << bits) - 1;
    let qmax = (1i32 << (bits - 1)) - 1;
    let mut header = Vec::new();
    let mut mins = Vec::new();
    let mut codes = Vec::with_capacity(values.len());
    for row in values.chunks(hidden.max(1)) {
        for block in row.chunks(params.block) {
            if asymmetric {
                let lo = block.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let min = via_f16(lo);
                let scale = via_f16((hi - min) / levels as f32);
                wire::put_f16(&mut header, scale);
                wire::put_f16(&mut mins, min);
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                codes.extend(
                    block
                        .iter()
                        .map(|&v| ((v - min) * inv).round().clamp(0.0, levels as f32) as u32),
                );
            } else {
                let scale = via_f16(absmax(block) / qmax as f32);
                wire::put_f16(&mut header, scale);
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                codes.extend(block.iter().map(|&v| {
                    ((v * inv).round().clamp(-qmax as f32, qmax as f32) as i32 + qmax) as u32
                }));
            }
        }
    }
    header.extend_from_slice(&mins);
    wire::pack_bits(codes, bits, &mut header);
    header
}

/// Decodes `rows × hidden` values from exactly [`blocks_wire_len`] bytes.
pub fn decode_blocks(
    bytes: &[u8],
    rows: usize,
    hidden: usize,
    params: BlockParams,
    asymmetric: bool,
) -> Result<Vec<f32>, CodecError> {
    wire::expect_len(bytes, blocks_wire_len(rows, hidden, params, asymmetric))?;
    let blocks = rows * hidden.div_ceil(params.block);
    let mut reader = WireReader::new(bytes);
    let mut scales = Vec::with_capacity(blocks);
    for _ in 0..blocks {
        scales.push(reader.f16()?);
    }
    let mut mins = Vec::with_capacity(if asymmetric { blocks } else { 0 });
    if asymmetric {
        for _ in 0..blocks {
            mins.push(reader.f16()?);
        }
    }
    let bits = params.bits;
    let mut codes = Vec::new();
    wire::unpack_bits(
        reader.take(wire::packed_len(rows * hidden, bits))?,
        rows * hidden,
        bits,
        &mut codes,
    )?;
    reader.finish()?;
    let qmax = (1i32 << (bits - 1)) - 1;
    let mut values = Vec::with_capacity(rows * hidden);
    let mut block_index = 0;
    for row in codes.chunks(hidden.max(1)) {
        for block in row.chunks(params.block) {
            let scale = scales[block_index];
            if asymmetric {
                let min = mins[block_index];
                values.extend(block.iter().map(|&q| min + q as f32 * scale));
            } else {
                values.extend(block.iter().map(|&q| (q as i32 - qmax) as f32 * scale));
            }
            block_index += 1;
        }
    }
    Ok(values)
}
