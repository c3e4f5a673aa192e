//! The CUDA path: the host path's wire, written by kernels on the lent stream (`lut4.cu`).

use splitbench_plugin_api::{
    cuda::{CudaStream, KernelArg, KernelSet, LaunchConfig, RowArgs},
    device::{scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor, NonFiniteFlag},
    quant::NON_FINITE,
    wire, CodecError, DType,
};

use crate::{wire_len, Table};

const KERNELS: &[&str] = &["lut4_absmax", "lut4_encode", "lut4_decode"];

fn kernel_set() -> KernelSet {
    KernelSet::new("lut4.cu", &[include_str!("lut4.cu")], KERNELS)
}

/// `lut4_table` in lut4.cu: the host's table, passed by value so both paths use one set of
/// f32 values.
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelTable {
    code: [f32; 16],
    bounds: [f32; 15],
    order: [u8; 16],
}

pub struct Lut4OnDevice {
    table: KernelTable,
    block: u64,
    kernels: KernelSet,
}

impl Lut4OnDevice {
    pub fn new(table: Table, block: usize) -> Self {
        Lut4OnDevice {
            table: KernelTable {
                code: table.code,
                bounds: table.bounds,
                order: table.order,
            },
            block: block as u64,
            kernels: kernel_set(),
        }
    }
}

impl DeviceCodec for Lut4OnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        let n = splitbench_plugin_api::element_count(shape)?;
        Ok(scratch_offset(wire_len(n, self.block as usize)?) + NonFiniteFlag::LEN)
    }

    fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError> {
        let (rows, hidden) = input.rows_and_hidden()?;
        let n = rows * hidden;
        let len = wire_len(n, self.block as usize)?;
        if n == 0 {
            return Ok(len);
        }
        let flag = NonFiniteFlag::zeroed(cuda, wire.ptr + scratch_offset(len) as u64)?;
        let tensor = RowArgs::new(input.ptr, input.dtype, rows, hidden)?;
        self.kernels.launch(
            cuda,
            "lut4_absmax",
            LaunchConfig::warp_per_row(n.div_ceil(self.block as usize))?,
            &tensor.with(&[
                KernelArg::of(&wire.ptr),
                KernelArg::of(flag.ptr()),
                KernelArg::of(&self.block),
            ]),
        )?;
        self.kernels.launch(
            cuda,
            "lut4_encode",
            LaunchConfig::thread_per_element(n.div_ceil(2))?,
            &tensor.with(&[
                KernelArg::of(&wire.ptr),
                KernelArg::of(&self.block),
                KernelArg::of(&self.table),
            ]),
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
        let n = rows * hidden;
        wire::expect_len_value(wire.len, wire_len(n, self.block as usize)?)?;
        if n == 0 {
            return Ok(());
        }
        let tensor = RowArgs::new(output.ptr, output.dtype, rows, hidden)?;
        self.kernels.launch(
            cuda,
            "lut4_decode",
            LaunchConfig::thread_per_element(n)?,
            &tensor.with(&[
                KernelArg::of(&wire.ptr),
                KernelArg::of(&self.block),
                KernelArg::of(&self.table),
            ]),
        )
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
