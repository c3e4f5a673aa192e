//! Conversions between raw little-endian bytes in a model dtype and `f32`.

use half::{bf16, f16};

use crate::DType;

/// Raw bytes in `dtype` to f32 values. Trailing bytes that do not make a whole element are
/// ignored; `TensorView::new` guarantees there are none.
pub fn bytes_to_f32(bytes: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

/// f32 values to raw bytes in `dtype` (round to nearest even for f16 and bf16).
pub fn f32_to_bytes(values: &[f32], dtype: DType) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * dtype.size_in_bytes());
    match dtype {
        DType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        DType::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
