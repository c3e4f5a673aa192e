//! The blockwise intN format of [`crate::quant`] on the device, for codec families that build
//! on it: add [`SOURCE`] to your [`KernelSet`]'s sources and call [`encode`] / [`decode`].

use crate::cuda::{as_u32, CudaStream, KernelArg, KernelSet, LaunchConfig, RowArgs};
use crate::device::DeviceTensor;
use crate::quant::{blocks_wire_len, BlockParams};
use crate::{wire, CodecError};

/// The kernels' CUDA C (`sb_block_scales`, `sb_block_pack`, `sb_block_decode`).
pub const SOURCE: &str = include_str!("quant.cu");

/// The kernel names in [`SOURCE`], to list in a [`KernelSet`].
pub const KERNELS: [&str; 3] = ["sb_block_scales", "sb_block_pack", "sb_block_decode"];

/// Which blockwise variant: [`BlockParams`] and whether min/max (asymmetric) scales are used.
#[derive(Debug, Clone, Copy)]
pub struct Blockwise {
    pub params: BlockParams,
    pub asymmetric: bool,
}

/// Values that are quantized as 0 (they travel another way): |v| above `above`, or channels
/// whose bit is set in the device bitmask at `channel_mask` (one u32 per 32 channels; 0 for
/// none).
#[derive(Debug, Clone, Copy)]
pub struct Zeroed {
    pub above: f32,
    pub channel_mask: u64,
}

impl Zeroed {
    pub const NONE: Zeroed = Zeroed {
        above: f32::INFINITY,
        channel_mask: 0,
    };
}

/// Encodes `input` (rows of `hidden`) into the blockwise format at device address `wire`,
/// launching on `cuda.stream`; `flag` (a device u32 the caller zeroed) gets bit 0 set if the
/// input holds NaN/Inf. Returns the format's length.
pub fn encode(
    kernels: &mut KernelSet,
    cuda: &CudaStream,
    input: &DeviceTensor<'_>,
    format: Blockwise,
    zeroed: Zeroed,
    wire: u64,
    flag: u64,
) -> Result<usize, CodecError> {
    let Blockwise { params, asymmetric } = format;
    let (rows, hidden) = input.rows_and_hidden()?;
    let len = blocks_wire_len(rows, hidden, params, asymmetric);
    if rows * hidden == 0 {
        return Ok(len);
    }
    let tensor = RowArgs::new(input.ptr, input.dtype, rows, hidden)?;
    let (block, bits, asym) = (as_u32(params.block)?, params.bits, i32::from(asymmetric));
    let shared = [
        KernelArg::of(&block),
        KernelArg::of(&bits),
        KernelArg::of(&asym),
        KernelArg::of(&zeroed.above),
        KernelArg::of(&zeroed.channel_mask),
        KernelArg::of(&wire),
    ];
    let blocks = rows * hidden.div_ceil(params.block);
    kernels.launch(
        cuda,
        "sb_block_scales",
        LaunchConfig::warp_per_row(blocks)?,
        &tensor.with(&[&shared[..], &[KernelArg::of(&flag)]].concat()),
    )?;
    let packed_len = wire::packed_len(rows * hidden, params.bits) as u64;
    kernels.launch(
        cuda,
        "sb_block_pack",
        LaunchConfig::thread_per_element(packed_len as usize)?,
        &tensor.with(&[&shared[..], &[KernelArg::of(&packed_len)]].concat()),
    )?;
    Ok(len)
}

/// Decodes the blockwise format at device address `wire` into all of `output`.
pub fn decode(
    kernels: &mut KernelSet,
    cuda: &CudaStream,
    wire: u64,
    format: Blockwise,
    output: &DeviceTensor<'_>,
) -> Result<(), CodecError> {
    let Blockwise { params, asymmetric } = format;
    let (rows, hidden) = output.rows_and_hidden()?;
    if rows * hidden == 0 {
        return Ok(());
    }
    let tensor = RowArgs::new(output.ptr, output.dtype, rows, hidden)?;
    let (block, bits, asym) = (as_u32(params.block)?, params.bits, i32::from(asymmetric));
    kernels.launch(
        cuda,
        "sb_block_decode",
        LaunchConfig::thread_per_element(rows * hidden)?,
        &tensor.with(&[
            KernelArg::of(&block),
            KernelArg::of(&bits),
            KernelArg::of(&asym),
            KernelArg::of(&wire),
        ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_compile_with_nvrtc() {
        let kernels = KernelSet::new("quant.cu", &[SOURCE], &KERNELS);
        crate::testkit::assert_kernels_compile(&kernels, &KERNELS);
    }
}
