//! candle's CUDA memory as raw device pointers on candle's stream: what kernels compiled with
//! NVRTC (the fused attention and elementwise steps here, the device codecs at the links)
//! launch on.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream as CuStream, DevicePtr};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{DType, Device, Storage, Tensor};
use splitbench_plugin_api::cuda::CudaStream;

use super::attention_kernel::{self, AttentionArgs, AttentionShape};
use super::elementwise_kernel::{self, NormArgs, RopeArgs};
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
    let Some(dtype) = kernel_dtype(q.dtype()) else {
        return Ok(None);
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

/// The dtype as the kernels number it; None for dtypes they do not take.
fn kernel_dtype(dtype: DType) -> Option<splitbench_plugin_api::DType> {
    match dtype {
        DType::F32 => Some(splitbench_plugin_api::DType::F32),
        DType::F16 => Some(splitbench_plugin_api::DType::F16),
        DType::BF16 => Some(splitbench_plugin_api::DType::BF16),
        _ => None,
    }
}

/// The CUDA device and kernel dtype where every operand is contiguous, on that GPU and in one
/// dtype the kernels take; None where candle's ops must run instead.
fn kernel_operands<'a>(
    operands: &[&'a Tensor],
) -> Option<(&'a CudaDevice, splitbench_plugin_api::DType)> {
    let first = operands.first()?;
    let Device::Cuda(dev) = first.device() else {
        return None;
    };
    let same = operands.iter().all(|t| {
        t.is_contiguous() && t.dtype() == first.dtype() && t.device().same_device(first.device())
    });
    same.then_some(())?;
    Some((dev, kernel_dtype(first.dtype())?))
}

fn kernel_failed(what: &str, e: splitbench_plugin_api::CodecError) -> candle_core::Error {
    err(format!("the {what} kernel failed: {}", e.0))
}

/// `x / rms(x) · weight` over the last dimension by the fused kernel; with `residual`, first
/// `sum = x + residual` (rounded to the dtype), then the sum's norm: `(sum, normed)`. None
/// where the kernel does not apply.
fn rms_norm_kernel(
    x: &Tensor,
    residual: Option<&Tensor>,
    weight: &Tensor,
    eps: f32,
) -> candle_core::Result<Option<(Option<Tensor>, Tensor)>> {
    let Some((dev, dtype)) = kernel_operands(&[x, residual.unwrap_or(x), weight]) else {
        return Ok(None);
    };
    let dim = weight.elem_count();
    if x.dims() != residual.unwrap_or(x).dims() || x.dim(candle_core::D::Minus1)? != dim {
        return Ok(None);
    }
    let stream = dev.cuda_stream();
    let (out, out_ptr) = alloc_tensor(dev, x.dtype(), x.dims(), &stream)?;
    let (sum, residual) = match residual {
        Some(r) => {
            let (sum, sum_ptr) = alloc_tensor(dev, x.dtype(), x.dims(), &stream)?;
            (Some(sum), Some((tensor_ptr(r, &stream)?, sum_ptr)))
        }
        None => (None, None),
    };
    let args = NormArgs {
        x: tensor_ptr(x, &stream)?,
        residual,
        weight: tensor_ptr(weight, &stream)?,
        out: out_ptr,
        dtype,
        rows: x.elem_count() / dim.max(1),
        dim,
        eps,
    };
    elementwise_kernel::add_rms_norm(&lent_stream(dev)?, &args)
        .map_err(|e| kernel_failed("RMSNorm", e))?;
    Ok(Some((sum, out)))
}

/// RMSNorm of the last dimension by the fused kernel; None where it does not apply.
pub fn fused_rms_norm(
    x: &Tensor,
    weight: &Tensor,
    eps: f32,
) -> candle_core::Result<Option<Tensor>> {
    Ok(rms_norm_kernel(x, None, weight, eps)?.map(|(_, out)| out))
}

/// `(x + residual, rms_norm(x + residual))` in one kernel; None where it does not apply.
pub fn fused_add_rms_norm(
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    eps: f32,
) -> candle_core::Result<Option<(Tensor, Tensor)>> {
    Ok(match rms_norm_kernel(x, Some(residual), weight, eps)? {
        Some((Some(sum), out)) => Some((sum, out)),
        _ => None,
    })
}

/// x `[b, t, heads, d]` to `[b, heads, t, d]` with its first `rotary_dim` dimensions per head
/// rotated by `cos`, `sin` `[t, rotary_dim / 2]` (in x's dtype), in one kernel; None where it
/// does not apply.
pub fn fused_rope_heads_first(
    x: &Tensor,
    (cos, sin): (&Tensor, &Tensor),
    rotary_dim: usize,
    interleaved: bool,
) -> candle_core::Result<Option<Tensor>> {
    let Some((dev, dtype)) = kernel_operands(&[x, cos, sin]) else {
        return Ok(None);
    };
    let (batch, t, heads, head_dim) = x.dims4()?;
    if cos.dims() != [t, rotary_dim / 2] || sin.dims() != cos.dims() {
        return Ok(None);
    }
    let stream = dev.cuda_stream();
    let (out, out_ptr) = alloc_tensor(dev, x.dtype(), &[batch, heads, t, head_dim], &stream)?;
    let args = RopeArgs {
        x: tensor_ptr(x, &stream)?,
        cos: tensor_ptr(cos, &stream)?,
        sin: tensor_ptr(sin, &stream)?,
        out: out_ptr,
        dtype,
        batch,
        t,
        heads,
        head_dim,
        rotary_dim,
        interleaved,
    };
    elementwise_kernel::rope_heads_first(&lent_stream(dev)?, &args)
        .map_err(|e| kernel_failed("RoPE", e))?;
    Ok(Some(out))
}

/// `silu(gate) · up` in one kernel; None where it does not apply.
pub fn fused_silu_mul(gate: &Tensor, up: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let Some((dev, dtype)) = kernel_operands(&[gate, up]) else {
        return Ok(None);
    };
    if gate.dims() != up.dims() {
        return Ok(None);
    }
    let stream = dev.cuda_stream();
    let (out, out_ptr) = alloc_tensor(dev, gate.dtype(), gate.dims(), &stream)?;
    let operands = (
        tensor_ptr(gate, &stream)?,
        tensor_ptr(up, &stream)?,
        out_ptr,
    );
    elementwise_kernel::silu_mul(&lent_stream(dev)?, operands, dtype, gate.elem_count())
        .map_err(|e| kernel_failed("SiLU · up", e))?;
    Ok(Some(out))
}
