//! The size, error and speed measurement `splitbench codec-check` prints.

use std::time::Instant;

use crate::convert::{bytes_to_f32, f32_to_bytes};
use crate::measure::{synthetic_activations, ErrorStats};
use crate::{Codec, CodecError, DType, TensorView};

/// One codec on one synthetic tensor: size, error and speed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    pub shape: [usize; 3],
    pub dtype: DType,
    pub raw_bytes: usize,
    pub wire_bytes: usize,
    pub bytes_per_element: f64,
    /// raw bytes / wire bytes
    pub ratio: f64,
    pub error: ErrorStats,
    /// Raw (model dtype) bytes encoded per second, in GB/s.
    pub encode_gbps: f64,
    pub decode_gbps: f64,
}

/// Encodes and decodes synthetic activations `repeats` times and reports the best times.
pub fn measure(
    codec: &mut dyn Codec,
    shape: [usize; 3],
    dtype: DType,
    seed: u64,
    repeats: usize,
) -> Result<Measurement, CodecError> {
    let raw = f32_to_bytes(&synthetic_activations(shape, seed), dtype);
    let reference = bytes_to_f32(&raw, dtype);
    let view = TensorView::new(dtype, &shape, &raw)?;
    let mut best_encode = f64::INFINITY;
    let mut best_decode = f64::INFINITY;
    let mut wire = Vec::new();
    let mut decoded = Vec::new();
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        wire = codec.encode(&view)?;
        best_encode = best_encode.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        decoded = codec.decode(&wire, &shape, dtype)?;
        best_decode = best_decode.min(start.elapsed().as_secs_f64());
    }
    if decoded.len() != raw.len() {
        return Err(CodecError::new(format!(
            "decode returned {} bytes, expected {}",
            decoded.len(),
            raw.len()
        )));
    }
    let elements = view.len().max(1);
    Ok(Measurement {
        shape,
        dtype,
        raw_bytes: raw.len(),
        wire_bytes: wire.len(),
        bytes_per_element: wire.len() as f64 / elements as f64,
        ratio: raw.len() as f64 / wire.len().max(1) as f64,
        error: ErrorStats::between(&reference, &bytes_to_f32(&decoded, dtype)),
        encode_gbps: raw.len() as f64 / best_encode / 1e9,
        decode_gbps: raw.len() as f64 / best_decode / 1e9,
    })
}
