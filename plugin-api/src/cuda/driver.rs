//! The CUDA driver and NVRTC, opened at run time: the function tables device codecs call
//! through, so a plugin built without CUDA still loads everywhere.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

use libloading::Library;

use super::test_hook::library_files;
use crate::CodecError;

pub(super) type CuResult = c_int;
pub(super) type CuPtr = *mut c_void;

/// The driver API entry points device codecs need.
pub(super) struct Driver {
    _lib: Library,
    pub(super) ctx_push: unsafe extern "C" fn(CuPtr) -> CuResult,
    pub(super) ctx_pop: unsafe extern "C" fn(*mut CuPtr) -> CuResult,
    pub(super) module_load_data: unsafe extern "C" fn(*mut CuPtr, *const c_void) -> CuResult,
    pub(super) module_get_function:
        unsafe extern "C" fn(*mut CuPtr, CuPtr, *const c_char) -> CuResult,
    #[allow(clippy::type_complexity)]
    pub(super) launch_kernel: unsafe extern "C" fn(
        CuPtr,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        CuPtr,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> CuResult,
    pub(super) memcpy_dtoh_async: unsafe extern "C" fn(*mut c_void, u64, usize, CuPtr) -> CuResult,
    pub(super) memset_d8_async: unsafe extern "C" fn(u64, u8, usize, CuPtr) -> CuResult,
    pub(super) stream_synchronize: unsafe extern "C" fn(CuPtr) -> CuResult,
    pub(super) get_error_name: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
}

/// The NVRTC entry points for compiling kernel source to PTX.
pub(super) struct Nvrtc {
    _lib: Library,
    pub(super) create_program: unsafe extern "C" fn(
        *mut CuPtr,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int,
    pub(super) compile_program: unsafe extern "C" fn(CuPtr, c_int, *const *const c_char) -> c_int,
    pub(super) get_ptx_size: unsafe extern "C" fn(CuPtr, *mut usize) -> c_int,
    pub(super) get_ptx: unsafe extern "C" fn(CuPtr, *mut c_char) -> c_int,
    pub(super) get_log_size: unsafe extern "C" fn(CuPtr, *mut usize) -> c_int,
    pub(super) get_log: unsafe extern "C" fn(CuPtr, *mut c_char) -> c_int,
    pub(super) destroy_program: unsafe extern "C" fn(*mut CuPtr) -> c_int,
    pub(super) get_error_string: unsafe extern "C" fn(c_int) -> *const c_char,
}

fn open_first(names: &[String]) -> Result<Library, String> {
    let mut tried = Vec::new();
    for name in names {
        // SAFETY: these are the CUDA libraries, whose initialisers are safe to run.
        match unsafe { Library::new(name) } {
            Ok(lib) => return Ok(lib),
            Err(e) => tried.push(format!("{name} ({e})")),
        }
    }
    Err(tried.join("; "))
}

macro_rules! symbol {
    ($lib:expr, $name:literal) => {
        // SAFETY: the field's type is the documented C signature of this symbol.
        *unsafe { $lib.get($name) }.map_err(|e| {
            format!(
                "{} lacks {}: {e}",
                stringify!($lib),
                String::from_utf8_lossy(&$name[..$name.len() - 1])
            )
        })?
    };
}

impl Driver {
    fn open() -> Result<Driver, String> {
        let names = match library_files() {
            Some((driver, _)) => vec![driver.clone()],
            None => vec!["libcuda.so.1".into(), "libcuda.so".into()],
        };
        let lib = open_first(&names)
            .map_err(|tried| format!("the CUDA driver library is not loadable: {tried}"))?;
        Ok(Driver {
            ctx_push: symbol!(lib, b"cuCtxPushCurrent_v2\0"),
            ctx_pop: symbol!(lib, b"cuCtxPopCurrent_v2\0"),
            module_load_data: symbol!(lib, b"cuModuleLoadData\0"),
            module_get_function: symbol!(lib, b"cuModuleGetFunction\0"),
            launch_kernel: symbol!(lib, b"cuLaunchKernel\0"),
            memcpy_dtoh_async: symbol!(lib, b"cuMemcpyDtoHAsync_v2\0"),
            memset_d8_async: symbol!(lib, b"cuMemsetD8Async_v2\0"),
            stream_synchronize: symbol!(lib, b"cuStreamSynchronize\0"),
            get_error_name: symbol!(lib, b"cuGetErrorName\0"),
            _lib: lib,
        })
    }

    pub(super) fn check(&self, what: &str, result: CuResult) -> Result<(), CodecError> {
        if result == 0 {
            return Ok(());
        }
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorName writes a pointer to a static string or leaves it null.
        unsafe { (self.get_error_name)(result, &mut name) };
        let name = if name.is_null() {
            format!("CUDA error {result}")
        } else {
            // SAFETY: non-null names are static NUL-terminated strings owned by the driver.
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        };
        Err(CodecError::new(format!("{what} failed: {name}")))
    }
}

impl Nvrtc {
    fn open() -> Result<Nvrtc, String> {
        let mut names = Vec::new();
        if let Some((_, nvrtc)) = library_files() {
            names.push(nvrtc.clone());
        }
        if let Ok(path) = std::env::var("SPLITBENCH_NVRTC") {
            names.push(path);
        }
        names.extend(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"].map(String::from));
        let lib = open_first(&names).map_err(|tried| {
            format!(
                "NVRTC is not loadable ({tried}); install the CUDA runtime libraries or set \
                 SPLITBENCH_NVRTC to libnvrtc.so's path"
            )
        })?;
        Ok(Nvrtc {
            create_program: symbol!(lib, b"nvrtcCreateProgram\0"),
            compile_program: symbol!(lib, b"nvrtcCompileProgram\0"),
            get_ptx_size: symbol!(lib, b"nvrtcGetPTXSize\0"),
            get_ptx: symbol!(lib, b"nvrtcGetPTX\0"),
            get_log_size: symbol!(lib, b"nvrtcGetProgramLogSize\0"),
            get_log: symbol!(lib, b"nvrtcGetProgramLog\0"),
            destroy_program: symbol!(lib, b"nvrtcDestroyProgram\0"),
            get_error_string: symbol!(lib, b"nvrtcGetErrorString\0"),
            _lib: lib,
        })
    }

    pub(super) fn error(&self, what: &str, result: c_int) -> CodecError {
        // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr((self.get_error_string)(result)) };
        CodecError::new(format!("{what} failed: {}", text.to_string_lossy()))
    }
}

pub(super) fn driver() -> Result<&'static Driver, CodecError> {
    static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();
    DRIVER
        .get_or_init(Driver::open)
        .as_ref()
        .map_err(|e| CodecError::new(e.clone()))
}

pub(super) fn nvrtc() -> Result<&'static Nvrtc, CodecError> {
    static NVRTC: OnceLock<Result<Nvrtc, String>> = OnceLock::new();
    NVRTC
        .get_or_init(Nvrtc::open)
        .as_ref()
        .map_err(|e| CodecError::new(e.clone()))
}
