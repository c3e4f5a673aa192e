//! `intn-affine-token`: TorchAO's `choose_qparams_affine` (`MappingType.ASYMMETRIC`, block
//! `(1, 1, hidden)`, quant range `[0, 2^bits - 1]`, default eps, `scale_dtype` the input's,
//! int16 zero point), `quantize_affine` and `dequantize_affine` with the model dtype as output,
//! computed as TorchAO 0.18 computes them on a CPU.
//!
//! TorchAO does every step in the input's dtype, so each f32 operation below is rounded to the
//! model dtype where TorchAO's is (`rd`, plugin-api's `convert::round_to`); f32 arithmetic on
//! f16/bf16 operands rounds to them correctly (24 ≥ 2p + 2 bits), so this matches torch's
//! per-op rounding. Rounding is half to
//! even (`torch.round`).
//!
//! Wire: per token the scale in the model dtype (4 or 2 bytes), then per token the zero point
//! as i16, then every code (`bits` each, unsigned) bit-packed LSB-first over the whole tensor,
//! or with `entropy = "rans"` the entropy-coded section of [`crate::entropy`].

use half::f16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::{f32_to_bytes, read_value, round_to as rd, write_value},
    quant::finite_values,
    range::min_max,
    wire::{self, WireReader},
    Codec, CodecError, DType, TensorView,
};

use crate::entropy::{self, Entropy};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AffineParams {
    pub bits: u32,
    pub entropy: Entropy,
}

impl Default for AffineParams {
    fn default() -> Self {
        // The prototype's "int8/token"; 4 bits per token is its catastrophic row (PPL 32.5).
        AffineParams {
            bits: 8,
            entropy: Entropy::None,
        }
    }
}

/// `torch.finfo(dtype).smallest_normal`: `choose_qparams_affine`'s default eps, the smallest
/// scale it allows.
fn eps(dtype: DType) -> f32 {
    match dtype {
        DType::F32 | DType::BF16 => f32::MIN_POSITIVE,
        DType::F16 => f16::MIN_POSITIVE.to_f32(),
    }
}

/// One token's scale and zero point.
pub fn qparams(row: &[f32], dtype: DType, levels: f32) -> (f32, i16) {
    let (lo, hi) = min_max(row);
    let min_neg = lo.min(0.0);
    let max_pos = hi.max(0.0);
    let scale = rd(dtype, rd(dtype, max_pos - min_neg) / levels).max(eps(dtype));
    // zero_point = clamp(quant_min - round(min_neg / scale), quant_min, quant_max)
    let zero = (-rd(dtype, min_neg / scale).round_ties_even()).clamp(0.0, levels);
    (scale, zero as i16)
}

/// One value's code: clamp(round(x * (1 / scale)) + zero_point, 0, levels).
pub fn code(x: f32, recip: f32, zero: f32, dtype: DType, levels: f32) -> u8 {
    let r = rd(dtype, x * recip).round_ties_even();
    rd(dtype, r + zero).clamp(0.0, levels) as u8
}

/// Bytes of the wire for `rows × hidden` values.
pub fn wire_len(rows: usize, hidden: usize, bits: u32, dtype: DType) -> usize {
    rows * (dtype.size_in_bytes() + 2) + wire::packed_len(rows * hidden, bits)
}

pub struct AffineToken {
    pub bits: u32,
    pub entropy: Entropy,
}

impl AffineToken {
    fn levels(&self) -> f32 {
        ((1u32 << self.bits) - 1) as f32
    }
}

impl Codec for AffineToken {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = finite_values(input)?;
        let dtype = input.dtype();
        let hidden = input.hidden().max(1);
        let rows = values.len() / hidden;
        let levels = self.levels();
        let params: Vec<(f32, i16)> = values
            .par_chunks(hidden)
            .map(|row| qparams(row, dtype, levels))
            .collect();
        let mut codes = vec![0u8; values.len()];
        codes
            .par_chunks_mut(hidden)
            .zip(values.par_chunks(hidden))
            .zip(&params)
            .for_each(|((codes, row), &(scale, zero))| {
                let recip = rd(dtype, 1.0 / scale);
                for (c, &x) in codes.iter_mut().zip(row) {
                    *c = code(x, recip, f32::from(zero), dtype, levels);
                }
            });
        let size = dtype.size_in_bytes();
        let mut out = vec![0u8; rows * (size + 2)];
        let (scales, zeros) = out.split_at_mut(rows * size);
        for ((s, z), &(scale, zero)) in scales
            .chunks_exact_mut(size)
            .zip(zeros.chunks_exact_mut(2))
            .zip(&params)
        {
            write_value(s, dtype, scale);
            z.copy_from_slice(&zero.to_le_bytes());
        }
        match self.entropy {
            Entropy::None => out.extend_from_slice(&wire::pack_codes(&codes, self.bits)),
            Entropy::Rans => out.extend_from_slice(&entropy::compress(&codes, self.bits)?),
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
        let hidden = hidden.max(1);
        let size = dtype.size_in_bytes();
        let mut reader = WireReader::new(wire);
        let scales = reader.take(rows * size)?;
        let zeros = reader.take(rows * 2)?;
        let unpacked;
        let (packed, bits) = match self.entropy {
            Entropy::None => {
                wire::expect_len(wire, wire_len(rows, hidden, self.bits, dtype))?;
                (
                    reader.take(wire::packed_len(rows * hidden, self.bits))?,
                    self.bits,
                )
            }
            Entropy::Rans => {
                // Decoded codes are read back as 8-bit codes.
                unpacked = entropy::decompress(
                    reader.take(reader.remaining())?,
                    rows * hidden,
                    self.bits,
                )?;
                (&unpacked[..], 8)
            }
        };
        reader.finish()?;
        let levels = self.levels();
        let mut values = vec![0f32; rows * hidden];
        values
            .par_chunks_mut(hidden)
            .zip(scales.par_chunks_exact(size))
            .zip(zeros.par_chunks_exact(2))
            .enumerate()
            .try_for_each(|(r, ((out, s), z))| {
                let scale = read_value(s, dtype);
                let zero = f32::from(i16::from_le_bytes([z[0], z[1]]));
                if !(0.0..=levels).contains(&zero) {
                    return Err(CodecError::new(format!(
                        "token {r}: zero point {zero} outside 0..={levels}"
                    )));
                }
                for (j, o) in out.iter_mut().enumerate() {
                    let q = wire::read_code(packed, r * hidden + j, bits) as f32;
                    *o = rd(dtype, rd(dtype, q - zero) * scale);
                }
                Ok(())
            })?;
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;
    use splitbench_plugin_api::convert::bytes_to_f32;

    fn round(bits: u32, values: &[f32], dtype: DType) -> (Vec<u8>, Vec<f32>) {
        let raw = f32_to_bytes(values, dtype);
        let shape = [1, 1, values.len()];
        let view = TensorView::new(dtype, &shape, &raw).unwrap();
        let mut c = AffineToken {
            bits,
            entropy: Entropy::None,
        };
        let wire = c.encode(&view).unwrap();
        let out = c.decode(&wire, &shape, dtype).unwrap();
        (wire, bytes_to_f32(&out, dtype))
    }

    #[test]
    fn two_bits_by_hand() {
        // min -1, max 2 -> scale 3/3 = 1, zero = 0 - round(-1 / 1) = 1; codes
        // round(x) + 1 = [0, 1, 2, 3, 1]: 0.5 rounds half to even, to 0, as torch.round does.
        let (wire, out) = round(2, &[-1.0, 0.0, 1.0, 2.0, 0.5], DType::F32);
        assert_eq!(&wire[..4], &1.0f32.to_le_bytes());
        assert_eq!(&wire[4..6], &1i16.to_le_bytes());
        assert_eq!(&wire[6..], &[0b11_10_01_00, 0b01]);
        assert_eq!(out, [-1.0, 0.0, 1.0, 2.0, 0.0]);
    }

    #[test]
    fn zero_is_inside_the_range() {
        // All positive: min_neg is 0, so zero = 0 and the scale covers [0, 4].
        let (wire, out) = round(2, &[3.0, 4.0], DType::F32);
        assert_eq!(&wire[4..6], &0i16.to_le_bytes());
        let scale = 4.0f32 / 3.0;
        // 3 * (1 / scale) = 2.25 -> 2; 4 * (1 / scale) = 3.
        assert_eq!(out, [2.0 * scale, 3.0 * scale]);
    }

    #[test]
    fn bf16_scale_is_rounded_to_bf16() {
        // range 10 / 255 = 0.0392156.. -> bf16 161 / 4096 = 0.039306640625; stored in 2 bytes.
        let (wire, _) = round(8, &[0.0, 10.0], DType::BF16);
        assert_eq!(wire.len(), 2 + 2 + 2);
        assert_eq!(
            bf16::from_le_bytes([wire[0], wire[1]]).to_f32(),
            161.0 / 4096.0
        );
    }

    #[test]
    fn all_zero_token_uses_eps() {
        let (wire, out) = round(4, &[0.0, 0.0, 0.0], DType::F16);
        assert_eq!(
            f16::from_le_bytes([wire[0], wire[1]]).to_f32(),
            f16::MIN_POSITIVE.to_f32()
        );
        assert_eq!(out, [0.0; 3]);
    }

    #[test]
    fn out_of_range_zero_point_is_an_error() {
        let (mut wire, _) = round(2, &[-1.0, 2.0], DType::F32);
        wire[4..6].copy_from_slice(&9i16.to_le_bytes());
        let mut c = AffineToken {
            bits: 2,
            entropy: Entropy::None,
        };
        assert!(c.decode(&wire, &[1, 1, 2], DType::F32).is_err());
    }
}
