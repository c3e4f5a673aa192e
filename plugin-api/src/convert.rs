//! Conversions between raw little-endian bytes in a model dtype and `f32`.

use half::{bf16, f16};
use rayon::prelude::*;

use crate::DType;

/// Elements per parallel task: large enough that scheduling costs nothing, small enough to
/// spread a hidden state over every core.
pub const PARALLEL_CHUNK: usize = 1 << 16;

/// Raw bytes in `dtype` to f32 values, in parallel. Trailing bytes that do not make a whole
/// element are ignored; `TensorView::new` guarantees there are none.
pub fn bytes_to_f32(bytes: &[u8], dtype: DType) -> Vec<f32> {
    let size = dtype.size_in_bytes();
    let mut out = vec![0f32; bytes.len() / size];
    out.par_chunks_mut(PARALLEL_CHUNK)
        .zip(bytes.par_chunks(PARALLEL_CHUNK * size))
        .for_each(|(out, bytes)| {
            let values = out.iter_mut();
            match dtype {
                DType::F32 => values
                    .zip(bytes.chunks_exact(4))
                    .for_each(|(v, c)| *v = f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                DType::F16 => values
                    .zip(bytes.chunks_exact(2))
                    .for_each(|(v, c)| *v = f16::from_le_bytes([c[0], c[1]]).to_f32()),
                DType::BF16 => values
                    .zip(bytes.chunks_exact(2))
                    .for_each(|(v, c)| *v = bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            }
        });
    out
}

/// f32 values to raw bytes in `dtype` (round to nearest even for f16 and bf16), in parallel.
pub fn f32_to_bytes(values: &[f32], dtype: DType) -> Vec<u8> {
    let size = dtype.size_in_bytes();
    let mut out = vec![0u8; values.len() * size];
    out.par_chunks_mut(PARALLEL_CHUNK * size)
        .zip(values.par_chunks(PARALLEL_CHUNK))
        .for_each(|(out, values)| {
            let slots = out.chunks_exact_mut(size).zip(values);
            match dtype {
                DType::F32 => slots.for_each(|(o, v)| o.copy_from_slice(&v.to_le_bytes())),
                DType::F16 => {
                    slots.for_each(|(o, v)| o.copy_from_slice(&f16::from_f32(*v).to_le_bytes()))
                }
                DType::BF16 => {
                    slots.for_each(|(o, v)| o.copy_from_slice(&bf16::from_f32(*v).to_le_bytes()))
                }
            }
        });
    out
}

/// `x` rounded to `dtype` (to nearest even) and back: what a torch op on `dtype` tensors
/// makes of its f32 result, and what a receiver reads of a value sent in `dtype`.
pub fn round_to(dtype: DType, x: f32) -> f32 {
    match dtype {
        DType::F32 => x,
        DType::F16 => f16::from_f32(x).to_f32(),
        DType::BF16 => bf16::from_f32(x).to_f32(),
    }
}

/// Writes `v` in `dtype` into `out`, which is exactly `dtype.size_in_bytes()` long (a slot of
/// a wire laid out beforehand, such as one scale of a scale section).
pub fn write_value(out: &mut [u8], dtype: DType, v: f32) {
    match dtype {
        DType::F32 => out.copy_from_slice(&v.to_le_bytes()),
        DType::F16 => out.copy_from_slice(&f16::from_f32(v).to_le_bytes()),
        DType::BF16 => out.copy_from_slice(&bf16::from_f32(v).to_le_bytes()),
    }
}

/// The value in `dtype` that `bytes` (exactly `dtype.size_in_bytes()` long) hold.
pub fn read_value(bytes: &[u8], dtype: DType) -> f32 {
    match dtype {
        DType::F32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        DType::F16 => f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
        DType::BF16 => bf16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_to_each_dtype_by_hand() {
        // 0.1 = 0x3DCCCCCD: f16 keeps 10 mantissa bits (0x2E66 = 819 / 8192), bf16 7 (0x3DCD =
        // 205 / 2048: the dropped 0xCCCD is above half, so it rounds up).
        assert_eq!(round_to(DType::F32, 0.1), 0.1);
        assert_eq!(round_to(DType::F16, 0.1), 819.0 / 8192.0);
        assert_eq!(round_to(DType::BF16, 0.1), 205.0 / 2048.0);
        // 65520 is f16's rounding boundary: it goes to infinity, not to 65504.
        assert_eq!(round_to(DType::F16, 65520.0), f32::INFINITY);
    }

    #[test]
    fn values_write_and_read_back_in_place() {
        let mut slot = [0u8; 4];
        write_value(&mut slot, DType::F32, -2.5);
        assert_eq!(slot, (-2.5f32).to_le_bytes());
        let mut slot = [0u8; 2];
        write_value(&mut slot, DType::F16, 1.0);
        assert_eq!(slot, [0x00, 0x3C]);
        assert_eq!(read_value(&slot, DType::F16), 1.0);
        write_value(&mut slot, DType::BF16, -2.0);
        assert_eq!(slot, [0x00, 0xC0]);
        assert_eq!(read_value(&slot, DType::BF16), -2.0);
        // bf16 0x3DCD: 0.1 as bf16 stores it.
        assert_eq!(read_value(&[0xCD, 0x3D], DType::BF16), 205.0 / 2048.0);
    }

    #[test]
    fn round_trips_each_dtype() {
        let values = [0.0f32, 1.0, -2.5, 24576.0, f32::INFINITY];
        for dtype in DType::ALL {
            let bytes = f32_to_bytes(&values, dtype);
            assert_eq!(bytes.len(), values.len() * dtype.size_in_bytes());
            assert_eq!(bytes_to_f32(&bytes, dtype), values);
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 lies halfway between two bf16 values; ties go to the even mantissa (1.0).
        let bytes = f32_to_bytes(&[1.0 + 1.0 / 256.0], DType::BF16);
        assert_eq!(bytes_to_f32(&bytes, DType::BF16), [1.0]);
    }
}
