//! The device path of `mulaw`: what a plugin crate needs for one.
//!
//! 1. CUDA C source (`mulaw.cu`) compiled at run time by NVRTC through [`KernelSet`]; no CUDA
//!    toolkit is needed to build the plugin, and it loads on machines without a GPU.
//! 2. A [`DeviceCodec`]: `max_wire_len` sizes the device buffer the host lends (payload plus
//!    this codec's scratch: a flag and the two tables), `encode` launches kernels on the lent
//!    stream and returns the wire's length, `decode` fills the host's output tensor.
//! 3. `export_plugin!(info, new_codec, new_device_codec)` in lib.rs.
//!
//! `splitbench run --verify-wire` on a GPU checks that these kernels write the host path's
//! bytes.

use splitbench_plugin_api::{
    block_kernels::as_u32,
    cuda::{dtype_code, CudaStream, KernelArg, KernelSet, LaunchConfig},
    device::{read_flag, scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor},
    wire, CodecError, DType,
};

use crate::Tables;

const KERNELS: &[&str] = &["mulaw_scales", "mulaw_encode", "mulaw_decode"];
const THREADS: u32 = 256;
/// Scratch after the payload: the NaN/Inf flag (padded to 16 bytes), then steps and levels.
const SCRATCH: usize = 16 + 127 * 4 + 128 * 4;

pub struct MuLawOnDevice {
    tables: Tables,
    kernels: KernelSet,
    /// Scratch address where the tables were last copied (the host reuses its buffer).
    uploaded_to: Option<u64>,
}

impl MuLawOnDevice {
    pub fn new(tables: Tables) -> Self {
        MuLawOnDevice {
            tables,
            kernels: KernelSet::new("mulaw.cu", &[include_str!("mulaw.cu")], KERNELS),
            uploaded_to: None,
        }
    }

    fn wire_len(shape: &[usize]) -> Result<usize, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        Ok(rows * (4 + hidden))
    }

    /// Scratch address for this shape; copies the tables there once.
    fn scratch(
        &mut self,
        cuda: &CudaStream,
        wire: &DeviceBuffer,
        shape: &[usize],
    ) -> Result<u64, CodecError> {
        let scratch = wire.ptr + scratch_offset(Self::wire_len(shape)?) as u64;
        if self.uploaded_to != Some(scratch) {
            let tables: Vec<u8> = self
                .tables
                .steps
                .iter()
                .chain(&self.tables.levels)
                .flat_map(|v| v.to_le_bytes())
                .collect();
            cuda.write_bytes(scratch + 16, &tables)?;
            self.uploaded_to = Some(scratch);
        }
        Ok(scratch)
    }
}

impl DeviceCodec for MuLawOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        Ok(scratch_offset(Self::wire_len(shape)?) + SCRATCH)
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
        let scratch = self.scratch(cuda, &wire, input.shape)?;
        let (flag, steps) = (scratch, scratch + 16);
        cuda.memset(flag, 0, 4)?;
        let (dtype, rows64, hidden32) = (dtype_code(input.dtype), rows as u64, as_u32(hidden)?);
        self.kernels.launch(
            cuda,
            "mulaw_scales",
            LaunchConfig::for_threads(rows * 32, THREADS)?,
            &[
                KernelArg::of(&input.ptr),
                KernelArg::of(&dtype),
                KernelArg::of(&rows64),
                KernelArg::of(&hidden32),
                KernelArg::of(&wire.ptr),
                KernelArg::of(&flag),
            ],
        )?;
        self.kernels.launch(
            cuda,
            "mulaw_encode",
            LaunchConfig::for_threads(rows * hidden, THREADS)?,
            &[
                KernelArg::of(&input.ptr),
                KernelArg::of(&dtype),
                KernelArg::of(&rows64),
                KernelArg::of(&hidden32),
                KernelArg::of(&wire.ptr),
                KernelArg::of(&steps),
            ],
        )?;
        if read_flag(cuda, flag)? != 0 {
            return Err(CodecError::new(
                "the hidden state holds NaN/Inf, which a per-token scale cannot carry",
            ));
        }
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
        let levels = self.scratch(cuda, &wire, output.shape)? + 16 + 127 * 4;
        let (rows64, hidden32, dtype) = (rows as u64, as_u32(hidden)?, dtype_code(output.dtype));
        self.kernels.launch(
            cuda,
            "mulaw_decode",
            LaunchConfig::for_threads(rows * hidden, THREADS)?,
            &[
                KernelArg::of(&wire.ptr),
                KernelArg::of(&rows64),
                KernelArg::of(&hidden32),
                KernelArg::of(&levels),
                KernelArg::of(&output.ptr),
                KernelArg::of(&dtype),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    /// Catches errors in mulaw.cu without a GPU, where NVRTC is installed.
    #[test]
    fn kernels_compile_with_nvrtc() {
        if let Err(why) = splitbench_plugin_api::cuda::nvrtc_available() {
            eprintln!("SKIPPED: mulaw kernels not compiled: {why}");
            return;
        }
        let kernels = super::MuLawOnDevice::new(crate::Tables::new(255.0)).kernels;
        kernels.compile_only((8, 0)).unwrap();
    }
}
