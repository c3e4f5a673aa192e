//! Hidden states as the bytes a codec sees: dtype mapping, reading a tensor back, counting
//! NaN/Inf. One place says which dtypes can cross a link.

use candle_core::{DType, Device, Tensor};

/// A hidden state in a dtype no codec takes.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "hidden states in {0:?} cannot cross a link; use model.dtype = \"f32\", \"f16\" or \"bf16\""
)]
pub struct UnsupportedDtype(pub DType);

/// The plugin ABI's name for a hidden-state dtype.
pub fn plugin_dtype(dtype: DType) -> Result<splitbench_plugin_api::DType, UnsupportedDtype> {
    match dtype {
        DType::F32 => Ok(splitbench_plugin_api::DType::F32),
        DType::F16 => Ok(splitbench_plugin_api::DType::F16),
        DType::BF16 => Ok(splitbench_plugin_api::DType::BF16),
        other => Err(UnsupportedDtype(other)),
    }
}

/// The tensor's elements as little-endian bytes in host memory.
pub fn host_bytes(h: &Tensor) -> candle_core::Result<Vec<u8>> {
    let flat = h.flatten_all()?.to_device(&Device::Cpu)?;
    Ok(match h.dtype() {
        DType::F32 => bytemuck::cast_slice(&flat.to_vec1::<f32>()?).to_vec(),
        DType::F16 => bytemuck::cast_slice(&flat.to_vec1::<half::f16>()?).to_vec(),
        DType::BF16 => bytemuck::cast_slice(&flat.to_vec1::<half::bf16>()?).to_vec(),
        other => candle_core::bail!("{}", UnsupportedDtype(other)),
    })
}

/// NaN/Inf values among `bytes` read as `dtype` (one of the dtypes a link carries).
pub fn count_nonfinite(bytes: &[u8], dtype: DType) -> u64 {
    match dtype {
        DType::F32 => bytemuck::cast_slice::<u8, f32>(bytes)
            .iter()
            .filter(|v| !v.is_finite())
            .count() as u64,
        DType::F16 => bytes
            .chunks_exact(2)
            .filter(|c| !half::f16::from_le_bytes([c[0], c[1]]).is_finite())
            .count() as u64,
        _ => bytes
            .chunks_exact(2)
            .filter(|c| !half::bf16::from_le_bytes([c[0], c[1]]).is_finite())
            .count() as u64,
    }
}
