//! CUDA for device-side codecs, without a CUDA toolkit at build time.
//!
//! A plugin ships its kernels as CUDA C source; [`KernelSet`] compiles them with NVRTC the first
//! time a context asks for them and launches them on the stream the host lends. The driver
//! (`libcuda.so.1`) and NVRTC (`libnvrtc.so.13`, `.12`, or `$SPLITBENCH_NVRTC`) are opened at
//! run time: a splitbench built with CUDA has both loaded already, and a plugin built on a
//! machine without CUDA still loads everywhere.
//!
//! Kernels are compiled with `--fmad=false`, so `a * b + c` rounds twice as in Rust, which
//! keeps device wires bit-identical to the host path's.

use std::collections::HashMap;
mod driver;
mod test_hook;

use std::ffi::{c_char, c_int, c_void, CString};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use driver::{driver, nvrtc, system_nvrtc, CuPtr};
pub use test_hook::use_libraries;

use crate::{CodecError, DType};

/// The CUDA state the host lends for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaStream {
    /// `CUcontext`, as an integer.
    pub context: u64,
    /// `CUstream`, as an integer; kernels go on it.
    pub stream: u64,
    pub device_ordinal: i32,
    /// Compute capability `(major, minor)`, which kernels are compiled for.
    pub compute_capability: (i32, i32),
}

impl CudaStream {
    /// Runs `f` with this stream's context current on the calling thread.
    fn in_context<T>(
        &self,
        f: impl FnOnce(&driver::Driver) -> Result<T, CodecError>,
    ) -> Result<T, CodecError> {
        let driver = driver()?;
        // SAFETY: the host lends a live context; it is popped again whatever `f` returns.
        unsafe {
            driver.check("cuCtxPushCurrent", (driver.ctx_push)(self.context as CuPtr))?;
            let result = f(driver);
            let mut popped: CuPtr = std::ptr::null_mut();
            (driver.ctx_pop)(&mut popped);
            result
        }
    }

    /// Copies `out.len()` bytes from device address `src` in stream order and waits for them:
    /// `out` holds the copy when this returns.
    pub fn read_bytes(&self, src: u64, out: &mut [u8]) -> Result<(), CodecError> {
        if out.is_empty() {
            return Ok(());
        }
        let stream = self.stream as CuPtr;
        self.in_context(|driver| {
            // SAFETY: `src` is device memory the host lent with at least `out.len()` bytes,
            // and the copy completes before `cuStreamSynchronize` returns.
            unsafe {
                driver.check(
                    "cuMemcpyDtoHAsync",
                    (driver.memcpy_dtoh_async)(out.as_mut_ptr().cast(), src, out.len(), stream),
                )?;
                driver.check("cuStreamSynchronize", (driver.stream_synchronize)(stream))
            }
        })
    }

    /// Sets `len` bytes at device address `dst` to `value`, in stream order.
    pub fn memset(&self, dst: u64, value: u8, len: usize) -> Result<(), CodecError> {
        if len == 0 {
            return Ok(());
        }
        self.in_context(|driver| {
            // SAFETY: `dst` is device memory the host lent with at least `len` bytes.
            unsafe {
                driver.check(
                    "cuMemsetD8Async",
                    (driver.memset_d8_async)(dst, value, len, self.stream as CuPtr),
                )
            }
        })
    }
}

/// Page-locked host memory that device bytes are copied into: the host path's staging buffer
/// for hidden states on a GPU, reused across calls and grown when a larger state comes.
/// [`PinnedStaging::copy_from_device`] waits for its copy before handing the bytes out, so no
/// caller can read the buffer while the copy is still in flight.
pub struct PinnedStaging {
    ptr: *mut u8,
    capacity: usize,
    /// The context the memory was allocated in, and freed in.
    context: Option<CudaStream>,
}

// SAFETY: the buffer is plain host memory owned by this value alone.
unsafe impl Send for PinnedStaging {}

impl Default for PinnedStaging {
    fn default() -> Self {
        PinnedStaging {
            ptr: std::ptr::null_mut(),
            capacity: 0,
            context: None,
        }
    }
}

impl PinnedStaging {
    /// Copies `len` bytes at device address `src` on `cuda`'s stream into the buffer, waits
    /// for the copy, and returns them.
    pub fn copy_from_device(
        &mut self,
        cuda: &CudaStream,
        src: u64,
        len: usize,
    ) -> Result<&[u8], CodecError> {
        if len == 0 {
            return Ok(&[]);
        }
        if self.capacity < len || self.context.is_some_and(|c| c.context != cuda.context) {
            self.free();
            let mut ptr: *mut c_void = std::ptr::null_mut();
            cuda.in_context(|driver| {
                // SAFETY: allocates `len` bytes of page-locked memory (flags 0: cached, so the
                // CPU reads it fast) into `ptr`.
                unsafe { driver.check("cuMemHostAlloc", (driver.mem_host_alloc)(&mut ptr, len, 0)) }
            })?;
            self.ptr = ptr.cast();
            self.capacity = len;
            self.context = Some(*cuda);
        }
        // SAFETY: `ptr` holds `capacity >= len` bytes that this value owns.
        let buffer = unsafe { std::slice::from_raw_parts_mut(self.ptr, len) };
        cuda.read_bytes(src, buffer)?;
        Ok(buffer)
    }

    fn free(&mut self) {
        if let Some(cuda) = self.context.take() {
            let ptr = std::mem::replace(&mut self.ptr, std::ptr::null_mut());
            // A failure to free leaves the memory to the process; nothing can be done here.
            // SAFETY: `ptr` came from cuMemHostAlloc in this context and is not used again.
            let _ = cuda.in_context(|driver| unsafe {
                driver.check("cuMemFreeHost", (driver.mem_free_host)(ptr.cast()))
            });
            self.capacity = 0;
        }
    }
}

impl Drop for PinnedStaging {
    fn drop(&mut self) {
        self.free();
    }
}

/// The number the prelude's `sb_load`/`sb_store` take for a dtype (`SB_F32`, `SB_F16`,
/// `SB_BF16`).
pub fn dtype_code(dtype: DType) -> i32 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
    }
}

/// CUDA C every [`KernelSet`] starts with: `u8`..`u64`, dtype-aware `sb_load`/`sb_store` that
/// round as the host path does, fp8 conversions, warp reductions, LSB-first bit packing.
pub const PRELUDE: &str = include_str!("../prelude.cu");

/// Compiles `source` to PTX for compute capability `arch` with the options device codecs use.
/// Errors carry NVRTC's log.
pub fn compile_ptx(source: &str, name: &str, arch: (i32, i32)) -> Result<Vec<u8>, CodecError> {
    compile_ptx_with(nvrtc()?, source, name, arch)
}

fn compile_ptx_with(
    nvrtc: &driver::Nvrtc,
    source: &str,
    name: &str,
    arch: (i32, i32),
) -> Result<Vec<u8>, CodecError> {
    let source_c = CString::new(source).map_err(|_| CodecError::new("kernel source has a NUL"))?;
    let name_c = CString::new(name).map_err(|_| CodecError::new("kernel name has a NUL"))?;
    let options: Vec<CString> = [
        format!("--gpu-architecture=compute_{}{}", arch.0, arch.1),
        "--fmad=false".into(),
        "--std=c++17".into(),
    ]
    .into_iter()
    .map(|o| CString::new(o).expect("options have no NUL"))
    .collect();
    let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
    let mut program: CuPtr = std::ptr::null_mut();
    // SAFETY: NVRTC's documented calls, with NUL-terminated strings that outlive the program,
    // and buffers sized by the matching *Size calls.
    unsafe {
        let r = (nvrtc.create_program)(
            &mut program,
            source_c.as_ptr(),
            name_c.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        );
        if r != 0 {
            return Err(nvrtc.error("nvrtcCreateProgram", r));
        }
        let compiled =
            (nvrtc.compile_program)(program, option_ptrs.len() as c_int, option_ptrs.as_ptr());
        let result = if compiled != 0 {
            let mut size = 0usize;
            (nvrtc.get_log_size)(program, &mut size);
            let mut log = vec![0u8; size.max(1)];
            (nvrtc.get_log)(program, log.as_mut_ptr().cast());
            let log = String::from_utf8_lossy(&log[..size.saturating_sub(1)]).into_owned();
            Err(CodecError::new(format!(
                "{}: {}",
                nvrtc.error(&format!("compiling {name}"), compiled),
                log.trim()
            )))
        } else {
            let mut size = 0usize;
            let r = (nvrtc.get_ptx_size)(program, &mut size);
            if r != 0 {
                Err(nvrtc.error("nvrtcGetPTXSize", r))
            } else {
                let mut ptx = vec![0u8; size];
                let r = (nvrtc.get_ptx)(program, ptx.as_mut_ptr().cast());
                if r != 0 {
                    Err(nvrtc.error("nvrtcGetPTX", r))
                } else {
                    Ok(ptx)
                }
            }
        };
        (nvrtc.destroy_program)(&mut program);
        result
    }
}

/// One kernel argument, as `cuLaunchKernel` wants it: a pointer to the value.
#[derive(Clone, Copy)]
pub struct KernelArg(*mut c_void);

impl KernelArg {
    /// `value` must outlive the launch call (a local in the caller does).
    pub fn of<T: Copy>(value: &T) -> KernelArg {
        KernelArg((value as *const T).cast_mut().cast())
    }
}

/// A size as the u32 the kernels take.
pub fn as_u32(n: usize) -> Result<u32, CodecError> {
    u32::try_from(n).map_err(|_| CodecError::new(format!("{n} exceeds the kernels' u32 range")))
}

/// The leading arguments of a kernel over a `[rows, hidden]` tensor, in the order the
/// built-in kernels take them: `(const void* x, int dtype, u64 rows, u32 hidden, ...)`.
pub struct RowArgs {
    ptr: u64,
    dtype: i32,
    rows: u64,
    hidden: u32,
}

impl RowArgs {
    pub fn new(ptr: u64, dtype: DType, rows: usize, hidden: usize) -> Result<RowArgs, CodecError> {
        Ok(RowArgs {
            ptr,
            dtype: dtype_code(dtype),
            rows: rows as u64,
            hidden: as_u32(hidden)?,
        })
    }

    /// The four leading arguments, then `rest`.
    pub fn with(&self, rest: &[KernelArg]) -> Vec<KernelArg> {
        [
            KernelArg::of(&self.ptr),
            KernelArg::of(&self.dtype),
            KernelArg::of(&self.rows),
            KernelArg::of(&self.hidden),
        ]
        .into_iter()
        .chain(rest.iter().copied())
        .collect()
    }
}

/// Launch shape: `grid` blocks of `block` threads.
#[derive(Debug, Clone, Copy)]
pub struct LaunchConfig {
    pub grid: u32,
    pub block: u32,
}

impl LaunchConfig {
    /// One warp per row, for `rows` rows.
    pub fn warp_per_row(rows: usize) -> Result<LaunchConfig, CodecError> {
        LaunchConfig::for_threads(rows * 32, 256)
    }

    /// One thread per element, for `n` elements.
    pub fn thread_per_element(n: usize) -> Result<LaunchConfig, CodecError> {
        LaunchConfig::for_threads(n, 256)
    }

    /// Enough blocks of `block` threads for `threads` threads.
    pub fn for_threads(threads: usize, block: u32) -> Result<LaunchConfig, CodecError> {
        let grid = threads.div_ceil(block as usize);
        let grid = u32::try_from(grid.max(1))
            .map_err(|_| CodecError::new(format!("{threads} threads exceed one CUDA grid")))?;
        Ok(LaunchConfig { grid, block })
    }
}

/// A loaded module's functions, by kernel name.
type Functions = Vec<(String, usize)>;

/// Modules loaded by every KernelSet of this plugin, by (source, context): the codec instance
/// of each link shares them, so NVRTC runs once per kernel source and GPU.
type ModuleCache = Mutex<HashMap<(u64, u64), Arc<Functions>>>;

fn loaded_modules() -> &'static ModuleCache {
    static MODULES: OnceLock<ModuleCache> = OnceLock::new();
    MODULES.get_or_init(Default::default)
}

/// A plugin's kernels: CUDA C source and the `extern "C" __global__` names in it. Compiled
/// and loaded on first use in each context, then reused.
pub struct KernelSet {
    sources: &'static [&'static str],
    name: &'static str,
    kernels: &'static [&'static str],
    loaded: Option<(u64, Arc<Functions>)>,
}

impl KernelSet {
    /// `sources` are concatenated in order after [`PRELUDE`].
    pub fn new(
        name: &'static str,
        sources: &'static [&'static str],
        kernels: &'static [&'static str],
    ) -> KernelSet {
        KernelSet {
            sources,
            name,
            kernels,
            loaded: None,
        }
    }

    fn ensure_loaded(&mut self, cuda: &CudaStream) -> Result<Arc<Functions>, CodecError> {
        if let Some((context, functions)) = &self.loaded {
            if *context == cuda.context {
                return Ok(functions.clone());
            }
        }
        let source = self.source();
        let key = {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (&source, self.kernels).hash(&mut hasher);
            (hasher.finish(), cuda.context)
        };
        let mut modules = loaded_modules()
            .lock()
            .map_err(|_| CodecError::new("the kernel cache is poisoned"))?;
        let functions = match modules.get(&key) {
            Some(functions) => functions.clone(),
            None => {
                let functions = Arc::new(self.load(cuda, &source)?);
                modules.insert(key, functions.clone());
                functions
            }
        };
        self.loaded = Some((cuda.context, functions.clone()));
        Ok(functions)
    }

    fn load(&self, cuda: &CudaStream, source: &str) -> Result<Functions, CodecError> {
        let ptx = compile_ptx(source, self.name, cuda.compute_capability)?;
        let mut functions = Vec::with_capacity(self.kernels.len());
        // SAFETY: the module stays loaded for the process; names are NUL-terminated.
        cuda.in_context(|driver| unsafe {
            let mut module: CuPtr = std::ptr::null_mut();
            driver.check(
                "cuModuleLoadData",
                (driver.module_load_data)(&mut module, ptx.as_ptr().cast()),
            )?;
            for &kernel in self.kernels {
                let name_c =
                    CString::new(kernel).map_err(|_| CodecError::new("kernel name has a NUL"))?;
                let mut function: CuPtr = std::ptr::null_mut();
                driver.check(
                    &format!("cuModuleGetFunction({kernel})"),
                    (driver.module_get_function)(&mut function, module, name_c.as_ptr()),
                )?;
                functions.push((kernel.to_string(), function as usize));
            }
            Ok(())
        })?;
        Ok(functions)
    }

    /// The full CUDA C source: the prelude, then `sources`.
    pub fn source(&self) -> String {
        std::iter::once(PRELUDE)
            .chain(self.sources.iter().copied())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Compiles the source for `arch` without a GPU: what plugin tests run to catch errors in
    /// kernel source on machines with NVRTC but no device.
    pub fn compile_only(&self, arch: (i32, i32)) -> Result<Vec<u8>, CodecError> {
        compile_ptx_with(system_nvrtc()?, &self.source(), self.name, arch)
    }

    /// Launches `kernel` on the lent stream; it runs asynchronously.
    pub fn launch(
        &mut self,
        cuda: &CudaStream,
        kernel: &str,
        config: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), CodecError> {
        let function = self
            .ensure_loaded(cuda)?
            .iter()
            .find(|(name, _)| name == kernel)
            .map(|&(_, f)| f)
            .ok_or_else(|| CodecError::new(format!("no kernel `{kernel}` in {}", self.name)))?;
        let mut params: Vec<*mut c_void> = args.iter().map(|a| a.0).collect();
        // SAFETY: `function` was loaded in this context; `params` points at values the caller
        // keeps alive across this call, matching the kernel's parameter list.
        cuda.in_context(|driver| unsafe {
            let launched = (driver.launch_kernel)(
                function as CuPtr,
                config.grid,
                1,
                1,
                config.block,
                1,
                1,
                0,
                cuda.stream as CuPtr,
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            );
            driver.check(&format!("launching {kernel}"), launched)
        })
    }
}

/// Whether NVRTC can be opened here; the plugins' tests compile their kernels when it can.
pub fn nvrtc_available() -> Result<(), CodecError> {
    system_nvrtc().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of the CPU emulation of the driver, or None (SKIPPED; a failure in CI).
    fn emulated() -> Option<CudaStream> {
        crate::testkit::emulated_stream()
            .map_err(|why| crate::testkit::missing_input("the CUDA emulation", why))
            .ok()
    }

    /// The emulator holds a device-to-host copy back until its stream is synchronized, as a
    /// GPU may: host code that forgets to wait reads 0xFF bytes, not the right values.
    #[test]
    fn emulated_copies_land_at_the_next_synchronization() {
        let Some(cuda) = emulated() else { return };
        let device: Vec<u8> = (1..=64).collect();
        let mut host = vec![0u8; 64];
        let driver = driver().unwrap();
        // SAFETY: emulated device memory is host memory; both buffers hold 64 bytes.
        unsafe {
            let copied = (driver.memcpy_dtoh_async)(
                host.as_mut_ptr().cast(),
                device.as_ptr() as u64,
                64,
                cuda.stream as CuPtr,
            );
            assert_eq!(copied, 0);
            assert!(
                host.iter().all(|&b| b == 0xFF),
                "read before the copy landed"
            );
            // Another stream's synchronization does not land it.
            assert_eq!((driver.stream_synchronize)(8 as CuPtr), 0);
            assert!(host.iter().all(|&b| b == 0xFF));
            assert_eq!((driver.stream_synchronize)(cuda.stream as CuPtr), 0);
        }
        assert_eq!(host, device);
    }

    #[test]
    fn read_bytes_waits_for_its_copy() {
        let Some(cuda) = emulated() else { return };
        let device: Vec<u8> = (0..200).map(|i| (i * 7) as u8).collect();
        let mut out = vec![0u8; 150];
        cuda.read_bytes(device.as_ptr() as u64 + 50, &mut out)
            .unwrap();
        assert_eq!(out, device[50..]);
    }

    /// The host path's staging: the bytes it hands out are the copy's, for states that grow,
    /// shrink and change between calls.
    #[test]
    fn pinned_staging_hands_out_the_copied_bytes() {
        let Some(cuda) = emulated() else { return };
        let mut staging = PinnedStaging::default();
        for (len, seed) in [(96usize, 3u8), (40, 5), (4096, 11), (4096, 13), (0, 1)] {
            let device: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let staged = staging
                .copy_from_device(&cuda, device.as_ptr() as u64, len)
                .unwrap();
            assert_eq!(staged, &device[..], "{len} bytes, seed {seed}");
        }
    }
}
