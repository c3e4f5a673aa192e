//! candle's CUDA memory as raw device pointers on candle's stream: what kernels compiled with
//! NVRTC (the fused attention here, the device codecs at the links) launch on.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream as CuStream, DevicePtr};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{DType, Device, Storage, Tensor};
use splitbench_plugin_api::cuda::CudaStream;

use super::attention_kernel::{self, AttentionArgs, AttentionShape};
use super::ModelError;

fn err(message: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(message.into())
}

/// The handles a kernel launches on: candle's context and stream for `dev`.
pub fn lent_stream(dev: &CudaDevice) -> candle_core::Result<CudaStream> {
    let stream = dev.cuda_stream();
    let context = stream.context();
    let (major, minor) = context
        .compute_capability()
        .map_err(|e| err(format!("{e:?}")))?;
    Ok(CudaStream {
        context: context.cu_ctx() as u64,
        stream: stream.cu_stream() as u64,
        device_ordinal: context.ordinal() as i32,
        compute_capability: (major, minor),
    })
}

/// Device address of a contiguous CUDA tensor's first element. Valid while `t` lives; work
/// queued on candle's stream before `t` is dropped sees it.
pub fn tensor_ptr(t: &Tensor, stream: &Arc<CuStream>) -> candle_core::Result<u64> {
    fn at<
        T: candle_core::cuda_backend::CudaDType
            + candle_core::cuda_backend::cudarc::driver::DeviceRepr,
    >(
        storage: &CudaStorage,
        offset: usize,
        stream: &Arc<CuStream>,
    ) -> candle_core::Result<u64> {
        let (base, _sync) = storage.as_cuda_slice::<T>()?.device_ptr(stream);
        Ok(base + (offset * std::mem::size_of::<T>()) as u64)
    }
    if !t.is_contiguous() {
        return Err(err("a kernel operand is not contiguous"));
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(storage) = &*storage else {
        return Err(err("a kernel operand is not in CUDA memory"));
    };
    let offset = layout.start_offset();
    match t.dtype() {
        DType::F32 => at::<f32>(storage, offset, stream),
        DType::F16 => at::<half::f16>(storage, offset, stream),
        DType::BF16 => at::<half::bf16>(storage, offset, stream),
        DType::U32 => at::<u32>(storage, offset, stream),
        other => Err(err(format!("no kernel takes {other:?} operands"))),
    }
}

/// A fresh, unwritten tensor of `dims` in `dtype` on `dev`, and its device address. Whoever
/// launches on it must write every element before anything reads it.
pub fn alloc_tensor(
    dev: &CudaDevice,
    dtype: DType,
    dims: &[usize],
    stream: &Arc<CuStream>,
) -> candle_core::Result<(Tensor, u64)> {
    fn alloc<
        T: candle_core::cuda_backend::CudaDType
            + candle_core::cuda_backend::cudarc::driver::DeviceRepr,
    >(
        dev: &CudaDevice,
        n: usize,
        stream: &Arc<CuStream>,
    ) -> candle_core::Result<(CudaStorage, u64)> {
        // SAFETY: the caller's kernel writes every element before anything reads the tensor.
        let slice: CudaSlice<T> = unsafe { dev.alloc::<T>(n.max(1))? };
        let ptr = slice.device_ptr(stream).0;
        Ok((CudaStorage::wrap_cuda_slice(slice, dev.clone()), ptr))
    }
    let n = dims.iter().product();
    let (storage, ptr) = match dtype {
        DType::F32 => alloc::<f32>(dev, n, stream)?,
        DType::F16 => alloc::<half::f16>(dev, n, stream)?,
        DType::BF16 => alloc::<half::bf16>(dev, n, stream)?,
        other => return Err(err(format!("no kernel writes {other:?}"))),
    };
    let tensor = Tensor::from_storage(Storage::Cuda(storage), dims, BackpropOp::none(), false);
    Ok((tensor, ptr))
}

/// Causal attention by the fused kernel for q `[b, heads, t, d]` and k, v `[b, kv_heads, t, d]`
/// (contiguous, on a GPU), with `lengths` the rows' lengths as u32 on the same device: the
/// output `[b, t, heads, d]` in q's dtype. None where the kernel does not apply (not on a GPU,
/// a head dimension it does not take): candle's ops run instead.
pub fn fused_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    lengths: &Tensor,
    window: Option<usize>,
    scale: f64,
) -> Result<Option<Tensor>, ModelError> {
    let Device::Cuda(dev) = q.device() else {
        return Ok(None);
    };
    let (batch, heads, t, head_dim) = q.dims4()?;
    let shape = AttentionShape {
        batch,
        heads,
        kv_heads: k.dim(1)?,
        t,
        head_dim,
    };
    let dtype = match q.dtype() {
        DType::F32 => splitbench_plugin_api::DType::F32,
        DType::F16 => splitbench_plugin_api::DType::F16,
        DType::BF16 => splitbench_plugin_api::DType::BF16,
        _ => return Ok(None),
    };
    if !shape.fits_kernel() {
        return Ok(None);
    }
    let stream = dev.cuda_stream();
    let (out, out_ptr) = alloc_tensor(dev, q.dtype(), &[batch, t, heads, head_dim], &stream)?;
    let window = match window {
        Some(w) => u32::try_from(w).map_err(|_| err("the sliding window exceeds u32"))?,
        None => 0,
    };
    let args = AttentionArgs {
        q: tensor_ptr(q, &stream)?,
        k: tensor_ptr(k, &stream)?,
        v: tensor_ptr(v, &stream)?,
        out: out_ptr,
        lengths: tensor_ptr(lengths, &stream)?,
        dtype,
        shape,
        window,
        scale: scale as f32,
    };
    attention_kernel::launch(&lent_stream(dev)?, &args)
        .map_err(|e| ModelError::Invalid(format!("the attention kernel failed: {}", e.0)))?;
    Ok(Some(out))
}
