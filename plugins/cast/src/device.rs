//! The CUDA path: the same wires as the host path, written by kernels on the lent stream.

use splitbench_plugin_api::{
    cuda::{dtype_code, CudaStream, KernelArg, KernelSet, LaunchConfig, RowArgs},
    device::{scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor, NonFiniteFlag},
    fp8::Fp8,
    wire, CodecError, DType,
};

use crate::{eight_wire_len, Scale};

const SOURCE: &str = include_str!("cast.cu");
const KERNELS: &[&str] = &[
    "cast_half_encode",
    "cast_half_decode",
    "cast_fp8_scales",
    "cast_fp8_encode",
    "cast_fp8_decode",
];

fn kernel_set() -> KernelSet {
    KernelSet::new("cast.cu", &[SOURCE], KERNELS)
}

/// fp16 or bf16 on the device.
pub struct HalfOnDevice {
    target: DType,
    kernels: KernelSet,
}

impl HalfOnDevice {
    pub fn new(bf16: bool) -> Self {
        HalfOnDevice {
            target: if bf16 { DType::BF16 } else { DType::F16 },
            kernels: kernel_set(),
        }
    }

    /// Launches `kernel` over `tensor` with the wire and the wire's dtype.
    fn launch(
        &mut self,
        cuda: &CudaStream,
        kernel: &str,
        tensor: &DeviceTensor<'_>,
        wire: u64,
    ) -> Result<(), CodecError> {
        let (rows, hidden) = tensor.rows_and_hidden()?;
        if rows * hidden == 0 {
            return Ok(());
        }
        let args = RowArgs::new(tensor.ptr, tensor.dtype, rows, hidden)?;
        let target = dtype_code(self.target);
        self.kernels.launch(
            cuda,
            kernel,
            LaunchConfig::thread_per_element(rows * hidden)?,
            &args.with(&[KernelArg::of(&wire), KernelArg::of(&target)]),
        )
    }
}

impl DeviceCodec for HalfOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        Ok(splitbench_plugin_api::element_count(shape)? * 2)
    }

    fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError> {
        self.launch(cuda, "cast_half_encode", input, wire.ptr)?;
        Ok(input.len() * 2)
    }

    fn decode(
        &mut self,
        cuda: &CudaStream,
        wire: DeviceBuffer,
        output: &DeviceTensor<'_>,
    ) -> Result<(), CodecError> {
        wire::expect_len_value(wire.len, output.len() * 2)?;
        self.launch(cuda, "cast_half_decode", output, wire.ptr)
    }
}

/// fp8, optionally per-token scaled, on the device.
pub struct EightOnDevice {
    kind: i32,
    /// The host path's saturation limit, which the kernels take as an argument.
    max: f32,
    scale: Scale,
    /// `scale` as the kernels' flag (1: per token).
    scaled: i32,
    kernels: KernelSet,
}

impl EightOnDevice {
    pub fn new(format: Fp8, scale: Scale) -> Self {
        EightOnDevice {
            kind: match format {
                Fp8::E4M3 => 0,
                Fp8::E5M2 => 1,
            },
            max: format.max(),
            scale,
            scaled: i32::from(scale == Scale::PerToken),
            kernels: kernel_set(),
        }
    }

    fn wire_len(&self, shape: &[usize]) -> Result<usize, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        Ok(eight_wire_len(rows, hidden, self.scale))
    }
}

impl DeviceCodec for EightOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        Ok(scratch_offset(self.wire_len(shape)?) + NonFiniteFlag::LEN)
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
        let tensor = RowArgs::new(input.ptr, input.dtype, rows, hidden)?;
        let flag = match self.scaled {
            0 => None,
            _ => {
                let flag = NonFiniteFlag::zeroed(cuda, wire.ptr + scratch_offset(len) as u64)?;
                self.kernels.launch(
                    cuda,
                    "cast_fp8_scales",
                    LaunchConfig::warp_per_row(rows)?,
                    &tensor.with(&[
                        KernelArg::of(&wire.ptr),
                        KernelArg::of(flag.ptr()),
                        KernelArg::of(&self.max),
                    ]),
                )?;
                Some(flag)
            }
        };
        self.kernels.launch(
            cuda,
            "cast_fp8_encode",
            LaunchConfig::thread_per_element(rows * hidden)?,
            &tensor.with(&[
                KernelArg::of(&wire.ptr),
                KernelArg::of(&self.kind),
                KernelArg::of(&self.max),
                KernelArg::of(&self.scaled),
            ]),
        )?;
        if let Some(flag) = flag {
            flag.check(cuda, crate::PER_TOKEN_NON_FINITE)?;
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
        wire::expect_len_value(wire.len, self.wire_len(output.shape)?)?;
        if rows * hidden == 0 {
            return Ok(());
        }
        let tensor = RowArgs::new(output.ptr, output.dtype, rows, hidden)?;
        self.kernels.launch(
            cuda,
            "cast_fp8_decode",
            LaunchConfig::thread_per_element(rows * hidden)?,
            &tensor.with(&[
                KernelArg::of(&wire.ptr),
                KernelArg::of(&self.kind),
                KernelArg::of(&self.scaled),
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
