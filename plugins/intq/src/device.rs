//! The CUDA path: the same wires as the host path, written by kernels on the lent stream.

use splitbench_plugin_api::{
    block_kernels::{self, Blockwise, Zeroed},
    cuda::{CudaStream, KernelArg, KernelSet, LaunchConfig, RowArgs},
    device::{scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor, NonFiniteFlag},
    quant::{blocks_wire_len, NON_FINITE},
    wire, CodecError, DType,
};

use crate::int8_token_wire_len;

const SOURCE: &str = include_str!("intq.cu");
const KERNELS: &[&str] = &[
    "intq_token_scales",
    "intq_token_encode",
    "intq_token_decode",
    "sb_block_scales",
    "sb_block_pack",
    "sb_block_decode",
];

fn kernel_set() -> KernelSet {
    KernelSet::new("intq.cu", &[block_kernels::SOURCE, SOURCE], KERNELS)
}

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
    Ok(int8_token_wire_len(rows, hidden))
}

impl DeviceCodec for Int8TokenOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        Ok(scratch_offset(token_wire_len(shape)?) + NonFiniteFlag::LEN)
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
        let flag = NonFiniteFlag::zeroed(cuda, wire.ptr + scratch_offset(len) as u64)?;
        let tensor = RowArgs::new(input.ptr, input.dtype, rows, hidden)?;
        self.kernels.launch(
            cuda,
            "intq_token_scales",
            LaunchConfig::warp_per_row(rows)?,
            &tensor.with(&[KernelArg::of(&wire.ptr), KernelArg::of(flag.ptr())]),
        )?;
        self.kernels.launch(
            cuda,
            "intq_token_encode",
            LaunchConfig::thread_per_element(rows * hidden)?,
            &tensor.with(&[KernelArg::of(&wire.ptr)]),
        )?;
        flag.check(cuda, NON_FINITE)?;
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
        let tensor = RowArgs::new(output.ptr, output.dtype, rows, hidden)?;
        self.kernels.launch(
            cuda,
            "intq_token_decode",
            LaunchConfig::thread_per_element(rows * hidden)?,
            &tensor.with(&[KernelArg::of(&wire.ptr)]),
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
        Ok(scratch_offset(self.wire_len(shape)?) + NonFiniteFlag::LEN)
    }

    fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError> {
        let flag_at = wire.ptr + scratch_offset(self.wire_len(input.shape)?) as u64;
        let flag = NonFiniteFlag::zeroed(cuda, flag_at)?;
        let len = block_kernels::encode(
            &mut self.kernels,
            cuda,
            input,
            self.format,
            Zeroed::NONE,
            wire.ptr,
            *flag.ptr(),
        )?;
        flag.check(cuda, NON_FINITE)?;
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
        splitbench_plugin_api::testkit::assert_kernels_compile(
            &super::kernel_set(),
            super::KERNELS,
        );
    }
}
