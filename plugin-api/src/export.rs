//! What `export_plugin!` expands to: every entry point wrapped in `catch_unwind`, because a
//! panic that reaches abi_stable's boundary aborts the whole host process.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RSlice, RStr, RString, RVec},
};

use crate::abi::{
    FfiCodec, FfiCodecBox, FfiCodec_TO, FfiCudaStream, FfiDType, FfiDeviceBuffer, FfiDeviceCodec,
    FfiDeviceCodecBox, FfiDeviceCodec_TO, FfiDeviceTensor, FfiPluginInfo, FfiTensorView,
};
use crate::cuda::CudaStream;
use crate::device::{DeviceBuffer, DeviceCodec, DeviceCodecFactory, DeviceTensor};
use crate::{Codec, CodecError, PluginInfo, TensorView};

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    format!("the plugin panicked: {text}")
}

fn guarded<T>(f: impl FnOnce() -> Result<T, CodecError>) -> RResult<T, RString> {
    // The plugin has its own copy of std and so its own panic hook: silence it, since the
    // panic's message reaches the host inside the error instead of as a backtrace on stderr.
    static QUIET_PANICS: std::sync::Once = std::sync::Once::new();
    QUIET_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e.0.into()),
        Err(payload) => RResult::RErr(panic_message(payload).into()),
    }
}

fn shape_from_ffi(shape: RSlice<'_, u64>) -> Result<Vec<usize>, CodecError> {
    shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| CodecError::new("dimension exceeds usize")))
        .collect()
}

/// Adapts an author's [`Codec`] to the FFI trait object.
struct ExportedCodec(Box<dyn Codec>);

impl FfiCodec for ExportedCodec {
    fn encode(&mut self, input: FfiTensorView<'_>) -> RResult<RVec<u8>, RString> {
        guarded(|| {
            let shape = shape_from_ffi(input.shape)?;
            let view = TensorView::new(input.dtype.into(), &shape, input.bytes.as_slice())?;
            self.0.encode(&view).map(RVec::from)
        })
    }

    fn decode(
        &mut self,
        wire: RSlice<'_, u8>,
        shape: RSlice<'_, u64>,
        dtype: FfiDType,
    ) -> RResult<RVec<u8>, RString> {
        guarded(|| {
            let shape = shape_from_ffi(shape)?;
            self.0
                .decode(wire.as_slice(), &shape, dtype.into())
                .map(RVec::from)
        })
    }
}

/// Adapts an author's [`DeviceCodec`] to the FFI trait object.
struct ExportedDeviceCodec(Box<dyn DeviceCodec>);

fn cuda_from_ffi(cuda: FfiCudaStream) -> CudaStream {
    CudaStream {
        context: cuda.context,
        stream: cuda.stream,
        device_ordinal: cuda.device_ordinal,
        compute_capability: (cuda.compute_major, cuda.compute_minor),
    }
}

fn buffer_from_ffi(buffer: FfiDeviceBuffer) -> Result<DeviceBuffer, CodecError> {
    let size = |v: u64| usize::try_from(v).map_err(|_| CodecError::new("buffer exceeds usize"));
    Ok(DeviceBuffer {
        ptr: buffer.ptr,
        len: size(buffer.len)?,
        capacity: size(buffer.capacity)?,
    })
}

impl FfiDeviceCodec for ExportedDeviceCodec {
    fn max_wire_len(&self, shape: RSlice<'_, u64>, dtype: FfiDType) -> RResult<u64, RString> {
        guarded(|| {
            let shape = shape_from_ffi(shape)?;
            Ok(self.0.max_wire_len(&shape, dtype.into())? as u64)
        })
    }

    fn encode(
        &mut self,
        cuda: FfiCudaStream,
        input: FfiDeviceTensor<'_>,
        wire: FfiDeviceBuffer,
    ) -> RResult<u64, RString> {
        guarded(|| {
            let shape = shape_from_ffi(input.shape)?;
            let input = DeviceTensor {
                dtype: input.dtype.into(),
                shape: &shape,
                ptr: input.ptr,
            };
            let wire = buffer_from_ffi(wire)?;
            let len = self.0.encode(&cuda_from_ffi(cuda), &input, wire)?;
            if len > wire.capacity {
                return Err(CodecError::new(format!(
                    "device encode wrote {len} bytes into a {}-byte wire (max_wire_len is wrong)",
                    wire.capacity
                )));
            }
            Ok(len as u64)
        })
    }

    fn decode(
        &mut self,
        cuda: FfiCudaStream,
        wire: FfiDeviceBuffer,
        output: FfiDeviceTensor<'_>,
    ) -> RResult<(), RString> {
        guarded(|| {
            let shape = shape_from_ffi(output.shape)?;
            let output = DeviceTensor {
                dtype: output.dtype.into(),
                shape: &shape,
                ptr: output.ptr,
            };
            self.0
                .decode(&cuda_from_ffi(cuda), buffer_from_ffi(wire)?, &output)
        })
    }
}

#[doc(hidden)]
pub fn describe(info: fn() -> PluginInfo) -> RResult<FfiPluginInfo, RString> {
    guarded(|| Ok(FfiPluginInfo::from(&info())))
}

/// A plugin's codec constructor: `(codec_name, params_json)`.
pub type CodecFactory = fn(&str, &str) -> Result<Box<dyn Codec>, CodecError>;

#[doc(hidden)]
pub fn new_codec(
    factory: CodecFactory,
    codec: RStr<'_>,
    params_json: RStr<'_>,
) -> RResult<FfiCodecBox, RString> {
    guarded(|| {
        let codec = factory(codec.as_str(), params_json.as_str())?;
        Ok(FfiCodec_TO::from_value(ExportedCodec(codec), TD_Opaque))
    })
}

#[doc(hidden)]
pub fn new_device_codec(
    factory: Option<DeviceCodecFactory>,
    codec: RStr<'_>,
    params_json: RStr<'_>,
) -> RResult<ROption<FfiDeviceCodecBox>, RString> {
    guarded(|| {
        let Some(factory) = factory else {
            return Ok(ROption::RNone);
        };
        Ok(match factory(codec.as_str(), params_json.as_str())? {
            Some(codec) => ROption::RSome(FfiDeviceCodec_TO::from_value(
                ExportedDeviceCodec(codec),
                TD_Opaque,
            )),
            None => ROption::RNone,
        })
    })
}

/// Exports a plugin: `export_plugin!(info_fn, new_codec_fn)`, or
/// `export_plugin!(info_fn, new_codec_fn, new_device_codec_fn)` for a family with a CUDA path.
///
/// `info_fn: fn() -> PluginInfo`; `new_codec_fn: fn(&str, &str) -> Result<Box<dyn Codec>,
/// CodecError>` receives the codec name and its params as JSON; `new_device_codec_fn` is a
/// [`DeviceCodecFactory`](crate::device::DeviceCodecFactory). The plugin crate must depend
/// on `abi_stable` (same version as `splitbench-plugin-api`), because abi_stable's export
/// attribute names it by absolute path.
#[macro_export]
macro_rules! export_plugin {
    ($info:path, $new_codec:path) => {
        $crate::export_plugin!(@root $info, $new_codec, ::core::option::Option::None);
    };
    ($info:path, $new_codec:path, $new_device_codec:path) => {
        $crate::export_plugin!(@root $info, $new_codec, ::core::option::Option::Some(
            $new_device_codec as $crate::device::DeviceCodecFactory
        ));
    };
    (@root $info:path, $new_codec:path, $device_factory:expr) => {
        #[::abi_stable::export_root_module]
        pub fn splitbench_plugin_root_module() -> $crate::abi::PluginModuleRef {
            extern "C" fn __splitbench_describe() -> ::abi_stable::std_types::RResult<
                $crate::abi::FfiPluginInfo,
                ::abi_stable::std_types::RString,
            > {
                $crate::export::describe($info)
            }
            extern "C" fn __splitbench_new_codec(
                codec: ::abi_stable::std_types::RStr<'_>,
                params: ::abi_stable::std_types::RStr<'_>,
            ) -> ::abi_stable::std_types::RResult<
                $crate::abi::FfiCodecBox,
                ::abi_stable::std_types::RString,
            > {
                $crate::export::new_codec($new_codec, codec, params)
            }
            use ::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::abi::PluginModule {
                describe: __splitbench_describe,
                new_codec: __splitbench_new_codec,
            }
            .leak_into_prefix()
        }

        #[no_mangle]
        pub extern "C" fn splitbench_device_module() -> $crate::abi::DeviceModuleRef {
            extern "C" fn __splitbench_new_device_codec(
                codec: ::abi_stable::std_types::RStr<'_>,
                params: ::abi_stable::std_types::RStr<'_>,
            ) -> ::abi_stable::std_types::RResult<
                ::abi_stable::std_types::ROption<$crate::abi::FfiDeviceCodecBox>,
                ::abi_stable::std_types::RString,
            > {
                $crate::export::new_device_codec($device_factory, codec, params)
            }
            static MODULE: ::std::sync::OnceLock<$crate::abi::DeviceModuleRef> =
                ::std::sync::OnceLock::new();
            *MODULE.get_or_init(|| {
                use ::abi_stable::prefix_type::PrefixTypeTrait;
                $crate::abi::DeviceModule {
                    new_device_codec: __splitbench_new_device_codec,
                }
                .leak_into_prefix()
            })
        }

        #[no_mangle]
        pub extern "C" fn splitbench_device_module_layout(
        ) -> &'static ::abi_stable::type_layout::TypeLayout {
            <$crate::abi::DeviceModuleRef as ::abi_stable::StableAbi>::LAYOUT
        }
    };
}
