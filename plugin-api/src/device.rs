//! The author-facing side of device codecs: encode and decode in GPU memory.
//!
//! A codec family offers a device path by implementing [`DeviceCodec`] next to its [`Codec`]
//! and passing a third function to [`export_plugin!`](crate::export_plugin). The device path
//! must write the same wire bytes as the host path for the same input; `splitbench run
//! --verify-wire` checks that on a GPU. Kernels come from [`crate::cuda::KernelSet`].

use crate::cuda::CudaStream;
use crate::{CodecError, DType};

/// A contiguous `[batch, tokens, hidden]` tensor in device memory.
#[derive(Debug, Clone, Copy)]
pub struct DeviceTensor<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    /// `CUdeviceptr` of the first element.
    pub ptr: u64,
}

impl DeviceTensor<'_> {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `(rows, hidden)`: tokens over the whole batch, and values per token.
    pub fn rows_and_hidden(&self) -> Result<(usize, usize), CodecError> {
        crate::wire::rows_and_hidden(self.shape)
    }
}

/// Device bytes: `len` valid, room for `capacity`.
#[derive(Debug, Clone, Copy)]
pub struct DeviceBuffer {
    pub ptr: u64,
    pub len: usize,
    pub capacity: usize,
}

/// A codec that runs on the GPU. One instance per link, called from one thread at a time.
pub trait DeviceCodec: Send + Sync {
    /// The largest wire [`encode`](Self::encode) writes for a tensor of this shape and dtype.
    fn max_wire_len(&self, shape: &[usize], dtype: DType) -> Result<usize, CodecError>;

    /// Encodes `input` into `wire` (capacity from `max_wire_len`) with kernels on
    /// `cuda.stream`; returns the wire's length in bytes.
    fn encode(
        &mut self,
        cuda: &CudaStream,
        input: &DeviceTensor<'_>,
        wire: DeviceBuffer,
    ) -> Result<usize, CodecError>;

    /// Decodes `wire` into `output` (shape and dtype set by the host).
    fn decode(
        &mut self,
        cuda: &CudaStream,
        wire: DeviceBuffer,
        output: &DeviceTensor<'_>,
    ) -> Result<(), CodecError>;
}

/// A plugin's device codec constructor: `(codec_name, params_json)`; `Ok(None)` when that
/// codec (or that parameter choice) has no device path.
pub type DeviceCodecFactory = fn(&str, &str) -> Result<Option<Box<dyn DeviceCodec>>, CodecError>;

/// Where a codec may keep scratch data in its wire buffer: after the longest payload it can
/// write, aligned for any element type. Add the scratch size to `max_wire_len`.
pub fn scratch_offset(payload_max: usize) -> usize {
    payload_max.next_multiple_of(256)
}

/// A u32 in device memory (in the codec's scratch) that kernels set when the input holds
/// NaN/Inf, as `sb_row_absmax` does.
pub struct NonFiniteFlag(u64);

impl NonFiniteFlag {
    /// Scratch bytes the flag takes: add them to `max_wire_len`.
    pub const LEN: usize = 4;

    /// Zeroes the flag at `ptr`, in stream order.
    pub fn zeroed(cuda: &CudaStream, ptr: u64) -> Result<NonFiniteFlag, CodecError> {
        cuda.memset(ptr, 0, Self::LEN)?;
        Ok(NonFiniteFlag(ptr))
    }

    /// The device address, for kernel arguments.
    pub fn ptr(&self) -> &u64 {
        &self.0
    }

    /// Waits for the stream and errors with `message` if a kernel set the flag: one small read
    /// per call, after every kernel is launched.
    pub fn check(&self, cuda: &CudaStream, message: &str) -> Result<(), CodecError> {
        let mut bytes = [0u8; Self::LEN];
        cuda.read_bytes(self.0, &mut bytes)?;
        match u32::from_le_bytes(bytes) {
            0 => Ok(()),
            _ => Err(CodecError::new(message)),
        }
    }
}
