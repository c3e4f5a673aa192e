//! The CUDA path: the same wires as the host path, written by kernels on the lent stream.

use splitbench_plugin_api::{
    block_kernels::as_u32,
    cuda::{dtype_code, CudaStream, KernelArg, KernelSet, LaunchConfig},
    device::{read_flag, scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor},
    wire, CodecError, DType,
};

use crate::{Fp8, Scale};

const SOURCE: &str = include_str!("cast.cu");
const KERNELS: &[&str] = &[
    "cast_half_encode",
    "cast_half_decode",
    "cast_fp8_scales",
    "cast_fp8_encode",
    "cast_fp8_decode",
];
const THREADS: u32 = 256;

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
        let n = input.len();
        if n > 0 {
            let (dtype, n64, target) = (dtype_code(input.dtype), n as u64, dtype_code(self.target));
            self.kernels.launch(
                cuda,
                "cast_half_encode",
                LaunchConfig::for_threads(n, THREADS)?,
                &[
                    KernelArg::of(&input.ptr),
                    KernelArg::of(&dtype),
                    KernelArg::of(&n64),
                    KernelArg::of(&wire.ptr),
                    KernelArg::of(&target),
                ],
            )?;
        }
        Ok(n * 2)
    }

    fn decode(
        &mut self,
        cuda: &CudaStream,
        wire: DeviceBuffer,
        output: &DeviceTensor<'_>,
    ) -> Result<(), CodecError> {
        let n = output.len();
        wire::expect_len_value(wire.len, n * 2)?;
        if n == 0 {
            return Ok(());
        }
        let (source, n64, dtype) = (dtype_code(self.target), n as u64, dtype_code(output.dtype));
        self.kernels.launch(
            cuda,
            "cast_half_decode",
            LaunchConfig::for_threads(n, THREADS)?,
            &[
                KernelArg::of(&wire.ptr),
                KernelArg::of(&n64),
                KernelArg::of(&source),
                KernelArg::of(&output.ptr),
                KernelArg::of(&dtype),
            ],
        )
    }
}

/// fp8, optionally per-token scaled, on the device.
pub struct EightOnDevice {
    kind: i32,
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
            scaled: i32::from(scale == Scale::PerToken),
            kernels: kernel_set(),
        }
    }

    fn wire_len(&self, shape: &[usize]) -> Result<usize, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        Ok(rows * hidden + if self.scaled != 0 { rows * 4 } else { 0 })
    }
}

impl DeviceCodec for EightOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        Ok(scratch_offset(self.wire_len(shape)?) + 4)
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
        let (dtype, rows64, hidden32) = (dtype_code(input.dtype), rows as u64, as_u32(hidden)?);
        let flag = wire.ptr + scratch_offset(len) as u64;
        if self.scaled != 0 {
            cuda.memset(flag, 0, 4)?;
            self.kernels.launch(
                cuda,
                "cast_fp8_scales",
                LaunchConfig::for_threads(rows * 32, THREADS)?,
                &[
                    KernelArg::of(&input.ptr),
                    KernelArg::of(&dtype),
                    KernelArg::of(&rows64),
                    KernelArg::of(&hidden32),
                    KernelArg::of(&self.kind),
                    KernelArg::of(&wire.ptr),
                    KernelArg::of(&flag),
                ],
            )?;
        }
        self.kernels.launch(
            cuda,
            "cast_fp8_encode",
            LaunchConfig::for_threads(rows * hidden, THREADS)?,
            &[
                KernelArg::of(&input.ptr),
                KernelArg::of(&dtype),
                KernelArg::of(&rows64),
                KernelArg::of(&hidden32),
                KernelArg::of(&self.kind),
                KernelArg::of(&self.scaled),
                KernelArg::of(&wire.ptr),
            ],
        )?;
        if self.scaled != 0 && read_flag(cuda, flag)? != 0 {
            return Err(CodecError::new(
                "fp8 per-token scaling got NaN/Inf in the hidden state; use scale = \"none\" to carry them",
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
        wire::expect_len_value(wire.len, self.wire_len(output.shape)?)?;
        if rows * hidden == 0 {
            return Ok(());
        }
        let (rows64, hidden32, dtype) = (rows as u64, as_u32(hidden)?, dtype_code(output.dtype));
        self.kernels.launch(
            cuda,
            "cast_fp8_decode",
            LaunchConfig::for_threads(rows * hidden, THREADS)?,
            &[
                KernelArg::of(&wire.ptr),
                KernelArg::of(&rows64),
                KernelArg::of(&hidden32),
                KernelArg::of(&self.kind),
                KernelArg::of(&self.scaled),
                KernelArg::of(&output.ptr),
                KernelArg::of(&dtype),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernels_compile_with_nvrtc() {
        if let Err(why) = splitbench_plugin_api::cuda::nvrtc_available() {
            eprintln!("SKIPPED: cast kernels not compiled: {why}");
            return;
        }
        let ptx = super::kernel_set().compile_only((9, 0)).unwrap();
        let ptx = String::from_utf8_lossy(&ptx);
        for name in super::KERNELS {
            assert!(ptx.contains(&format!(".entry {name}")), "{name} missing");
        }
    }
}
