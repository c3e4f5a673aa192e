//! The CUDA path: the same wire as the host path. Encoding learns the outlier count from the
//! device (one small read per call) because the wire's layout depends on it; decoding needs
//! no read, since the wire's length fixes where the dense remainder starts.

use splitbench_plugin_api::{
    block_kernels::{self, Blockwise, Zeroed},
    cuda::{as_u32, CudaStream, KernelArg, KernelSet, LaunchConfig, RowArgs},
    device::{scratch_offset, DeviceBuffer, DeviceCodec, DeviceTensor},
    quant::{blocks_wire_len, NON_FINITE},
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

    /// Scratch word 1 (the outlier or channel count), after checking the NaN/Inf flag (word 0).
    fn read_count(cuda: &CudaStream, scratch: u64) -> Result<u32, CodecError> {
        let mut words = [0u8; 8];
        cuda.read_bytes(scratch, &mut words)?;
        if words[..4] != [0; 4] {
            return Err(CodecError::new(NON_FINITE));
        }
        Ok(u32::from_le_bytes([words[4], words[5], words[6], words[7]]))
    }

    /// Exclusive prefix sums of the per-row counts in scratch, and their total in word 1.
    fn scan(&mut self, cuda: &CudaStream, rows: usize, scratch: u64) -> Result<(), CodecError> {
        let (rows, items, total) = (rows as u64, scratch + 8, scratch + 4);
        self.kernels.launch(
            cuda,
            "ol_scan",
            LaunchConfig {
                grid: 1,
                block: 1024,
            },
            &[
                KernelArg::of(&rows),
                KernelArg::of(&items),
                KernelArg::of(&total),
            ],
        )
    }

    fn encode_values(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire_ptr: u64,
        l: &Layout,
    ) -> Result<usize, CodecError> {
        let scratch = wire_ptr + l.scratch_at as u64;
        let tensor = RowArgs::new(input.ptr, input.dtype, l.rows, l.hidden)?;
        let width = count_width(l.hidden) as u32;
        let threshold = self.params.threshold;
        self.kernels.launch(
            cuda,
            "ol_count_rows",
            LaunchConfig::warp_per_row(l.rows)?,
            &tensor.with(&[
                KernelArg::of(&threshold),
                KernelArg::of(&wire_ptr),
                KernelArg::of(&width),
                KernelArg::of(&scratch),
            ]),
        )?;
        self.scan(cuda, l.rows, scratch)?;
        let total = Self::read_count(cuda, scratch)? as usize;
        let pos_off = l.rows * width as usize;
        let val_off = pos_off + wire::packed_len(total, l.index_bits);
        let dense_off = val_off + total * 2;
        cuda.memset(wire_ptr + pos_off as u64, 0, val_off - pos_off)?;
        let (pos_off, val_off) = (pos_off as u64, val_off as u64);
        // Positions first (ORed into zeroed words), then values: never both in one word at once.
        for what in [0i32, 1] {
            self.kernels.launch(
                cuda,
                "ol_scatter",
                LaunchConfig::warp_per_row(l.rows)?,
                &tensor.with(&[
                    KernelArg::of(&threshold),
                    KernelArg::of(&wire_ptr),
                    KernelArg::of(&pos_off),
                    KernelArg::of(&val_off),
                    KernelArg::of(&l.index_bits),
                    KernelArg::of(&scratch),
                    KernelArg::of(&what),
                ]),
            )?;
        }
        let zeroed = Zeroed {
            above: threshold,
            channel_mask: 0,
        };
        self.encode_dense(cuda, input, l, zeroed, wire_ptr, dense_off)
    }

    /// The dense remainder (outliers zeroed) at `dense_off`; returns the whole wire's length.
    fn encode_dense(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        l: &Layout,
        zeroed: Zeroed,
        wire_ptr: u64,
        dense_off: usize,
    ) -> Result<usize, CodecError> {
        let dense_at = wire_ptr + dense_off as u64;
        // The NaN/Inf flag (scratch word 0) was read already; the dense pass may set it again.
        let flag = wire_ptr + l.scratch_at as u64;
        let dense_len = block_kernels::encode(
            &mut self.kernels,
            cuda,
            input,
            l.dense,
            zeroed,
            dense_at,
            flag,
        )?;
        Ok(dense_off + dense_len)
    }

    fn encode_channels(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire_ptr: u64,
        l: &Layout,
    ) -> Result<usize, CodecError> {
        let scratch = wire_ptr + l.scratch_at as u64;
        let tensor = RowArgs::new(input.ptr, input.dtype, l.rows, l.hidden)?;
        let hidden = as_u32(l.hidden)?;
        let threshold = self.params.threshold;
        self.kernels.launch(
            cuda,
            "ol_channel_mask",
            LaunchConfig::thread_per_element(l.hidden)?,
            &tensor.with(&[KernelArg::of(&threshold), KernelArg::of(&scratch)]),
        )?;
        self.kernels.launch(
            cuda,
            "ol_channel_list",
            LaunchConfig {
                grid: 1,
                block: 1024,
            },
            &[KernelArg::of(&hidden), KernelArg::of(&scratch)],
        )?;
        let count = Self::read_count(cuda, scratch)?;
        let packed = wire::packed_len(count as usize, l.index_bits);
        self.kernels.launch(
            cuda,
            "ol_channel_header",
            LaunchConfig::thread_per_element(packed.max(4))?,
            &[
                KernelArg::of(&wire_ptr),
                KernelArg::of(&hidden),
                KernelArg::of(&count),
                KernelArg::of(&l.index_bits),
                KernelArg::of(&scratch),
            ],
        )?;
        let val_off = (4 + packed) as u64;
        self.kernels.launch(
            cuda,
            "ol_channel_values",
            LaunchConfig::thread_per_element(l.rows * count as usize)?,
            &tensor.with(&[
                KernelArg::of(&count),
                KernelArg::of(&wire_ptr),
                KernelArg::of(&val_off),
                KernelArg::of(&scratch),
            ]),
        )?;
        let dense_off = val_off as usize + l.rows * count as usize * 2;
        let zeroed = Zeroed {
            above: f32::INFINITY,
            channel_mask: scratch + 8,
        };
        self.encode_dense(cuda, input, l, zeroed, wire_ptr, dense_off)
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
        // The dense remainder ends the wire, so its start needs no count from the device.
        let dense_at = wire.ptr + (wire.len - l.dense_len) as u64;
        block_kernels::decode(&mut self.kernels, cuda, dense_at, l.dense, output)?;
        let tensor = RowArgs::new(output.ptr, output.dtype, l.rows, l.hidden)?;
        match self.params.mode {
            Mode::Value => {
                let scratch = wire.ptr + l.scratch_at as u64;
                let (rows, width) = (l.rows as u64, count_width(l.hidden) as u32);
                self.kernels.launch(
                    cuda,
                    "ol_read_counts",
                    LaunchConfig::thread_per_element(l.rows)?,
                    &[
                        KernelArg::of(&wire.ptr),
                        KernelArg::of(&rows),
                        KernelArg::of(&width),
                        KernelArg::of(&scratch),
                    ],
                )?;
                self.scan(cuda, l.rows, scratch)?;
                self.kernels.launch(
                    cuda,
                    "ol_decode_values",
                    LaunchConfig::warp_per_row(l.rows)?,
                    &tensor.with(&[
                        KernelArg::of(&wire.ptr),
                        KernelArg::of(&width),
                        KernelArg::of(&l.index_bits),
                        KernelArg::of(&scratch),
                    ]),
                )
            }
            Mode::Channel => self.kernels.launch(
                cuda,
                "ol_channel_decode",
                LaunchConfig::warp_per_row(l.rows)?,
                &tensor.with(&[KernelArg::of(&wire.ptr), KernelArg::of(&l.index_bits)]),
            ),
        }
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
