//! The CUDA driver and NVRTC, opened at run time: the function tables device codecs call
//! through, so a plugin built without CUDA still loads everywhere.
//!
//! Each table is declared once with the exact symbol each entry resolves to. Those are the
//! names the CUDA 13 headers export (`cuda.h` maps some API names to versioned symbols, such
//! as `cuCtxPushCurrent` to `cuCtxPushCurrent_v2`, and leaves others alone); the test below
//! checks every one against the headers and against the CPU emulator's definitions.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

use libloading::Library;

use super::test_hook::library_files;
use crate::CodecError;

pub(super) type CuResult = c_int;
pub(super) type CuPtr = *mut c_void;

/// A table of C functions resolved from one library by their exact symbol names, and the list
/// of those names (`SYMBOLS`) for the header check.
macro_rules! function_table {
    ($(#[$doc:meta])* $table:ident { $($field:ident: $symbol:literal => $ty:ty,)* }) => {
        $(#[$doc])*
        pub(super) struct $table {
            _lib: Library,
            $(pub(super) $field: $ty,)*
        }

        impl $table {
            #[cfg_attr(not(test), allow(dead_code))]
            pub(super) const SYMBOLS: &'static [&'static str] = &[$($symbol,)*];

            fn resolve(lib: Library) -> Result<$table, String> {
                Ok($table {
                    $($field: {
                        let name = concat!($symbol, "\0").as_bytes();
                        // SAFETY: the field's type is the documented C signature of this
                        // symbol.
                        *unsafe { lib.get::<$ty>(name) }.map_err(|e| {
                            format!("{} lacks {}: {e}", stringify!($table), $symbol)
                        })?
                    },)*
                    _lib: lib,
                })
            }
        }
    };
}

function_table! {
    /// The driver API entry points device codecs and the host's staging need.
    Driver {
        ctx_push: "cuCtxPushCurrent_v2" => unsafe extern "C" fn(CuPtr) -> CuResult,
        ctx_pop: "cuCtxPopCurrent_v2" => unsafe extern "C" fn(*mut CuPtr) -> CuResult,
        module_load_data: "cuModuleLoadData"
            => unsafe extern "C" fn(*mut CuPtr, *const c_void) -> CuResult,
        module_get_function: "cuModuleGetFunction"
            => unsafe extern "C" fn(*mut CuPtr, CuPtr, *const c_char) -> CuResult,
        launch_kernel: "cuLaunchKernel" => unsafe extern "C" fn(
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
        memcpy_dtoh_async: "cuMemcpyDtoHAsync_v2"
            => unsafe extern "C" fn(*mut c_void, u64, usize, CuPtr) -> CuResult,
        memset_d8_async: "cuMemsetD8Async"
            => unsafe extern "C" fn(u64, u8, usize, CuPtr) -> CuResult,
        mem_host_alloc: "cuMemHostAlloc"
            => unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> CuResult,
        mem_free_host: "cuMemFreeHost" => unsafe extern "C" fn(*mut c_void) -> CuResult,
        stream_synchronize: "cuStreamSynchronize" => unsafe extern "C" fn(CuPtr) -> CuResult,
        get_error_name: "cuGetErrorName"
            => unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
    }
}

function_table! {
    /// The NVRTC entry points for compiling kernel source to PTX.
    Nvrtc {
        create_program: "nvrtcCreateProgram" => unsafe extern "C" fn(
            *mut CuPtr,
            *const c_char,
            *const c_char,
            c_int,
            *const *const c_char,
            *const *const c_char,
        ) -> c_int,
        compile_program: "nvrtcCompileProgram"
            => unsafe extern "C" fn(CuPtr, c_int, *const *const c_char) -> c_int,
        get_ptx_size: "nvrtcGetPTXSize" => unsafe extern "C" fn(CuPtr, *mut usize) -> c_int,
        get_ptx: "nvrtcGetPTX" => unsafe extern "C" fn(CuPtr, *mut c_char) -> c_int,
        get_log_size: "nvrtcGetProgramLogSize" => unsafe extern "C" fn(CuPtr, *mut usize) -> c_int,
        get_log: "nvrtcGetProgramLog" => unsafe extern "C" fn(CuPtr, *mut c_char) -> c_int,
        destroy_program: "nvrtcDestroyProgram" => unsafe extern "C" fn(*mut CuPtr) -> c_int,
        get_error_string: "nvrtcGetErrorString" => unsafe extern "C" fn(c_int) -> *const c_char,
    }
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

impl Driver {
    fn open() -> Result<Driver, String> {
        let names = match library_files() {
            Some((driver, _)) => vec![driver.clone()],
            None => vec!["libcuda.so.1".into(), "libcuda.so".into()],
        };
        let lib = open_first(&names)
            .map_err(|tried| format!("the CUDA driver library is not loadable: {tried}"))?;
        Driver::resolve(lib)
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
    /// The NVRTC that kernels are launched through: the emulation's where a test chose it.
    fn open() -> Result<Nvrtc, String> {
        Nvrtc::open_from(library_files().map(|(_, nvrtc)| nvrtc.clone()))
    }

    fn open_from(chosen: Option<String>) -> Result<Nvrtc, String> {
        let mut names = Vec::new();
        names.extend(chosen);
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
        Nvrtc::resolve(lib)
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

/// The system's NVRTC whatever a test chose for launches: compile-only checks use it, so that
/// they and emulated launches can share one test process.
pub(super) fn system_nvrtc() -> Result<&'static Nvrtc, CodecError> {
    static NVRTC: OnceLock<Result<Nvrtc, String>> = OnceLock::new();
    NVRTC
        .get_or_init(|| Nvrtc::open_from(None))
        .as_ref()
        .map_err(|e| CodecError::new(e.clone()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::{Driver, Nvrtc};

    /// Identifiers followed by `(`: in a preprocessed header, the functions it declares under
    /// the names the library exports; in C source, the functions it defines or calls.
    fn function_names(text: &str) -> BTreeSet<String> {
        let bytes = text.as_bytes();
        let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let mut names = BTreeSet::new();
        let mut i = 0;
        while i < bytes.len() {
            if is_ident(bytes[i]) && (i == 0 || !is_ident(bytes[i - 1])) {
                let start = i;
                while i < bytes.len() && is_ident(bytes[i]) {
                    i += 1;
                }
                let mut j = i;
                while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                if bytes.get(j) == Some(&b'(') {
                    names.insert(text[start..i].to_string());
                }
            } else {
                i += 1;
            }
        }
        names
    }

    /// The CUDA 13 toolkit's include folder: `$CUDA_HOME`, or the one
    /// scripts/cuda-toolchain.sh sets up (`$SPLITBENCH_CUDA_TOOLCHAIN`, default
    /// `~/.cache/splitbench-cuda`).
    fn cuda_include() -> Option<PathBuf> {
        let toolchain = std::env::var_os("SPLITBENCH_CUDA_TOOLCHAIN")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/splitbench-cuda"))
            })
            .map(|t| t.join("cuda"));
        std::env::var_os("CUDA_HOME")
            .map(PathBuf::from)
            .into_iter()
            .chain(toolchain)
            .map(|home| home.join("include"))
            .find(|include| include.join("cuda.h").is_file() && include.join("nvrtc.h").is_file())
    }

    /// `header` through the C preprocessor, as a program including it sees it.
    fn preprocessed(include: &std::path::Path, header: &str) -> String {
        let out = std::process::Command::new("cc")
            .args(["-E", "-P", "-x", "c", "-I"])
            .arg(include)
            .arg(include.join(header))
            .output()
            .expect("a C compiler (cc) to preprocess the CUDA headers");
        assert!(
            out.status.success(),
            "cc -E {header}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every symbol plugin-api resolves, and every CUDA function the CPU emulator defines, is
    /// one the CUDA 13 headers declare: a misspelt or wrongly versioned name (the driver has
    /// no `cuMemsetD8Async_v2`) fails here instead of on a GPU. And the emulator defines every
    /// symbol plugin-api resolves, so the emulated tests run the same calls.
    #[test]
    fn symbols_are_the_cuda_headers_names() {
        let Some(include) = cuda_include() else {
            let why = "no CUDA 13 headers (set CUDA_HOME, or run scripts/cuda-toolchain.sh)";
            crate::testkit::missing_input("driver symbols against cuda.h", why);
            return;
        };
        let version = std::fs::read_to_string(include.join("cuda.h")).unwrap();
        assert!(
            version.contains("#define CUDA_VERSION 130"),
            "{} is not CUDA 13's",
            include.join("cuda.h").display()
        );
        let declared: BTreeSet<String> = function_names(&preprocessed(&include, "cuda.h"))
            .union(&function_names(&preprocessed(&include, "nvrtc.h")))
            .cloned()
            .collect();
        let emulated: BTreeSet<String> = [
            include_str!("../emulator/driver.c"),
            include_str!("../emulator/nvrtc.c"),
        ]
        .iter()
        .flat_map(|c| function_names(c))
        .filter(|n| n.starts_with("cu") || n.starts_with("nvrtc"))
        .collect();
        let resolved: Vec<&str> = Driver::SYMBOLS
            .iter()
            .chain(Nvrtc::SYMBOLS)
            .copied()
            .collect();
        let wrong: Vec<&str> = resolved
            .iter()
            .copied()
            .filter(|s| !declared.contains(*s))
            .collect();
        assert!(
            wrong.is_empty(),
            "resolved by plugin-api, not in cuda.h/nvrtc.h: {wrong:?}"
        );
        let wrong: Vec<&String> = emulated.iter().filter(|s| !declared.contains(*s)).collect();
        assert!(
            wrong.is_empty(),
            "defined by the emulator, not in cuda.h/nvrtc.h: {wrong:?}"
        );
        let missing: Vec<&str> = resolved
            .iter()
            .copied()
            .filter(|s| !emulated.contains(*s))
            .collect();
        assert!(
            missing.is_empty(),
            "resolved by plugin-api, not emulated: {missing:?}"
        );
    }

    #[test]
    fn function_names_reads_declarations_and_definitions() {
        let names = function_names("CUresult cuA_v2 (int x);\nint nvrtcB(void) { return f(1); }");
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(names, ["cuA_v2", "f", "nvrtcB"]);
    }
}
