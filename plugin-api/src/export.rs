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
use crate::calibration::{needs_calibration_error, Calibration};
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
            self.0
                .encode(&view_from_ffi(&input, &shape)?)
                .map(RVec::from)
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

fn view_from_ffi<'a>(
    input: &FfiTensorView<'a>,
    shape: &'a [usize],
) -> Result<TensorView<'a>, CodecError> {
    TensorView::new(input.dtype.into(), shape, input.bytes.as_slice())
}

fn exported_codec(codec: Box<dyn Codec>) -> FfiCodecBox {
    FfiCodec_TO::from_value(ExportedCodec(codec), TD_Opaque)
}

fn exported_device_codec(codec: Option<Box<dyn DeviceCodec>>) -> ROption<FfiDeviceCodecBox> {
    match codec {
        Some(codec) => ROption::RSome(FfiDeviceCodec_TO::from_value(
            ExportedDeviceCodec(codec),
            TD_Opaque,
        )),
        None => ROption::RNone,
    }
}

/// Whether `codec` with these params needs calibration (never, without a [`Calibration`]).
fn calibrated(
    calibration: Option<Calibration>,
    codec: &str,
    params_json: &str,
) -> Result<Option<Calibration>, CodecError> {
    match calibration {
        Some(c) if (c.needs_calibration)(codec, params_json)? => Ok(Some(c)),
        _ => Ok(None),
    }
}

#[doc(hidden)]
pub fn new_codec(
    factory: CodecFactory,
    calibration: Option<Calibration>,
    codec: RStr<'_>,
    params_json: RStr<'_>,
) -> RResult<FfiCodecBox, RString> {
    guarded(|| {
        if calibrated(calibration, codec.as_str(), params_json.as_str())?.is_some() {
            return Err(needs_calibration_error(codec.as_str()));
        }
        Ok(exported_codec(factory(
            codec.as_str(),
            params_json.as_str(),
        )?))
    })
}

#[doc(hidden)]
pub fn needs_calibration(
    calibration: Option<Calibration>,
    codec: RStr<'_>,
    params_json: RStr<'_>,
) -> RResult<bool, RString> {
    guarded(|| Ok(calibrated(calibration, codec.as_str(), params_json.as_str())?.is_some()))
}

/// The family's calibration, or an error saying `codec` takes none.
fn required(
    calibration: Option<Calibration>,
    codec: &str,
    params_json: &str,
) -> Result<Calibration, CodecError> {
    calibrated(calibration, codec, params_json)?.ok_or_else(|| {
        CodecError::new(format!(
            "codec `{codec}` with these params is not calibrated; create it with new_codec"
        ))
    })
}

#[doc(hidden)]
pub fn calibrate(
    calibration: Option<Calibration>,
    codec: RStr<'_>,
    params_json: RStr<'_>,
    samples: FfiTensorView<'_>,
) -> RResult<RVec<u8>, RString> {
    guarded(|| {
        let c = required(calibration, codec.as_str(), params_json.as_str())?;
        let shape = shape_from_ffi(samples.shape)?;
        let view = view_from_ffi(&samples, &shape)?;
        (c.calibrate)(codec.as_str(), params_json.as_str(), &view).map(RVec::from)
    })
}

#[doc(hidden)]
pub fn new_calibrated_codec(
    calibration: Option<Calibration>,
    codec: RStr<'_>,
    params_json: RStr<'_>,
    state: RSlice<'_, u8>,
) -> RResult<FfiCodecBox, RString> {
    guarded(|| {
        let c = required(calibration, codec.as_str(), params_json.as_str())?;
        (c.new_codec)(codec.as_str(), params_json.as_str(), state.as_slice()).map(exported_codec)
    })
}

#[doc(hidden)]
pub fn new_calibrated_device_codec(
    calibration: Option<Calibration>,
    codec: RStr<'_>,
    params_json: RStr<'_>,
    state: RSlice<'_, u8>,
) -> RResult<ROption<FfiDeviceCodecBox>, RString> {
    guarded(|| {
        let c = required(calibration, codec.as_str(), params_json.as_str())?;
        let Some(factory) = c.new_device_codec else {
            return Ok(ROption::RNone);
        };
        factory(codec.as_str(), params_json.as_str(), state.as_slice()).map(exported_device_codec)
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
        factory(codec.as_str(), params_json.as_str()).map(exported_device_codec)
    })
}

/// Exports a plugin: `export_plugin!(info_fn, new_codec_fn)`, or
/// `export_plugin!(info_fn, new_codec_fn, new_device_codec_fn)` for a family with a CUDA path;
/// either may end with `, calibration: CALIBRATION` for a family with calibrated codecs.
///
/// `info_fn: fn() -> PluginInfo`; `new_codec_fn: fn(&str, &str) -> Result<Box<dyn Codec>,
/// CodecError>` receives the codec name and its params as JSON; `new_device_codec_fn` is a
/// [`DeviceCodecFactory`](crate::device::DeviceCodecFactory); `CALIBRATION` a
/// [`Calibration`](crate::calibration::Calibration). The plugin crate must depend on
/// `abi_stable` (same version as `splitbench-plugin-api`), because abi_stable's export
/// attribute names it by absolute path.
#[macro_export]
macro_rules! export_plugin {
    ($info:path, $new_codec:path, calibration: $calibration:expr) => {
        $crate::export_plugin!(@root $info, $new_codec, ::core::option::Option::None,
            ::core::option::Option::Some($calibration));
    };
    ($info:path, $new_codec:path, $new_device_codec:path, calibration: $calibration:expr) => {
        $crate::export_plugin!(@root $info, $new_codec, ::core::option::Option::Some(
            $new_device_codec as $crate::device::DeviceCodecFactory
        ), ::core::option::Option::Some($calibration));
    };
    ($info:path, $new_codec:path) => {
        $crate::export_plugin!(@root $info, $new_codec, ::core::option::Option::None,
            ::core::option::Option::None);
    };
    ($info:path, $new_codec:path, $new_device_codec:path) => {
        $crate::export_plugin!(@root $info, $new_codec, ::core::option::Option::Some(
            $new_device_codec as $crate::device::DeviceCodecFactory
        ), ::core::option::Option::None);
    };
    (@root $info:path, $new_codec:path, $device_factory:expr, $calibration:expr) => {
        const __SPLITBENCH_CALIBRATION: ::core::option::Option<
            $crate::calibration::Calibration,
        > = $calibration;

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
                $crate::export::new_codec($new_codec, __SPLITBENCH_CALIBRATION, codec, params)
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

        #[no_mangle]
        pub extern "C" fn splitbench_calibration_module() -> $crate::abi::CalibrationModuleRef {
            extern "C" fn __splitbench_needs_calibration(
                codec: ::abi_stable::std_types::RStr<'_>,
                params: ::abi_stable::std_types::RStr<'_>,
            ) -> ::abi_stable::std_types::RResult<bool, ::abi_stable::std_types::RString> {
                $crate::export::needs_calibration(__SPLITBENCH_CALIBRATION, codec, params)
            }
            extern "C" fn __splitbench_calibrate(
                codec: ::abi_stable::std_types::RStr<'_>,
                params: ::abi_stable::std_types::RStr<'_>,
                samples: $crate::abi::FfiTensorView<'_>,
            ) -> ::abi_stable::std_types::RResult<
                ::abi_stable::std_types::RVec<u8>,
                ::abi_stable::std_types::RString,
            > {
                $crate::export::calibrate(__SPLITBENCH_CALIBRATION, codec, params, samples)
            }
            extern "C" fn __splitbench_new_calibrated_codec(
                codec: ::abi_stable::std_types::RStr<'_>,
                params: ::abi_stable::std_types::RStr<'_>,
                state: ::abi_stable::std_types::RSlice<'_, u8>,
            ) -> ::abi_stable::std_types::RResult<
                $crate::abi::FfiCodecBox,
                ::abi_stable::std_types::RString,
            > {
                $crate::export::new_calibrated_codec(__SPLITBENCH_CALIBRATION, codec, params, state)
            }
            extern "C" fn __splitbench_new_calibrated_device_codec(
                codec: ::abi_stable::std_types::RStr<'_>,
                params: ::abi_stable::std_types::RStr<'_>,
                state: ::abi_stable::std_types::RSlice<'_, u8>,
            ) -> ::abi_stable::std_types::RResult<
                ::abi_stable::std_types::ROption<$crate::abi::FfiDeviceCodecBox>,
                ::abi_stable::std_types::RString,
            > {
                $crate::export::new_calibrated_device_codec(
                    __SPLITBENCH_CALIBRATION,
                    codec,
                    params,
                    state,
                )
            }
            static MODULE: ::std::sync::OnceLock<$crate::abi::CalibrationModuleRef> =
                ::std::sync::OnceLock::new();
            *MODULE.get_or_init(|| {
                use ::abi_stable::prefix_type::PrefixTypeTrait;
                $crate::abi::CalibrationModule {
                    needs_calibration: __splitbench_needs_calibration,
                    calibrate: __splitbench_calibrate,
                    new_calibrated_codec: __splitbench_new_calibrated_codec,
                    new_calibrated_device_codec: __splitbench_new_calibrated_device_codec,
                }
                .leak_into_prefix()
            })
        }

        #[no_mangle]
        pub extern "C" fn splitbench_calibration_module_layout(
        ) -> &'static ::abi_stable::type_layout::TypeLayout {
            <$crate::abi::CalibrationModuleRef as ::abi_stable::StableAbi>::LAYOUT
        }
    };
}
