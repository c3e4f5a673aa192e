//! The device path of `mulaw`: what a plugin crate needs for one.
//!
//! 1. CUDA C source (`mulaw.cu`) compiled at run time by NVRTC through [`KernelSet`]; no CUDA
//!    toolkit is needed to build the plugin, and it loads on machines without a GPU.
//! 2. A [`DeviceCodec`]: `max_wire_len` sizes the device buffer the host lends (payload plus
//!    this codec's scratch: the NaN/Inf flag), `encode` launches kernels on the lent stream and
//!    returns the wire's length, `decode` fills the host's output tensor. The two tables go to
//!    the kernels by value, as kernel parameters.
//! 3. `export_plugin!(info, new_codec, new_device_codec)` in lib.rs.
//!
//! `splitbench run --verify-wire` on a GPU checks that these kernels write the host path's
//! bytes.

use splitbench_plugin_api::{
    cuda::{CudaStream, KernelArg, KernelSet, LaunchConfig, RowArgs},
    device::{scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor, NonFiniteFlag},
    wire, CodecError, DType,
};

use crate::{wire_len, Tables};

const KERNELS: &[&str] = &["mulaw_scales", "mulaw_encode", "mulaw_decode"];

pub struct MuLawOnDevice {
    tables: Tables,
    kernels: KernelSet,
}

impl MuLawOnDevice {
    pub fn new(tables: Tables) -> Self {
        MuLawOnDevice {
            tables,
            kernels: KernelSet::new("mulaw.cu", &[include_str!("mulaw.cu")], KERNELS),
        }
    }

    fn wire_len(shape: &[usize]) -> Result<usize, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        Ok(wire_len(rows, hidden))
    }
}

impl DeviceCodec for MuLawOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        // Scratch after the payload: the NaN/Inf flag.
        Ok(scratch_offset(Self::wire_len(shape)?) + NonFiniteFlag::LEN)
    }

    fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError> {
        let (rows, hidden) = input.rows_and_hidden()?;
        let len = Self::wire_len(input.shape)?;
        if rows * hidden == 0 {
            return Ok(len);
        }
        let flag = NonFiniteFlag::zeroed(cuda, wire.ptr + scratch_offset(len) as u64)?;
        let tensor = RowArgs::new(input.ptr, input.dtype, rows, hidden)?;
        self.kernels.launch(
            cuda,
            "mulaw_scales",
            LaunchConfig::warp_per_row(rows)?,
            &tensor.with(&[KernelArg::of(&wire.ptr), KernelArg::of(flag.ptr())]),
        )?;
        self.kernels.launch(
            cuda,
            "mulaw_encode",
            LaunchConfig::thread_per_element(rows * hidden)?,
            &tensor.with(&[KernelArg::of(&wire.ptr), KernelArg::of(&self.tables.steps)]),
        )?;
        flag.check(
            cuda,
            "the hidden state holds NaN/Inf, which a per-token scale cannot carry",
        )?;
        Ok(len)
    }

    fn decode(
        &mut self,
        cuda: &CudaStream,
        wire: DeviceBuffer,
        output: &DeviceTensor<'_>,
    ) -> Result<(), CodecError> {
        let (rows, hidden) = output.rows_and_hidden()?;
        wire::expect_len_value(wire.len, Self::wire_len(output.shape)?)?;
        if rows * hidden == 0 {
            return Ok(());
        }
        let tensor = RowArgs::new(output.ptr, output.dtype, rows, hidden)?;
        self.kernels.launch(
            cuda,
            "mulaw_decode",
            LaunchConfig::thread_per_element(rows * hidden)?,
            &tensor.with(&[KernelArg::of(&wire.ptr), KernelArg::of(&self.tables.levels)]),
        )
    }
}

#[cfg(test)]
mod tests {
    /// Catches errors in mulaw.cu without a GPU, where NVRTC is installed.
    #[test]
    fn kernels_compile_with_nvrtc() {
        let codec = super::MuLawOnDevice::new(crate::Tables::new(255.0));
        splitbench_plugin_api::testkit::assert_kernels_compile(&codec.kernels, super::KERNELS);
    }
}
