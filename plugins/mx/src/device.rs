//! The CUDA path: the host path's wire, written by kernels on the lent stream (`mx.cu`).

use splitbench_plugin_api::{
    cuda::{CudaStream, KernelArg, KernelSet, LaunchConfig, RowArgs},
    device::{scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor, NonFiniteFlag},
    quant::NON_FINITE,
    wire, CodecError, DType,
};

use crate::{Minifloat, Mx, Scaling};

const KERNELS: &[&str] = &[
    "mx_row_absmax",
    "mx_tensor_scale",
    "mx_scales",
    "mx_encode_bytes",
    "mx_decode_values",
];

fn kernel_set() -> KernelSet {
    KernelSet::new("mx.cu", &[include_str!("mx.cu")], KERNELS)
}

pub struct MxOnDevice {
    codec: Mx,
    kernels: KernelSet,
}

impl MxOnDevice {
    pub fn new(element: Minifloat, scaling: Scaling, block: usize) -> Self {
        MxOnDevice {
            codec: Mx {
                element,
                scaling,
                block,
            },
            kernels: kernel_set(),
        }
    }

    fn wire_len(&self, shape: &[usize]) -> Result<usize, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        self.codec
            .wire_len(rows, hidden.max(1))
            .ok_or_else(|| CodecError::new("wire size overflows usize"))
    }

    /// The element type and scaling as the kernels take them.
    fn format_args(&self) -> (u32, i32, i32, u32, i32) {
        let e = self.codec.element;
        (
            self.codec.block as u32,
            e.ebits as i32,
            e.mbits as i32,
            e.max_code(),
            match self.codec.scaling {
                Scaling::E8M0 => 0,
                Scaling::Nv => 1,
            },
        )
    }
}

impl DeviceCodec for MxOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        let (rows, _) = wire::rows_and_hidden(shape)?;
        // Scratch: the NaN/Inf flag, then (NVFP4) one f32 absmax per row.
        Ok(scratch_offset(self.wire_len(shape)?) + NonFiniteFlag::LEN + 4 * rows)
    }

    fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError> {
        let (rows, hidden) = input.rows_and_hidden()?;
        let len = self.wire_len(input.shape)?;
        if rows * hidden == 0 {
            return Ok(len);
        }
        let scratch = wire.ptr + scratch_offset(len) as u64;
        let flag = NonFiniteFlag::zeroed(cuda, scratch)?;
        let row_max = scratch + NonFiniteFlag::LEN as u64;
        let tensor = RowArgs::new(input.ptr, input.dtype, rows, hidden)?;
        let (block, ebits, mbits, max_code, scaling) = self.format_args();
        if self.codec.scaling == Scaling::Nv {
            self.kernels.launch(
                cuda,
                "mx_row_absmax",
                LaunchConfig::warp_per_row(rows)?,
                &tensor.with(&[KernelArg::of(&row_max), KernelArg::of(flag.ptr())]),
            )?;
            self.kernels.launch(
                cuda,
                "mx_tensor_scale",
                LaunchConfig::for_threads(32, 32)?,
                &tensor.with(&[KernelArg::of(&wire.ptr), KernelArg::of(&row_max)]),
            )?;
        }
        let format = [
            KernelArg::of(&block),
            KernelArg::of(&ebits),
            KernelArg::of(&mbits),
            KernelArg::of(&max_code),
            KernelArg::of(&scaling),
        ];
        let mut args = vec![KernelArg::of(&wire.ptr), KernelArg::of(flag.ptr())];
        args.extend(format);
        self.kernels.launch(
            cuda,
            "mx_scales",
            LaunchConfig::warp_per_row(rows * hidden.div_ceil(self.codec.block))?,
            &tensor.with(&args),
        )?;
        let mut args = vec![KernelArg::of(&wire.ptr)];
        args.extend(format);
        let bytes = wire::packed_len(rows * hidden, self.codec.element.bits());
        self.kernels.launch(
            cuda,
            "mx_encode_bytes",
            LaunchConfig::thread_per_element(bytes)?,
            &tensor.with(&args),
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
        wire::expect_len_value(wire.len, self.wire_len(output.shape)?)?;
        if rows * hidden == 0 {
            return Ok(());
        }
        let tensor = RowArgs::new(output.ptr, output.dtype, rows, hidden)?;
        let (block, ebits, mbits, _, scaling) = self.format_args();
        self.kernels.launch(
            cuda,
            "mx_decode_values",
            LaunchConfig::thread_per_element(rows * hidden)?,
            &tensor.with(&[
                KernelArg::of(&wire.ptr),
                KernelArg::of(&block),
                KernelArg::of(&ebits),
                KernelArg::of(&mbits),
                KernelArg::of(&scaling),
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
