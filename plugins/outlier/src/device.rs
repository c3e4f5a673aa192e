//! The CUDA path: the same wire as the host path. Encoding learns the outlier count from the
//! device (one small read per call) because the wire's layout depends on it; decoding needs
//! no read, since the wire's length fixes where the dense remainder starts.

use splitbench_plugin_api::{
    block_kernels::{self, as_u32, Blockwise, Zeroed},
    cuda::{dtype_code, CudaStream, KernelArg, KernelSet, LaunchConfig},
    device::{scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor},
    quant::blocks_wire_len,
    wire, CodecError, DType,
};

use crate::{block_params, count_width, Mode, OutlierParams};

const SOURCE: &str = include_str!("outlier.cu");
const KERNELS: &[&str] = &[
    "ol_count_rows",
    "ol_read_counts",
    "ol_scan",
    "ol_scatter",
    "ol_decode_values",
    "ol_channel_mask",
    "ol_channel_list",
    "ol_channel_header",
    "ol_channel_values",
    "ol_channel_decode",
    "sb_block_scales",
    "sb_block_pack",
    "sb_block_decode",
];
const THREADS: u32 = 256;

fn kernel_set() -> KernelSet {
    KernelSet::new("outlier.cu", &[block_kernels::SOURCE, SOURCE], KERNELS)
}

pub struct OutlierOnDevice {
    params: OutlierParams,
    kernels: KernelSet,
}

/// Sizes that follow from the shape alone.
struct Layout {
    rows: usize,
    hidden: usize,
    index_bits: u32,
    dense: Blockwise,
    dense_len: usize,
    /// Device address of the scratch words, given the wire's.
    scratch_at: usize,
    scratch_len: usize,
}

impl OutlierOnDevice {
    pub fn new(params: OutlierParams) -> Self {
        OutlierOnDevice {
            params,
            kernels: kernel_set(),
        }
    }

    fn layout(&self, shape: &[usize]) -> Result<Layout, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        let index_bits = wire::index_bits(hidden);
        let dense = Blockwise {
            params: block_params(&self.params, hidden),
            asymmetric: false,
        };
        let dense_len = blocks_wire_len(rows, hidden, dense.params, false);
        let every_value = rows * hidden;
        let (longest, scratch_words) = match self.params.mode {
            Mode::Value => (
                rows * count_width(hidden)
                    + wire::packed_len(every_value, index_bits)
                    + every_value * 2
                    + dense_len,
                2 + rows + 1,
            ),
            Mode::Channel => (
                4 + wire::packed_len(hidden, index_bits) + every_value * 2 + dense_len,
                2 + hidden.div_ceil(32) + hidden,
            ),
        };
        Ok(Layout {
            rows,
            hidden,
            index_bits,
            dense,
            dense_len,
            scratch_at: scratch_offset(longest),
            scratch_len: scratch_words * 4,
        })
    }

    /// Scratch word 1 (the outlier or channel count), after checking the NaN/Inf flag.
    fn read_count(cuda: &CudaStream, scratch: u64) -> Result<u32, CodecError> {
        let mut words = [0u8; 8];
        cuda.read_bytes(scratch, &mut words)?;
        let word =
            |k: usize| u32::from_le_bytes([words[k], words[k + 1], words[k + 2], words[k + 3]]);
        if word(0) != 0 {
            return Err(CodecError::new(
                "the hidden state holds NaN/Inf, which integer quantization cannot carry",
            ));
        }
        Ok(word(4))
    }

    fn encode_values(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire_ptr: u64,
        l: &Layout,
    ) -> Result<usize, CodecError> {
        let scratch = wire_ptr + l.scratch_at as u64;
        let (dtype, rows64, hidden32) = (dtype_code(input.dtype), l.rows as u64, as_u32(l.hidden)?);
        let width = count_width(l.hidden) as u32;
        let threshold = self.params.threshold;
        self.kernels.launch(
            cuda,
            "ol_count_rows",
            LaunchConfig::for_threads(l.rows * 32, THREADS)?,
            &[
                KernelArg::of(&input.ptr),
                KernelArg::of(&dtype),
                KernelArg::of(&rows64),
                KernelArg::of(&hidden32),
                KernelArg::of(&threshold),
                KernelArg::of(&wire_ptr),
                KernelArg::of(&width),
                KernelArg::of(&scratch),
            ],
        )?;
        self.scan(cuda, rows64, scratch)?;
        let total = Self::read_count(cuda, scratch)?;
        let total = total as usize;
        let pos_off = l.rows * width as usize;
        let val_off = pos_off + wire::packed_len(total, l.index_bits);
        let dense_off = val_off + total * 2;
        cuda.memset(wire_ptr + pos_off as u64, 0, val_off - pos_off)?;
        let (pos_off64, val_off64) = (pos_off as u64, val_off as u64);
        for what in [0i32, 1] {
            self.kernels.launch(
                cuda,
                "ol_scatter",
                LaunchConfig::for_threads(l.rows * 32, THREADS)?,
                &[
                    KernelArg::of(&input.ptr),
                    KernelArg::of(&dtype),
                    KernelArg::of(&rows64),
                    KernelArg::of(&hidden32),
                    KernelArg::of(&threshold),
                    KernelArg::of(&wire_ptr),
                    KernelArg::of(&pos_off64),
                    KernelArg::of(&val_off64),
                    KernelArg::of(&l.index_bits),
                    KernelArg::of(&scratch),
                    KernelArg::of(&what),
                ],
            )?;
        }
        let zeroed = Zeroed {
            above: threshold,
            channel_mask: 0,
        };
        let dense_len = block_kernels::encode(
            &mut self.kernels,
            cuda,
            input,
            l.dense,
            zeroed,
            wire_ptr + dense_off as u64,
            scratch,
        )?;
        Ok(dense_off + dense_len)
    }

    fn scan(&mut self, cuda: &CudaStream, rows64: u64, scratch: u64) -> Result<(), CodecError> {
        let (items, total) = (scratch + 8, scratch + 4);
        self.kernels.launch(
            cuda,
            "ol_scan",
            LaunchConfig {
                grid: 1,
                block: 1024,
            },
            &[
                KernelArg::of(&rows64),
                KernelArg::of(&items),
                KernelArg::of(&total),
            ],
        )
    }

    fn encode_channels(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire_ptr: u64,
        l: &Layout,
    ) -> Result<usize, CodecError> {
        let scratch = wire_ptr + l.scratch_at as u64;
        let (dtype, rows64, hidden32) = (dtype_code(input.dtype), l.rows as u64, as_u32(l.hidden)?);
        let threshold = self.params.threshold;
        self.kernels.launch(
            cuda,
            "ol_channel_mask",
            LaunchConfig::for_threads(l.hidden, THREADS)?,
            &[
                KernelArg::of(&input.ptr),
                KernelArg::of(&dtype),
                KernelArg::of(&rows64),
                KernelArg::of(&hidden32),
                KernelArg::of(&threshold),
                KernelArg::of(&scratch),
            ],
        )?;
        self.kernels.launch(
            cuda,
            "ol_channel_list",
            LaunchConfig {
                grid: 1,
                block: 1024,
            },
            &[KernelArg::of(&hidden32), KernelArg::of(&scratch)],
        )?;
        let count = Self::read_count(cuda, scratch)?;
        let packed = wire::packed_len(count as usize, l.index_bits);
        self.kernels.launch(
            cuda,
            "ol_channel_header",
            LaunchConfig::for_threads(packed.max(4), THREADS)?,
            &[
                KernelArg::of(&wire_ptr),
                KernelArg::of(&hidden32),
                KernelArg::of(&count),
                KernelArg::of(&l.index_bits),
                KernelArg::of(&scratch),
            ],
        )?;
        let val_off = 4 + packed;
        let val_off64 = val_off as u64;
        self.kernels.launch(
            cuda,
            "ol_channel_values",
            LaunchConfig::for_threads(l.rows * count as usize, THREADS)?,
            &[
                KernelArg::of(&input.ptr),
                KernelArg::of(&dtype),
                KernelArg::of(&rows64),
                KernelArg::of(&hidden32),
                KernelArg::of(&count),
                KernelArg::of(&wire_ptr),
                KernelArg::of(&val_off64),
                KernelArg::of(&scratch),
            ],
        )?;
        let dense_off = val_off + l.rows * count as usize * 2;
        let zeroed = Zeroed {
            above: f32::INFINITY,
            channel_mask: scratch + 8,
        };
        let dense_len = block_kernels::encode(
            &mut self.kernels,
            cuda,
            input,
            l.dense,
            zeroed,
            wire_ptr + dense_off as u64,
            scratch,
        )?;
        Ok(dense_off + dense_len)
    }
}

impl DeviceCodec for OutlierOnDevice {
    fn max_wire_len(&self, shape: &[usize], _dtype: DType) -> Result<usize, CodecError> {
        let l = self.layout(shape)?;
        Ok(l.scratch_at + l.scratch_len)
    }

    fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError> {
        let l = self.layout(input.shape)?;
        if l.rows * l.hidden == 0 {
            return Ok(match self.params.mode {
                Mode::Value => l.rows * count_width(l.hidden) + l.dense_len,
                Mode::Channel => 4 + l.dense_len,
            });
        }
        cuda.memset(wire.ptr + l.scratch_at as u64, 0, l.scratch_len)?;
        match self.params.mode {
            Mode::Value => self.encode_values(cuda, input, wire.ptr, &l),
            Mode::Channel => self.encode_channels(cuda, input, wire.ptr, &l),
        }
    }

    fn decode(
        &mut self,
        cuda: &CudaStream,
        wire: DeviceBuffer,
        output: &DeviceTensor<'_>,
    ) -> Result<(), CodecError> {
        let l = self.layout(output.shape)?;
        if l.rows * l.hidden == 0 {
            return Ok(());
        }
        if wire.len < l.dense_len || wire.capacity < l.scratch_at + l.scratch_len {
            return Err(CodecError::new(format!(
                "device wire of {} bytes (capacity {}) cannot hold this shape's outlier wire",
                wire.len, wire.capacity
            )));
        }
        let dense_at = wire.ptr + (wire.len - l.dense_len) as u64;
        block_kernels::decode(&mut self.kernels, cuda, dense_at, l.dense, output)?;
        let (rows64, hidden32, dtype) =
            (l.rows as u64, as_u32(l.hidden)?, dtype_code(output.dtype));
        match self.params.mode {
            Mode::Value => {
                let scratch = wire.ptr + l.scratch_at as u64;
                let width = count_width(l.hidden) as u32;
                self.kernels.launch(
                    cuda,
                    "ol_read_counts",
                    LaunchConfig::for_threads(l.rows, THREADS)?,
                    &[
                        KernelArg::of(&wire.ptr),
                        KernelArg::of(&rows64),
                        KernelArg::of(&width),
                        KernelArg::of(&scratch),
                    ],
                )?;
                self.scan(cuda, rows64, scratch)?;
                self.kernels.launch(
                    cuda,
                    "ol_decode_values",
                    LaunchConfig::for_threads(l.rows * 32, THREADS)?,
                    &[
                        KernelArg::of(&wire.ptr),
                        KernelArg::of(&rows64),
                        KernelArg::of(&hidden32),
                        KernelArg::of(&width),
                        KernelArg::of(&l.index_bits),
                        KernelArg::of(&scratch),
                        KernelArg::of(&output.ptr),
                        KernelArg::of(&dtype),
                    ],
                )
            }
            Mode::Channel => self.kernels.launch(
                cuda,
                "ol_channel_decode",
                LaunchConfig::for_threads(l.rows * 32, THREADS)?,
                &[
                    KernelArg::of(&wire.ptr),
                    KernelArg::of(&rows64),
                    KernelArg::of(&hidden32),
                    KernelArg::of(&l.index_bits),
                    KernelArg::of(&output.ptr),
                    KernelArg::of(&dtype),
                ],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernels_compile_with_nvrtc() {
        if let Err(why) = splitbench_plugin_api::cuda::nvrtc_available() {
            eprintln!("SKIPPED: outlier kernels not compiled: {why}");
            return;
        }
        let ptx = super::kernel_set().compile_only((9, 0)).unwrap();
        let ptx = String::from_utf8_lossy(&ptx);
        for name in super::KERNELS {
            assert!(ptx.contains(&format!(".entry {name}")), "{name} missing");
        }
    }
}
