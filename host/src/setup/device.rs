//! `model.device` and `plan.devices`: where the forward pass runs.
//!
//! CUDA is a cargo feature (`--features cuda`); a build without it still understands
//! `cuda:N` and says how to get a CUDA build instead of failing on an unknown word.

use anyhow::Result;
use candle_core::Device;

use crate::config::DeviceSpec;

/// Opens the device the config `key` (`model.device`, `plan.devices[1]`) names, or says why it
/// cannot.
pub fn open_device(spec: DeviceSpec, key: &str) -> Result<Device> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Auto => Ok(open_auto()),
        DeviceSpec::Cuda(ordinal) => open_cuda(ordinal, key),
    }
}

/// Chooses cuBLAS's f32 GEMM precision. Attention runs in f32 (softmax in f32, as the
/// prototype's protocol wants); in a bf16/f16 model q, k and v hold bf16/f16 values, which TF32
/// holds exactly, so TF32 tensor cores give q·kᵀ exactly and round only the softmax
/// probabilities (to 10 mantissa bits, finer than the bf16 cast of an eager HF model), at
/// several times the f32 speed. An f32 model keeps full f32 GEMMs.
pub fn configure_gemm(device: &Device, dtype: candle_core::DType) {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        candle_core::cuda_backend::set_gemm_reduced_precision_f32(dtype != candle_core::DType::F32);
    }
    #[cfg(not(feature = "cuda"))]
    let _ = (device, dtype);
}

#[cfg(feature = "cuda")]
fn open_auto() -> Device {
    match Device::new_cuda(0) {
        Ok(device) => device,
        Err(e) => {
            eprintln!(
                "splitbench: model.device = \"auto\": no usable GPU ({}), running on the CPU",
                first_line(&e.to_string())
            );
            Device::Cpu
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn open_auto() -> Device {
    eprintln!(
        "splitbench: model.device = \"auto\": this build has no CUDA support, running on the CPU"
    );
    Device::Cpu
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize, key: &str) -> Result<Device> {
    let device = Device::new_cuda(ordinal).map_err(|e| {
        anyhow::anyhow!(
            "{key} = \"cuda:{ordinal}\" but CUDA device {ordinal} cannot be opened ({}); \
             check `nvidia-smi` for the GPUs this machine has and that the driver is at least \
             the CUDA version this binary was built with, or use \"cpu\"",
            first_line(&e.to_string())
        )
    })?;
    Ok(device)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize, key: &str) -> Result<Device> {
    anyhow::bail!(
        "{key} = \"cuda:{ordinal}\", but this splitbench was built without CUDA; build the \
         CUDA binary with scripts/build-cuda.sh (or `cargo build --release --workspace --features \
         splitbench/cuda` where a CUDA toolkit is installed), or use \"cpu\" or \"auto\""
    )
}

#[cfg(feature = "cuda")]
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_cpu_build_names_the_cuda_build_script() {
        let err = super::open_device(crate::config::DeviceSpec::Cuda(0), "model.device")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("built without CUDA") && err.contains("build-cuda.sh"),
            "{err}"
        );
    }
}
