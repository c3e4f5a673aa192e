//! The CUDA path: the same wires as the host path, written by kernels on the lent stream.

use splitbench_plugin_api::{
    block_kernels::{self, as_u32, Blockwise, Zeroed},
    cuda::{dtype_code, CudaStream, KernelArg, KernelSet, LaunchConfig},
    device::{read_flag, scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor},
    quant::blocks_wire_len,
    wire, CodecError, DType,
};

const SOURCE: &str = include_str!("intq.cu");
const KERNELS: &[&str] = &[
    "intq_token_scales",
    "intq_token_encode",
    "intq_token_decode",
    "sb_block_scales",
    "sb_block_pack",
    "sb_block_decode",
];
const THREADS: u32 = 256;

fn kernel_set() -> KernelSet {
    KernelSet::new("intq.cu", &[block_kernels::SOURCE, SOURCE], KERNELS)
}

const NON_FINITE: &str = "the hidden state holds NaN/Inf, which integer quantization cannot carry";

/// Per-token int8 on the device.
pub struct Int8TokenOnDevice {
    kernels: KernelSet,
}

impl Int8TokenOnDevice {
    pub fn new() -> Self {
        Int8TokenOnDevice {
            kernels: kernel_set(),
        }
    }
}

fn token_wire_len(shape: &[usize]) -> Result<usize, CodecError> {
    let (rows, hidden) = wire::rows_and_hidden(shape)?;
    Ok(rows * 4 + rows * hidden)
}

impl DeviceCodec for Int8TokenOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        Ok(scratch_offset(token_wire_len(shape)?) + 4)
    }

    fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError> {
        let (rows, hidden) = input.rows_and_hidden()?;
        let len = token_wire_len(input.shape)?;
        if rows * hidden == 0 {
            return Ok(len);
        }
        let flag = wire.ptr + scratch_offset(len) as u64;
        cuda.memset(flag, 0, 4)?;
        let (dtype, rows64, hidden32) = (dtype_code(input.dtype), rows as u64, as_u32(hidden)?);
        self.kernels.launch(
            cuda,
            "intq_token_scales",
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
            "intq_token_encode",
            LaunchConfig::for_threads(rows * hidden, THREADS)?,
            &[
                KernelArg::of(&input.ptr),
                KernelArg::of(&dtype),
                KernelArg::of(&rows64),
                KernelArg::of(&hidden32),
                KernelArg::of(&wire.ptr),
            ],
        )?;
        if read_flag(cuda, flag)? != 0 {
            return Err(CodecError::new(NON_FINITE));
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
        wire::expect_len_value(wire.len, token_wire_len(output.shape)?)?;
        if rows * hidden == 0 {
            return Ok(());
        }
        let (dtype, rows64, hidden32) = (dtype_code(output.dtype), rows as u64, as_u32(hidden)?);
        self.kernels.launch(
            cuda,
            "intq_token_decode",
            LaunchConfig::for_threads(rows * hidden, THREADS)?,
            &[
                KernelArg::of(&wire.ptr),
                KernelArg::of(&rows64),
                KernelArg::of(&hidden32),
                KernelArg::of(&output.ptr),
                KernelArg::of(&dtype),
            ],
        )
    }
}

/// Blockwise intN (symmetric or min/max) on the device.
pub struct BlocksOnDevice {
    format: Blockwise,
    kernels: KernelSet,
}

impl BlocksOnDevice {
    pub fn new(format: Blockwise) -> Self {
        BlocksOnDevice {
            format,
            kernels: kernel_set(),
        }
    }

    fn wire_len(&self, shape: &[usize]) -> Result<usize, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        Ok(blocks_wire_len(
            rows,
            hidden,
            self.format.params,
            self.format.asymmetric,
        ))
    }
}

impl DeviceCodec for BlocksOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        Ok(scratch_offset(self.wire_len(shape)?) + 4)
    }

    fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError> {
        let flag = wire.ptr + scratch_offset(self.wire_len(input.shape)?) as u64;
        cuda.memset(flag, 0, 4)?;
        let len = block_kernels::encode(
            &mut self.kernels,
            cuda,
            input,
            self.format,
            Zeroed::NONE,
            wire.ptr,
            flag,
        )?;
        if read_flag(cuda, flag)? != 0 {
            return Err(CodecError::new(NON_FINITE));
        }
        Ok(len)
    }

    fn decode(
        &mut self,
        cuda: &CudaStream,
        wire: DeviceBuffer,
        output: &DeviceTensor<'_>,
    ) -> Result<(), CodecError> {
        wire::expect_len_value(wire.len, self.wire_len(output.shape)?)?;
        block_kernels::decode(&mut self.kernels, cuda, wire.ptr, self.format, output)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernels_compile_with_nvrtc() {
        if let Err(why) = splitbench_plugin_api::cuda::nvrtc_available() {
            eprintln!("SKIPPED: intq kernels not compiled: {why}");
            return;
        }
        let ptx = super::kernel_set().compile_only((9, 0)).unwrap();
        let ptx = String::from_utf8_lossy(&ptx);
        for name in super::KERNELS {
            assert!(ptx.contains(&format!(".entry {name}")), "{name} missing");
        }
    }
}
