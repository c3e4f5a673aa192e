//! The device path of a build without CUDA: there is none. The types exist so that callers
//! need no `cfg`; a [`DeviceLink`] can never be made, and no hidden state is ever on a GPU.

use candle_core::Tensor;
use splitbench_plugin_api::{CodecHandle, DeviceCodecHandle};

use super::traffic::LinkTraffic;

/// This build has no device path.
pub const BUILT_WITH_CUDA: bool = false;

#[derive(Debug, thiserror::Error)]
pub enum DeviceLinkError {
    #[error("this splitbench was built without CUDA, so it has no device path")]
    NoCuda,
}

/// A link on the device path: no value exists without CUDA.
pub enum DeviceLink {}

impl DeviceLink {
    /// Without CUDA no link gets a device path.
    pub fn wrap(_codec: DeviceCodecHandle, _verify_wire: bool) -> Option<Box<DeviceLink>> {
        None
    }

    pub fn transmit_counted(
        &mut self,
        _h: &Tensor,
        _host: &mut CodecHandle,
        _traffic: &mut LinkTraffic,
    ) -> Result<(Tensor, u64, u64), DeviceLinkError> {
        match *self {}
    }
}

/// The host path's staging buffer for hidden states on a GPU; without CUDA there are none.
#[derive(Default)]
pub struct PinnedStaging {}

impl PinnedStaging {
    pub fn stage(&mut self, _h: &Tensor) -> Result<&[u8], DeviceLinkError> {
        Err(DeviceLinkError::NoCuda)
    }
}
