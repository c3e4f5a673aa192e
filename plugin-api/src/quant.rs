//! Blockwise integer quantization shared by codec families (`intq`, `outlier`, and yours).
//!
//! Format: every row (one token's hidden vector) is cut into blocks of `block` values (the
//! last may be shorter). Symmetric: per block an f16 scale (absmax / (2^(bits-1) - 1)), codes
//! q + 2^(bits-1) - 1. Asymmetric: per block an f16 scale ((max - min) / (2^bits - 1)), then
//! (after all scales) an f16 minimum per block, codes round((x - min) / scale). Then all codes,
//! `bits` each, bit-packed LSB-first and padded to a whole byte.

use serde::{Deserialize, Serialize};

use rayon::prelude::*;

use crate::convert::{round_to, PARALLEL_CHUNK};
use crate::range::{absmax, min_max};
use crate::wire::{self, WireReader};
use crate::{CodecError, DType, TensorView};

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

/// What a codec that scales by absmax or min/max says of NaN/Inf input, on either path.
pub const NON_FINITE: &str =
    "the hidden state holds NaN/Inf, which integer quantization cannot carry";

/// The view's values, or an error if any is NaN/Inf (which would poison a scale).
pub fn finite_values(input: &TensorView<'_>) -> Result<Vec<f32>, CodecError> {
    let values = input.to_f32();
    if values.par_iter().any(|v| !v.is_finite()) {
        return Err(CodecError::new(NON_FINITE));
    }
    Ok(values)
}

/// Bytes of a blockwise wire for `rows × hidden` values.
pub fn blocks_wire_len(rows: usize, hidden: usize, params: BlockParams, asymmetric: bool) -> usize {
    let blocks = rows * hidden.div_ceil(params.block);
    let header = if asymmetric { 4 } else { 2 };
    blocks * header + wire::packed_len(rows * hidden, params.bits)
}

/// Rows per parallel group: a multiple of 8, so that every group's codes start on a byte
/// boundary and groups pack independently.
fn rows_per_group(hidden: usize) -> usize {
    (PARALLEL_CHUNK / hidden).max(1).next_multiple_of(8)
}

/// One group of rows, encoded: its scales, its minima (asymmetric) and its packed codes.
struct EncodedGroup {
    scales: Vec<u8>,
    mins: Vec<u8>,
    codes: Vec<u8>,
}

fn encode_group(
    values: &[f32],
    hidden: usize,
    params: BlockParams,
    asymmetric: bool,
) -> EncodedGroup {
    let bits = params.bits;
    let levels = (1u32 << bits) - 1;
    let qmax = (1i32 << (bits - 1)) - 1;
    let mut scales = Vec::new();
    let mut mins = Vec::new();
    let mut codes = Vec::with_capacity(values.len());
    for row in values.chunks(hidden) {
        for block in row.chunks(params.block) {
            if asymmetric {
                let (lo, hi) = min_max(block);
                // Rounded as the receiver will read them, so codes are computed against the
                // scale and minimum it decodes with.
                let min = round_to(DType::F16, lo);
                let scale = round_to(DType::F16, (hi - min) / levels as f32);
                wire::put_f16(&mut scales, scale);
                wire::put_f16(&mut mins, min);
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                codes.extend(
                    block
                        .iter()
                        .map(|&v| ((v - min) * inv).round().clamp(0.0, levels as f32) as u32),
                );
            } else {
                let scale = round_to(DType::F16, absmax(block) / qmax as f32);
                wire::put_f16(&mut scales, scale);
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                codes.extend(block.iter().map(|&v| {
                    ((v * inv).round().clamp(-qmax as f32, qmax as f32) as i32 + qmax) as u32
                }));
            }
        }
    }
    let mut packed = Vec::with_capacity(wire::packed_len(codes.len(), bits));
    wire::pack_bits(codes, bits, &mut packed);
    EncodedGroup {
        scales,
        mins,
        codes: packed,
    }
}

/// Encodes finite `values` (rows of `hidden`) in the blockwise format described above,
/// groups of rows in parallel.
pub fn encode_blocks(
    values: &[f32],
    hidden: usize,
    params: BlockParams,
    asymmetric: bool,
) -> Vec<u8> {
    let hidden = hidden.max(1);
    let groups: Vec<EncodedGroup> = values
        .par_chunks(rows_per_group(hidden) * hidden)
        .map(|group| encode_group(group, hidden, params, asymmetric))
        .collect();
    let rows = values.len() / hidden;
    let mut out = Vec::with_capacity(blocks_wire_len(rows, hidden, params, asymmetric));
    groups.iter().for_each(|g| out.extend_from_slice(&g.scales));
    groups.iter().for_each(|g| out.extend_from_slice(&g.mins));
    groups.iter().for_each(|g| out.extend_from_slice(&g.codes));
    out
}

/// Decodes `rows × hidden` values from exactly [`blocks_wire_len`] bytes, groups of rows in
/// parallel.
pub fn decode_blocks(
    bytes: &[u8],
    rows: usize,
    hidden: usize,
    params: BlockParams,
    asymmetric: bool,
) -> Result<Vec<f32>, CodecError> {
    wire::expect_len(bytes, blocks_wire_len(rows, hidden, params, asymmetric))?;
    let per_row = hidden.div_ceil(params.block);
    let blocks = rows * per_row;
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
    let packed = reader.take(wire::packed_len(rows * hidden, bits))?;
    reader.finish()?;
    let qmax = (1i32 << (bits - 1)) - 1;
    let mut values = vec![0f32; rows * hidden];
    if values.is_empty() {
        return Ok(values);
    }
    let group_rows = rows_per_group(hidden);
    let group_bytes = group_rows * hidden * bits as usize / 8;
    values
        .par_chunks_mut(group_rows * hidden)
        .enumerate()
        .try_for_each(|(g, out)| -> Result<(), CodecError> {
            let start = g * group_bytes;
            let codes_bytes = &packed[start..(start + group_bytes).min(packed.len())];
            let mut codes = Vec::with_capacity(out.len());
            let exact = wire::packed_len(out.len(), bits);
            wire::unpack_bits(&codes_bytes[..exact], out.len(), bits, &mut codes)?;
            let mut block_index = g * group_rows * per_row;
            for (row_out, row_codes) in out.chunks_mut(hidden).zip(codes.chunks(hidden)) {
                for (block_out, block) in row_out
                    .chunks_mut(params.block)
                    .zip(row_codes.chunks(params.block))
                {
                    let scale = scales[block_index];
                    if asymmetric {
                        let min = mins[block_index];
                        for (o, &q) in block_out.iter_mut().zip(block) {
                            *o = min + q as f32 * scale;
                        }
                    } else {
                        for (o, &q) in block_out.iter_mut().zip(block) {
                            *o = (q as i32 - qmax) as f32 * scale;
                        }
                    }
                    block_index += 1;
                }
            }
            Ok(())
        })?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows whose packed codes straddle bytes (hidden 7, 3 bits), across several groups.
    fn straddling_rows() -> (Vec<f32>, usize) {
        let hidden = 7;
        let rows = 2 * rows_per_group(hidden) + 5;
        let values = (0..rows * hidden)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.25)
            .collect();
        (values, hidden)
    }

    #[test]
    fn parallel_groups_write_the_serial_wire() {
        let (values, hidden) = straddling_rows();
        for asymmetric in [false, true] {
            let params = BlockParams { bits: 3, block: 4 };
            let serial = encode_group(&values, hidden, params, asymmetric);
            let mut expected = serial.scales;
            expected.extend(serial.mins);
            expected.extend(serial.codes);
            assert_eq!(encode_blocks(&values, hidden, params, asymmetric), expected);
        }
    }

    #[test]
    fn parallel_decode_reads_every_group() {
        let (values, hidden) = straddling_rows();
        let rows = values.len() / hidden;
        let params = BlockParams { bits: 3, block: 4 };
        let wire = encode_blocks(&values, hidden, params, false);
        let decoded = decode_blocks(&wire, rows, hidden, params, false).unwrap();
        // Symmetric 3-bit codes: each value within half a step (scale / 2) of its input.
        let per_row = hidden.div_ceil(4);
        for (i, (&x, &y)) in values.iter().zip(&decoded).enumerate() {
            let block = (i / hidden) * per_row + (i % hidden) / 4;
            let scale = half::f16::from_le_bytes([wire[2 * block], wire[2 * block + 1]]).to_f32();
            assert!((x - y).abs() <= scale / 2.0 + 1e-6, "value {i}: {x} -> {y}");
        }
    }
}
