//! The CUDA path: the host path's wire, written by kernels on the lent stream. `rotate.cu`
//! rotates into f32 scratch after the payload; `block_kernels` (quant's blockwise format)
//! quantizes that, as the host path feeds its f32 rotated values to `quant::encode_blocks`.

use splitbench_plugin_api::{
    block_kernels::{self, Blockwise, Zeroed},
    cuda::{CudaStream, KernelArg, KernelSet, LaunchConfig, RowArgs},
    device::{scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor, NonFiniteFlag},
    quant::NON_FINITE,
    wire, CodecError, DType,
};

use crate::Rotate;

const KERNELS: &[&str] = &[
    "rot_forward",
    "rot_inverse",
    "sb_block_scales",
    "sb_block_pack",
    "sb_block_decode",
];

fn kernel_set() -> KernelSet {
    KernelSet::new(
        "rotate.cu",
        &[block_kernels::SOURCE, include_str!("rotate.cu")],
        KERNELS,
    )
}

/// Threads per token: the transform's stages synchronize the thread block.
const THREADS: u32 = 256;

pub struct RotateOnDevice {
    codec: Rotate,
    kernels: KernelSet,
}

impl RotateOnDevice {
    pub fn new(codec: Rotate) -> Self {
        RotateOnDevice {
            codec,
            kernels: kernel_set(),
        }
    }

    /// Payload length, and where the f32 scratch (rows × hidden) and the flag after it start.
    fn layout(&self, shape: &[usize]) -> Result<(usize, usize, usize), CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        let hidden = hidden.max(1);
        let len = self.codec.wire_len(rows, hidden);
        let scratch = scratch_offset(len);
        Ok((len, scratch, scratch + 4 * rows * hidden))
    }

    fn format(&self, hidden: usize) -> Blockwise {
        Blockwise {
            params: self.codec.block_params(hidden),
            asymmetric: false,
        }
    }
}

fn per_token(rows: usize) -> Result<LaunchConfig, CodecError> {
    let grid = u32::try_from(rows)
        .map_err(|_| CodecError::new(format!("{rows} tokens exceed one CUDA grid")))?;
    Ok(LaunchConfig {
        grid,
        block: THREADS,
    })
}

impl DeviceCodec for RotateOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        Ok(self.layout(shape)?.2 + NonFiniteFlag::LEN)
    }

    fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError> {
        let (rows, hidden) = input.rows_and_hidden()?;
        let (len, scratch, flag_at) = self.layout(input.shape)?;
        if rows * hidden == 0 {
            // Nothing to rotate; the wire is the seed alone.
            let seed = self.codec.p.seed.to_le_bytes();
            for (k, b) in seed.iter().enumerate() {
                cuda.memset(wire.ptr + k as u64, *b, 1)?;
            }
            return Ok(len);
        }
        let flag = NonFiniteFlag::zeroed(cuda, wire.ptr + flag_at as u64)?;
        let rotated = wire.ptr + scratch as u64;
        let tensor = RowArgs::new(input.ptr, input.dtype, rows, hidden)?;
        self.kernels.launch(
            cuda,
            "rot_forward",
            per_token(rows)?,
            &tensor.with(&[
                KernelArg::of(&rotated),
                KernelArg::of(flag.ptr()),
                KernelArg::of(&self.codec.p.seed),
                KernelArg::of(&wire.ptr),
            ]),
        )?;
        let as_f32 = DeviceTensor {
            dtype: DType::F32,
            shape: input.shape,
            ptr: rotated,
        };
        let format = self.format(hidden);
        let blocks = block_kernels::encode(
            &mut self.kernels,
            cuda,
            &as_f32,
            format,
            Zeroed::NONE,
            wire.ptr + 8,
            *flag.ptr(),
        )?;
        flag.check(cuda, NON_FINITE)?;
        Ok(8 + blocks)
    }

    fn decode(
        &mut self,
        cuda: &CudaStream,
        wire: DeviceBuffer,
        output: &DeviceTensor<'_>,
    ) -> Result<(), CodecError> {
        let (rows, hidden) = output.rows_and_hidden()?;
        let (len, scratch, flag_at) = self.layout(output.shape)?;
        wire::expect_len_value(wire.len, len)?;
        if rows * hidden == 0 {
            return Ok(());
        }
        if wire.capacity < flag_at {
            return Err(CodecError::new(format!(
                "the wire buffer holds {} bytes; decoding needs {flag_at} (max_wire_len)",
                wire.capacity
            )));
        }
        let rotated = wire.ptr + scratch as u64;
        let as_f32 = DeviceTensor {
            dtype: DType::F32,
            shape: output.shape,
            ptr: rotated,
        };
        let format = self.format(hidden);
        block_kernels::decode(&mut self.kernels, cuda, wire.ptr + 8, format, &as_f32)?;
        let tensor = RowArgs::new(output.ptr, output.dtype, rows, hidden)?;
        self.kernels.launch(
            cuda,
            "rot_inverse",
            per_token(rows)?,
            &tensor.with(&[KernelArg::of(&rotated), KernelArg::of(&wire.ptr)]),
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
