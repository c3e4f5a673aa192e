//! What runs at one link: nothing (the baseline) or a plugin codec, on the host path or, on a
//! GPU, the plugin's device path.

use std::borrow::Cow;
use std::time::Instant;

use candle_core::Tensor;
use splitbench_plugin_api::{Codec, CodecHandle, TensorView};

use super::bytes::{count_nonfinite, host_bytes, plugin_dtype};
use super::device::{DeviceLink, PinnedStaging};
use super::error::LinkError;
use super::traffic::{add_error, LinkTraffic};
use crate::config::NonFinitePolicy;
use crate::plan::Link;

/// What runs at one link.
pub enum LinkCodec {
    /// The prototype's baseline: nothing moves, bytes = elements × dtype size.
    None,
    Plugin {
        handle: CodecHandle,
        label: String,
        nonfinite: NonFinitePolicy,
        /// The plugin's device path, when the model is on a GPU and the plugin has one.
        device: Option<Box<DeviceLink>>,
        /// The host path's pinned buffer for hidden states that live on a GPU.
        staging: PinnedStaging,
    },
}

impl LinkCodec {
    pub fn label(&self) -> &str {
        match self {
            LinkCodec::None => "none",
            LinkCodec::Plugin { label, .. } => label,
        }
    }

    /// Where this link's codec runs: `none` (nothing to run), `host` or `device`.
    pub fn path(&self) -> &'static str {
        match self {
            LinkCodec::None => "none",
            LinkCodec::Plugin {
                device: Some(_), ..
            } => "device",
            LinkCodec::Plugin { .. } => "host",
        }
    }

    /// Sends `h` across `link`: returns what the receiving node gets.
    pub fn transmit(
        &mut self,
        h: &Tensor,
        link: &Link,
        traffic: &mut LinkTraffic,
    ) -> Result<Tensor, LinkError> {
        let dims = h.dims().to_vec();
        let elements = h.elem_count();
        let raw = (elements * h.dtype().size_in_bytes()) as u64;
        let tokens = dims.iter().rev().skip(1).product::<usize>() as u64;
        traffic.transmissions += 1;
        traffic.tokens_processed += tokens;
        traffic.elements += elements as u64;
        traffic.raw_bytes += raw;
        let tensor_err = |source| LinkError::Tensor {
            link: link.name.clone(),
            source,
        };
        let (handle, label, nonfinite, device, staging) = match self {
            LinkCodec::None => {
                // Nothing is decoded, so nothing is lost; the signal is not read back either.
                traffic.bytes += raw;
                return Ok(h.clone());
            }
            LinkCodec::Plugin {
                handle,
                label,
                nonfinite,
                device,
                staging,
            } => (handle, label, *nonfinite, device, staging),
        };
        let device_err = |source| LinkError::Device {
            codec: label.clone(),
            link: link.name.clone(),
            source: Box::new(source),
        };
        // A node on the CPU in a plan whose other nodes are on GPUs sends through the host path.
        if let (Some(device), true) = (device.as_mut(), h.device().is_cuda()) {
            let (out, appeared, had) = device
                .transmit_counted(h, handle, traffic)
                .map_err(device_err)?;
            check_nonfinite(nonfinite, appeared, || had, label, link)?;
            return Ok(out);
        }
        let codec_err = |stage, message: String| LinkError::Codec {
            codec: label.clone(),
            link: link.name.clone(),
            stage,
            message,
        };
        let dtype = plugin_dtype(h.dtype()).map_err(|e| codec_err("encode", e.to_string()))?;
        let start = Instant::now();
        let contiguous;
        let bytes: Cow<[u8]> = if h.device().is_cuda() {
            contiguous = h.contiguous().map_err(tensor_err)?;
            Cow::Borrowed(staging.stage(&contiguous).map_err(device_err)?)
        } else {
            Cow::Owned(host_bytes(h).map_err(tensor_err)?)
        };
        traffic.transfer_s += start.elapsed().as_secs_f64();
        let view = TensorView::new(dtype, &dims, &bytes).map_err(|e| codec_err("encode", e.0))?;
        let start = Instant::now();
        let wire = handle.encode(&view).map_err(|e| codec_err("encode", e.0))?;
        traffic.encode_s += start.elapsed().as_secs_f64();
        traffic.bytes += wire.len() as u64;
        let start = Instant::now();
        let decoded = handle
            .decode(&wire, &dims, dtype)
            .map_err(|e| codec_err("decode", e.0))?;
        traffic.decode_s += start.elapsed().as_secs_f64();
        if decoded.len() != bytes.len() {
            return Err(LinkError::WrongLength {
                codec: label.clone(),
                link: link.name.clone(),
                got: decoded.len(),
                expected: bytes.len(),
            });
        }
        let appeared = count_nonfinite(&decoded, h.dtype());
        traffic.nonfinite_decoded += appeared;
        check_nonfinite(
            nonfinite,
            appeared,
            || count_nonfinite(&bytes, h.dtype()),
            label,
            link,
        )?;
        add_error(traffic, &bytes, &decoded, dtype);
        let start = Instant::now();
        let out =
            Tensor::from_raw_buffer(&decoded, h.dtype(), &dims, h.device()).map_err(tensor_err)?;
        traffic.transfer_s += start.elapsed().as_secs_f64();
        Ok(out)
    }
}

/// Under `fail`, an error when a decoded state holds more NaN/Inf (`appeared`) than the state
/// that was sent (`had`, counted only then).
fn check_nonfinite(
    policy: NonFinitePolicy,
    appeared: u64,
    had: impl FnOnce() -> u64,
    codec: &str,
    link: &Link,
) -> Result<(), LinkError> {
    if policy == NonFinitePolicy::Fail && appeared > 0 {
        let had = had();
        if appeared > had {
            return Err(LinkError::NonFinite {
                codec: codec.to_string(),
                link: link.name.clone(),
                count: appeared - had,
            });
        }
    }
    Ok(())
}
