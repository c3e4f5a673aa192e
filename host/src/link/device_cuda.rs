//! Links on a GPU. The device path hands the plugin's device codec raw pointers into candle's
//! CUDA memory on candle's own stream, so hidden state, wire and decoded state never leave the
//! GPU; only the wire's length crosses back. The host path stages the hidden state through one
//! reused pinned buffer: one device→host copy, the codec in host memory, one host→device copy.

use std::sync::Arc;
use std::time::Instant;

use candle_core::backend::BackendDevice;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream as CuStream, DevicePtr};
use candle_core::cuda_backend::CudaDevice;
use candle_core::{Device, Tensor};
use splitbench_plugin_api::cuda::CudaStream;
use splitbench_plugin_api::device::{DeviceBuffer, DeviceTensor};
use splitbench_plugin_api::{Codec, CodecHandle, DeviceCodecHandle, TensorView};

use super::bytes::{host_bytes, plugin_dtype, UnsupportedDtype};
use super::error_stats::reconstruction_error;
use super::traffic::LinkTraffic;
use crate::model::gpu::{alloc_tensor, lent_stream, tensor_ptr};

/// This build has a device path.
pub const BUILT_WITH_CUDA: bool = true;

#[derive(Debug, thiserror::Error)]
pub enum DeviceLinkError {
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Dtype(#[from] UnsupportedDtype),
    #[error("CUDA: {0}")]
    Driver(String),
    #[error("the device codec failed to {stage}: {message}")]
    Codec {
        stage: &'static str,
        message: String,
    },
}

fn cuda_device(h: &Tensor) -> Result<&CudaDevice, DeviceLinkError> {
    match h.device() {
        Device::Cuda(d) => Ok(d),
        other => Err(DeviceLinkError::Driver(format!(
            "the hidden state is on {other:?}, not a CUDA device"
        ))),
    }
}

/// What one device-path transmission did.
pub struct DeviceSent {
    pub decoded: Tensor,
    pub wire_len: usize,
    pub encode_s: f64,
    pub decode_s: f64,
    /// With `--verify-wire`: whether the host path wrote the same wire, and the largest
    /// difference between the device's decoded state and the host path's decode of the same
    /// wire.
    pub verify: Option<WireCheck>,
}

#[derive(Debug, Clone, Copy)]
pub struct WireCheck {
    pub wire_matches: bool,
    pub decode_max_diff: f64,
}

/// A link's device codec, the wire buffer it reuses, and whether its wires are verified.
pub struct DeviceLink {
    codec: DeviceCodecHandle,
    verify_wire: bool,
    wire: Option<CudaSlice<u8>>,
    /// The handles lent to the codec, looked up on the first call.
    cuda: Option<CudaStream>,
}

impl DeviceLink {
    /// A link on the device path through `codec`; `verify_wire` checks every wire against the
    /// host path.
    pub fn wrap(codec: DeviceCodecHandle, verify_wire: bool) -> Option<Box<DeviceLink>> {
        Some(Box::new(DeviceLink {
            codec,
            verify_wire,
            wire: None,
            cuda: None,
        }))
    }

    /// [`DeviceLink::transmit`], counted into `traffic`: the wire never leaves the GPU; error
    /// statistics are reduced there too. Returns the decoded state and its NaN/Inf count
    /// beside the sent state's.
    pub fn transmit_counted(
        &mut self,
        h: &Tensor,
        host: &mut CodecHandle,
        traffic: &mut LinkTraffic,
    ) -> Result<(Tensor, u64, u64), DeviceLinkError> {
        let sent = self.transmit(h, host)?;
        traffic.bytes += sent.wire_len as u64;
        traffic.encode_s += sent.encode_s;
        traffic.decode_s += sent.decode_s;
        let [signal, noise, max_abs, appeared, had] = reconstruction_error(h, &sent.decoded)?;
        traffic.nonfinite_decoded += appeared as u64;
        traffic.signal_sq += signal;
        traffic.noise_sq += noise;
        traffic.max_abs_error = traffic.max_abs_error.max(max_abs);
        if let Some(check) = sent.verify {
            traffic.wire_checks += 1;
            traffic.wire_mismatches += u64::from(!check.wire_matches);
            traffic.verify_max_decode_diff =
                traffic.verify_max_decode_diff.max(check.decode_max_diff);
        }
        Ok((sent.decoded, appeared as u64, had as u64))
    }

    /// Encodes and decodes `h` on its GPU; with `verify_wire`, checks the wire against `host`,
    /// the link's host-path codec. Synchronizes around each half so that the times are the
    /// codec's own, not the queued layers'.
    fn transmit(
        &mut self,
        h: &Tensor,
        host: &mut CodecHandle,
    ) -> Result<DeviceSent, DeviceLinkError> {
        let dev = cuda_device(h)?;
        let h = h.contiguous()?;
        let dims = h.dims().to_vec();
        let dtype = plugin_dtype(h.dtype())?;
        let stream = dev.cuda_stream();
        let cuda = match self.cuda {
            Some(cuda) => cuda,
            None => *self.cuda.insert(lent_stream(dev)?),
        };
        let codec_err = |stage| {
            move |e: splitbench_plugin_api::CodecError| DeviceLinkError::Codec {
                stage,
                message: e.0,
            }
        };
        let capacity = self
            .codec
            .max_wire_len(&dims, dtype)
            .map_err(codec_err("size its wire"))?;
        if self.wire.as_ref().is_none_or(|w| w.len() < capacity) {
            self.wire = Some(dev.alloc_zeros::<u8>(capacity.max(1))?);
        }
        let wire = self
            .wire
            .as_ref()
            .ok_or_else(|| DeviceLinkError::Driver("no wire".into()))?;
        let wire_ptr = wire.device_ptr(&stream).0;
        let input = DeviceTensor {
            dtype,
            shape: &dims,
            ptr: tensor_ptr(&h, &stream)?,
        };
        let (decoded, out_ptr) = alloc_tensor(dev, h.dtype(), &dims, &stream)?;
        let output = DeviceTensor {
            dtype,
            shape: &dims,
            ptr: out_ptr,
        };

        dev.synchronize()?;
        let start = Instant::now();
        let wire_len = self
            .codec
            .encode(
                &cuda,
                &input,
                DeviceBuffer {
                    ptr: wire_ptr,
                    len: 0,
                    capacity,
                },
            )
            .map_err(codec_err("encode"))?;
        dev.synchronize()?;
        let encode_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        self.codec
            .decode(
                &cuda,
                DeviceBuffer {
                    ptr: wire_ptr,
                    len: wire_len,
                    capacity,
                },
                &output,
            )
            .map_err(codec_err("decode"))?;
        dev.synchronize()?;
        let decode_s = start.elapsed().as_secs_f64();

        let verify = match self.verify_wire {
            true => Some(verify_wire(
                &cuda, &h, &decoded, wire, wire_len, host, &stream,
            )?),
            false => None,
        };
        Ok(DeviceSent {
            decoded,
            wire_len,
            encode_s,
            decode_s,
            verify,
        })
    }
}

/// Host-path encode of the same input and host-path decode of the device's wire, compared
/// with what the device wrote.
fn verify_wire(
    cuda: &CudaStream,
    h: &Tensor,
    decoded: &Tensor,
    wire: &CudaSlice<u8>,
    wire_len: usize,
    host: &mut CodecHandle,
    stream: &Arc<CuStream>,
) -> Result<WireCheck, DeviceLinkError> {
    let dims = h.dims().to_vec();
    let dtype = plugin_dtype(h.dtype())?;
    // Read in stream order and waited for, like every read-back of the host path.
    let mut device_wire = vec![0u8; wire_len];
    cuda.read_bytes(wire.device_ptr(stream).0, &mut device_wire)
        .map_err(|e| DeviceLinkError::Driver(e.0))?;
    let sent = host_bytes(h)?;
    let view = TensorView::new(dtype, &dims, &sent).map_err(|e| DeviceLinkError::Codec {
        stage: "verify",
        message: e.0,
    })?;
    let host_err = |stage| {
        move |e: splitbench_plugin_api::CodecError| DeviceLinkError::Codec {
            stage,
            message: format!("(host path) {}", e.0),
        }
    };
    let host_wire = host.encode(&view).map_err(host_err("encode"))?;
    let host_decoded = host
        .decode(&device_wire, &dims, dtype)
        .map_err(host_err("decode"))?;
    let device_decoded = host_bytes(decoded)?;
    let a = splitbench_plugin_api::convert::bytes_to_f32(&host_decoded, dtype);
    let b = splitbench_plugin_api::convert::bytes_to_f32(&device_decoded, dtype);
    let decode_max_diff = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| {
            if x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()) {
                0.0
            } else {
                f64::from((x - y).abs()).max(if (x - y).is_nan() { f64::INFINITY } else { 0.0 })
            }
        })
        .fold(0.0, f64::max);
    Ok(WireCheck {
        wire_matches: host_wire == device_wire,
        decode_max_diff,
    })
}

/// The host path's staging buffer: the hidden state's bytes in page-locked host memory,
/// copied on candle's stream and waited for before they are read (plugin-api's
/// [`splitbench_plugin_api::cuda::PinnedStaging`], which the CUDA emulator tests).
#[derive(Default)]
pub struct PinnedStaging {
    buffer: splitbench_plugin_api::cuda::PinnedStaging,
}

impl PinnedStaging {
    /// Copies contiguous `h` into the pinned buffer and returns its bytes once the copy has
    /// landed.
    pub fn stage(&mut self, h: &Tensor) -> Result<&[u8], DeviceLinkError> {
        let dev = cuda_device(h)?;
        let stream = dev.cuda_stream();
        let src = tensor_ptr(h, &stream)?;
        let len = h.elem_count() * h.dtype().size_in_bytes();
        self.buffer
            .copy_from_device(&lent_stream(dev)?, src, len)
            .map_err(|e| DeviceLinkError::Driver(e.0))
    }
}
