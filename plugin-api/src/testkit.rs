//! Conformance kit for codec authors: conformance checks, decoder fuzzing, device-vs-host
//! checks, and the size/error/speed measurement `splitbench codec-check` prints.
//!
//! From a plugin crate's own tests:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: splitbench_plugin_api::testkit::PeakAllocator = splitbench_plugin_api::testkit::PeakAllocator;
//!
//! #[test]
//! fn conforms() {
//!     splitbench_plugin_api::testkit::assert_conformance(|| my_plugin::new_codec("mine", "{}"));
//! }
//! ```
//!
//! Installing [`PeakAllocator`] is optional; with it, the kit also checks that decoding
//! hostile wire bytes never allocates more than the stated shape needs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::convert::{bytes_to_f32, f32_to_bytes};
use crate::measure::{synthetic_activations, ErrorStats};
use crate::{Codec, CodecError, DType, TensorView};

// ---------------------------------------------------------------------------------------------
// Measurement

/// One codec on one synthetic tensor: size, error and speed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    pub shape: [usize; 3],
    pub dtype: DType,
    pub raw_bytes: usize,
    pub wire_bytes: usize,
    pub bytes_per_element: f64,
    /// raw bytes / wire bytes
    pub ratio: f64,
    pub error: ErrorStats,
    /// Raw (model dtype) bytes encoded per second, in GB/s.
    pub encode_gbps: f64,
    pub decode_gbps: f64,
}

/// Encodes and decodes synthetic activations `repeats` times and reports the best times.
pub fn measure(
    codec: &mut dyn Codec,
    shape: [usize; 3],
    dtype: DType,
    seed: u64,
    repeats: usize,
) -> Result<Measurement, CodecError> {
    let raw = f32_to_bytes(&synthetic_activations(shape, seed), dtype);
    let reference = bytes_to_f32(&raw, dtype);
    let view = TensorView::new(dtype, &shape, &raw)?;
    let mut best_encode = f64::INFINITY;
    let mut best_decode = f64::INFINITY;
    let mut wire = Vec::new();
    let mut decoded = Vec::new();
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        wire = codec.encode(&view)?;
        best_encode = best_encode.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        decoded = codec.decode(&wire, &shape, dtype)?;
        best_decode = best_decode.min(start.elapsed().as_secs_f64());
    }
    if decoded.len() != raw.len() {
        return Err(CodecError::new(format!(
            "decode returned {} bytes, expected {}",
            decoded.len(),
            raw.len()
        )));
    }
    let elements = view.len().max(1);
    Ok(Measurement {
        shape,
        dtype,
        raw_bytes: raw.len(),
        wire_bytes: wire.len(),
        bytes_per_element: wire.len() as f64 / elements as f64,
        ratio: raw.len() as f64 / wire.len().max(1) as f64,
        error: ErrorStats::between(&reference, &bytes_to_f32(&decoded, dtype)),
        encode_gbps: raw.len() as f64 / best_encode / 1e9,
        decode_gbps: raw.len() as f64 / best_decode / 1e9,
    })
}

// ---------------------------------------------------------------------------------------------
// Allocation tracking

static PEAK_INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// A global allocator that tracks the peak of live bytes per thread, so the kit can bound
/// what a decoder allocates when fed hostile wire bytes.
pub struct PeakAllocator;

impl PeakAllocator {
    fn record(delta: isize) {
        PEAK_INSTALLED.store(true, Ordering::Relaxed);
        let _ = LIVE.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }
}

unsafe impl GlobalAlloc for PeakAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::record(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        Self::record(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            Self::record(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` and returns its result with the peak of bytes it allocated on this thread, when
/// [`PeakAllocator`] is the global allocator.
fn with_peak<T>(f: impl FnOnce() -> T) -> (T, Option<usize>) {
    let base = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(|p| p.get()) - base;
    let installed = PEAK_INSTALLED.load(Ordering::Relaxed);
    (out, installed.then_some(peak.max(0) as usize))
}

// ---------------------------------------------------------------------------------------------
// Conformance

/// One conformance check and its outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub outcome: Result<(), String>,
}

type Factory<'a> = dyn FnMut() -> Result<Box<dyn Codec>, CodecError> + 'a;

fn call<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, CodecError>,
) -> Result<Result<T, CodecError>, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Err(e)) if e.0.starts_with("the plugin panicked") => {
            Err(format!("{what} panicked: {e}"))
        }
        Ok(r) => Ok(r),
        Err(_) => Err(format!("{what} panicked")),
    }
}

fn raw_for(shape: [usize; 3], dtype: DType, seed: u64) -> Vec<u8> {
    f32_to_bytes(&synthetic_activations(shape, seed), dtype)
}

fn round_trip(
    make: &mut Factory<'_>,
    shape: [usize; 3],
    dtype: DType,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let raw = raw_for(shape, dtype, 7);
    let mut codec = make().map_err(|e| format!("creating the codec failed: {e}"))?;
    let view = TensorView::new(dtype, &shape, &raw).map_err(|e| e.to_string())?;
    let wire = call("encode", || codec.encode(&view))?
        .map_err(|e| format!("encode of {shape:?} {dtype} failed: {e}"))?;
    let decoded = call("decode", || codec.decode(&wire, &shape, dtype))?
        .map_err(|e| format!("decode of {shape:?} {dtype} failed: {e}"))?;
    if decoded.len() != raw.len() {
        return Err(format!(
            "decode of {shape:?} {dtype} returned {} bytes, expected {}",
            decoded.len(),
            raw.len()
        ));
    }
    Ok((raw, wire))
}

const SHAPES: [[usize; 3]; 3] = [[2, 5, 64], [1, 3, 100], [1, 4, 576]];

fn check_round_trip(make: &mut Factory<'_>) -> Result<(), String> {
    for dtype in DType::ALL {
        for shape in SHAPES {
            round_trip(make, shape, dtype)?;
        }
    }
    Ok(())
}

fn check_deterministic(make: &mut Factory<'_>) -> Result<(), String> {
    for dtype in DType::ALL {
        let (_, first) = round_trip(make, [2, 5, 64], dtype)?;
        let (_, second) = round_trip(make, [2, 5, 64], dtype)?;
        if first != second {
            return Err(format!(
                "two fresh instances encoded the same {dtype} tensor differently"
            ));
        }
    }
    Ok(())
}

fn check_small_shapes(make: &mut Factory<'_>) -> Result<(), String> {
    for shape in [[1, 0, 64], [0, 4, 64], [1, 1, 64], [1, 1, 1]] {
        round_trip(make, shape, DType::F32)?;
    }
    Ok(())
}

/// Decoding `wire` must give an error or exactly the shape's bytes, and allocate no more than
/// a few times what the shape needs.
fn decode_hostile(
    make: &mut Factory<'_>,
    wire: &[u8],
    shape: [usize; 3],
    dtype: DType,
    must_fail: bool,
) -> Result<(), String> {
    let mut codec = make().map_err(|e| format!("creating the codec failed: {e}"))?;
    let expected = shape.iter().product::<usize>() * dtype.size_in_bytes();
    let (result, peak) = with_peak(|| call("decode", || codec.decode(wire, &shape, dtype)));
    match result? {
        Ok(out) if must_fail => {
            return Err(format!(
                "decode accepted a truncated wire of {} bytes and returned {} bytes",
                wire.len(),
                out.len()
            ))
        }
        Ok(out) if out.len() != expected => {
            return Err(format!(
                "decode of {} hostile bytes returned {} bytes, expected {expected} or an error",
                wire.len(),
                out.len()
            ))
        }
        _ => {}
    }
    let bound = 4 * expected + (1 << 20);
    match peak {
        Some(peak) if peak > bound => Err(format!(
            "decode of {} hostile bytes allocated {peak} bytes at peak; the shape needs {expected}",
            wire.len()
        )),
        _ => Ok(()),
    }
}

fn check_truncated(make: &mut Factory<'_>) -> Result<(), String> {
    let shape = [2, 5, 64];
    for dtype in DType::ALL {
        let (_, wire) = round_trip(make, shape, dtype)?;
        for cut in [wire.len().saturating_sub(1), wire.len() / 2, 1, 0] {
            if cut < wire.len() {
                decode_hostile(make, &wire[..cut], shape, dtype, true)?;
            }
        }
    }
    Ok(())
}

fn check_random(make: &mut Factory<'_>) -> Result<(), String> {
    let shape = [2, 5, 64];
    let mut rng = StdRng::seed_from_u64(11);
    for dtype in DType::ALL {
        let (_, wire) = round_trip(make, shape, dtype)?;
        for round in 0..48 {
            let len = match round % 3 {
                0 => wire.len(),
                1 => rng.random_range(0..wire.len() * 2 + 8),
                _ => wire.len() + rng.random_range(1..64),
            };
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if round % 4 == 0 {
                // Keep the real prefix so headers parse and the decoder goes deeper.
                let keep = wire.len().min(len) / 2;
                bytes[..keep].copy_from_slice(&wire[..keep]);
            }
            decode_hostile(make, &bytes, shape, dtype, false)?;
        }
    }
    Ok(())
}

fn check_non_finite(make: &mut Factory<'_>) -> Result<(), String> {
    let shape = [1, 3, 64];
    let bad = [
        (3usize, f32::NAN),
        (70, f32::INFINITY),
        (150, f32::NEG_INFINITY),
    ];
    for dtype in DType::ALL {
        let mut values = synthetic_activations(shape, 5);
        for (i, v) in bad {
            values[i] = v;
        }
        let raw = f32_to_bytes(&values, dtype);
        let mut codec = make().map_err(|e| format!("creating the codec failed: {e}"))?;
        let view = TensorView::new(dtype, &shape, &raw).map_err(|e| e.to_string())?;
        let Ok(wire) = call("encode", || codec.encode(&view))? else {
            continue; // rejected with an error: allowed
        };
        let Ok(decoded) = call("decode", || codec.decode(&wire, &shape, dtype))? else {
            continue;
        };
        if decoded.len() != raw.len() {
            return Err(format!(
                "decode with NaN/Inf input returned {} bytes",
                decoded.len()
            ));
        }
        let out = bytes_to_f32(&decoded, dtype);
        for (i, _) in bad {
            if out[i].is_finite() {
                return Err(format!(
                    "{dtype}: non-finite input at {i} decoded to the finite value {}",
                    out[i]
                ));
            }
        }
        let spread = out
            .iter()
            .enumerate()
            .filter(|(i, v)| !v.is_finite() && !bad.iter().any(|(b, _)| b == i))
            .count();
        if spread > 0 {
            return Err(format!(
                "{dtype}: NaN/Inf in the input spread to {spread} other values; reject non-finite \
                 input with an error instead"
            ));
        }
    }
    Ok(())
}

fn check_synthetic(make: &mut Factory<'_>) -> Result<(), String> {
    let mut codec = make().map_err(|e| format!("creating the codec failed: {e}"))?;
    let m = measure(codec.as_mut(), [1, 16, 576], DType::F32, 3, 1).map_err(|e| e.to_string())?;
    if !m.error.rel_l2.is_finite() {
        return Err(format!(
            "relative L2 error on synthetic activations is {}",
            m.error.rel_l2
        ));
    }
    Ok(())
}

/// What a fuzzing run did.
#[derive(Debug, Clone, Default)]
pub struct FuzzReport {
    pub executions: usize,
    /// Inputs decoded to a tensor of the stated shape (hostile bytes that happen to be valid).
    pub accepted: usize,
    pub rejected: usize,
    /// Panics, wrong-length outputs or oversized allocations, with the case that caused them.
    pub findings: Vec<String>,
}

/// Feeds `decode` hostile wire bytes: real wires of random shapes and dtypes, truncated,
/// extended, with flipped bits, or replaced by random bytes. Every execution must give an
/// error or exactly the shape's bytes, never a panic (and, with [`PeakAllocator`] installed,
/// never an allocation beyond a few times the shape's size).
pub fn fuzz_decoder(
    mut make: impl FnMut() -> Result<Box<dyn Codec>, CodecError>,
    cases: usize,
    seed: u64,
) -> FuzzReport {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = FuzzReport::default();
    for case in 0..cases {
        let shape = [
            rng.random_range(1..3),
            rng.random_range(0..6),
            rng.random_range(1..200),
        ];
        let dtype = DType::ALL[rng.random_range(0..3)];
        let raw = raw_for(shape, dtype, case as u64);
        let Ok(mut codec) = make() else {
            report.findings.push("creating the codec failed".into());
            return report;
        };
        let Ok(view) = TensorView::new(dtype, &shape, &raw) else {
            continue;
        };
        let Ok(Ok(mut wire)) = call("encode", || codec.encode(&view)) else {
            report.findings.push(format!(
                "case {case}: encode of {shape:?} {dtype} failed or panicked"
            ));
            continue;
        };
        match rng.random_range(0..5) {
            0 => wire.truncate(rng.random_range(0..wire.len().max(1))),
            1 => wire.extend((0..rng.random_range(1..32)).map(|_| rng.random::<u8>())),
            2 if !wire.is_empty() => {
                for _ in 0..rng.random_range(1..8) {
                    let i = rng.random_range(0..wire.len());
                    wire[i] ^= 1 << rng.random_range(0..8);
                }
            }
            3 => {
                wire = (0..rng.random_range(0..wire.len() * 2 + 4))
                    .map(|_| rng.random())
                    .collect()
            }
            _ => wire.iter_mut().take(8).for_each(|b| *b = 0xFF),
        }
        let expected = shape.iter().product::<usize>() * dtype.size_in_bytes();
        let mut fresh = match make() {
            Ok(c) => c,
            Err(_) => continue,
        };
        let (result, peak) = with_peak(|| call("decode", || fresh.decode(&wire, &shape, dtype)));
        report.executions += 1;
        match result {
            Err(panic) => report.findings.push(format!(
                "case {case}: {shape:?} {dtype}, {} wire bytes: {panic}",
                wire.len()
            )),
            Ok(Ok(out)) if out.len() != expected => report.findings.push(format!(
                "case {case}: {shape:?} {dtype}: decoded {} bytes, expected {expected}",
                out.len()
            )),
            Ok(Ok(_)) => report.accepted += 1,
            Ok(Err(_)) => report.rejected += 1,
        }
        if let Some(peak) = peak.filter(|&p| p > 4 * expected + (1 << 20)) {
            report.findings.push(format!(
                "case {case}: decode allocated {peak} bytes for a {expected}-byte shape"
            ));
        }
    }
    report
}

/// Fuzzes the decoder of each `(codec, params)` made by `new_codec` and panics on any finding;
/// for a plugin crate's `cargo test`. Cases per configuration: `SPLITBENCH_FUZZ_CASES`, else
/// 2000.
pub fn assert_fuzz_clean(new_codec: crate::export::CodecFactory, configs: &[(&str, &str)]) {
    let cases = std::env::var("SPLITBENCH_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);
    for &(codec, params) in configs {
        let report = fuzz_decoder(|| new_codec(codec, params), cases, 1);
        assert!(
            report.findings.is_empty(),
            "{codec} {params}: {:#?}",
            report.findings
        );
        assert_eq!(
            report.executions, cases,
            "{codec} {params}: not every case ran"
        );
    }
}

/// Runs every conformance check on codecs made by `make` (a fresh instance per check).
pub fn conformance(mut make: impl FnMut() -> Result<Box<dyn Codec>, CodecError>) -> Vec<Check> {
    type CheckFn = fn(&mut Factory<'_>) -> Result<(), String>;
    let checks: [(&str, CheckFn); 7] = [
        ("round trip keeps shape, dtype and length", check_round_trip),
        ("encode is deterministic", check_deterministic),
        ("zero-size and single-token tensors", check_small_shapes),
        ("truncated wire gives an error", check_truncated),
        (
            "random wire gives an error or the stated shape",
            check_random,
        ),
        ("NaN/Inf carried through or rejected", check_non_finite),
        ("synthetic activations with outliers", check_synthetic),
    ];
    checks
        .into_iter()
        .map(|(name, check)| Check {
            name: name.to_string(),
            outcome: check(&mut make),
        })
        .collect()
}

/// Panics with every failed check listed; for a plugin crate's `cargo test`.
pub fn assert_conformance(make: impl FnMut() -> Result<Box<dyn Codec>, CodecError>) {
    let failures: Vec<String> = conformance(make)
        .into_iter()
        .filter_map(|c| c.outcome.err().map(|e| format!("- {}: {e}", c.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
}

/// What a test does when an input it needs is missing (a data file, a model, NVRTC, a C
/// compiler for the CUDA emulation): in CI (`CI` set) it fails, naming `test` and `why`;
/// elsewhere it prints SKIPPED and the caller returns.
pub fn missing_input(test: &str, why: impl std::fmt::Display) {
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    eprintln!("SKIPPED {test}: {why}");
}

/// Compiles a plugin's kernels with NVRTC for compute capability 9.0 and checks that every
/// kernel in `names` is in the PTX. Without NVRTC (no CUDA libraries on the library path) it
/// prints a SKIPPED line and returns: kernel source errors are caught wherever NVRTC is.
pub fn assert_kernels_compile(kernels: &crate::cuda::KernelSet, names: &[&str]) {
    if let Err(why) = crate::cuda::nvrtc_available() {
        missing_input("kernels compiled with NVRTC", why);
        return;
    }
    let ptx = kernels
        .compile_only((9, 0))
        .unwrap_or_else(|e| panic!("{}", e.0));
    let ptx = String::from_utf8_lossy(&ptx);
    for name in names {
        assert!(
            ptx.contains(&format!(".entry {name}")),
            "kernel {name} missing from the PTX"
        );
    }
}

/// Sets up the CPU emulation of CUDA once per process: the emulated driver and NVRTC
/// (`emulator/`) built with the system's C compiler, loaded in place of the real ones. The
/// libraries are kept in the system's temp folder, one folder per version of their sources,
/// so later test processes reuse them instead of leaving a folder each.
fn emulated_cuda() -> Result<(), String> {
    static SETUP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    SETUP
        .get_or_init(|| {
            let files = [
                ("kernels.h", include_str!("emulator/kernels.h")),
                ("driver.c", include_str!("emulator/driver.c")),
                ("nvrtc.c", include_str!("emulator/nvrtc.c")),
            ];
            let version = {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                files.hash(&mut hasher);
                hasher.finish()
            };
            let dir = std::env::temp_dir().join(format!("splitbench-emu-{version:016x}"));
            if !EMULATOR_FILES.iter().all(|name| dir.join(name).exists()) {
                build_emulator(&dir, &files)?;
            }
            let cxx = std::process::Command::new("c++").arg("--version").output();
            if !cxx.is_ok_and(|o| o.status.success()) {
                return Err("no C++ compiler (c++) to compile kernels with".into());
            }
            if !crate::cuda::use_libraries(
                &dir.join("libcuda-emu.so"),
                &dir.join("libnvrtc-emu.so"),
            ) {
                return Err("CUDA libraries were chosen before the emulation".into());
            }
            Ok(())
        })
        .clone()
}

/// A stream of the CPU emulation of CUDA, for tests that run kernels (a plugin's, or the
/// host's own) on host memory standing in for device memory: device pointers are host
/// addresses, kernels run as C++ with every CUDA thread an OS thread, and device-to-host
/// copies land only when the stream is synchronized. Err (with why) where the emulation
/// cannot be built: no C/C++ compiler.
pub fn emulated_stream() -> Result<crate::cuda::CudaStream, String> {
    emulated_cuda()?;
    Ok(crate::cuda::CudaStream {
        context: 1,
        stream: 1,
        device_ordinal: 0,
        compute_capability: (9, 0),
    })
}

/// What the emulator's folder holds: the driver compiles each module with `kernels.h` from
/// its own folder.
const EMULATOR_FILES: [&str; 3] = ["kernels.h", "libcuda-emu.so", "libnvrtc-emu.so"];

/// Builds the emulated driver and NVRTC into `dir`. Each process builds in a folder of its
/// own and renames the results into place, so processes starting together never load a
/// half-written file.
fn build_emulator(dir: &std::path::Path, files: &[(&str, &str)]) -> Result<(), String> {
    let build = dir.join(format!("build-{}", std::process::id()));
    let built = (|| {
        std::fs::create_dir_all(&build).map_err(|e| format!("{}: {e}", build.display()))?;
        for (name, text) in files {
            std::fs::write(build.join(name), text).map_err(|e| format!("{name}: {e}"))?;
        }
        for (source, library) in [
            ("driver.c", "libcuda-emu.so"),
            ("nvrtc.c", "libnvrtc-emu.so"),
        ] {
            let out = std::process::Command::new("cc")
                .args(["-shared", "-fPIC", "-O1", "-pthread", "-o"])
                .arg(build.join(library))
                .arg(build.join(source))
                .arg("-ldl")
                .output()
                .map_err(|e| format!("no C compiler (cc): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "cc {source}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        for name in EMULATOR_FILES {
            std::fs::rename(build.join(name), dir.join(name))
                .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&build);
    built
}

/// Host memory standing in for device memory, 8-byte aligned like any element type needs.
struct EmulatedBuffer(Vec<u64>, usize);

impl EmulatedBuffer {
    fn zeroed(len: usize) -> Self {
        EmulatedBuffer(vec![0; len.div_ceil(8).max(1)], len)
    }
    fn from_bytes(bytes: &[u8]) -> Self {
        let mut buffer = EmulatedBuffer::zeroed(bytes.len());
        buffer.bytes_mut().copy_from_slice(bytes);
        buffer
    }
    fn ptr(&mut self) -> u64 {
        self.0.as_mut_ptr() as u64
    }
    fn bytes(&self) -> &[u8] {
        &bytemuck_bytes(&self.0)[..self.1]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.1;
        // SAFETY: u64 storage viewed as bytes; every byte pattern is valid for both.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

fn bytemuck_bytes(words: &[u64]) -> &[u8] {
    // SAFETY: u64 storage viewed as bytes; every byte pattern is valid for both.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
}

/// Runs a plugin's device codec through a CPU emulation of CUDA — its kernel source compiled
/// as C++ (`emulator/kernels.h`), every CUDA thread an OS thread, warps in lockstep — and checks
/// that it writes the host path's wire byte for byte and decodes it to the host path's bytes,
/// for each `(codec, params)` in f32, f16 and bf16 and several shapes (partial blocks, codes
/// across byte boundaries, massive activations). NaN input must be refused by both paths or
/// carried by both. Prints SKIPPED without a C/C++ compiler. What it cannot show: that the PTX
/// conversion instructions round as the emulation's software ones (both are IEEE round to
/// nearest even), or anything about speed; `splitbench run --verify-wire` on a GPU does that.
pub fn assert_device_matches_host(
    new_codec: crate::export::CodecFactory,
    new_device_codec: crate::device::DeviceCodecFactory,
    configs: &[(&str, &str)],
) {
    use crate::cuda::CudaStream;
    use crate::device::{DeviceBuffer, DeviceTensor};
    if let Err(why) = emulated_cuda() {
        missing_input("device codecs under the CUDA emulation", why);
        return;
    }
    let cuda = CudaStream {
        context: 1,
        stream: 1,
        device_ordinal: 0,
        compute_capability: (9, 0),
    };
    let cases: Vec<([usize; 3], DType)> = [[1, 3, 64], [2, 5, 130]]
        .into_iter()
        .flat_map(|shape| DType::ALL.map(|dtype| (shape, dtype)))
        .chain([([1, 4, 1000], DType::BF16)])
        .collect();
    for &(name, params) in configs {
        let what = |shape: &[usize; 3], dtype: DType| format!("{name} {params} {shape:?} {dtype}");
        let mut host =
            new_codec(name, params).unwrap_or_else(|e| panic!("{name} {params}: {}", e.0));
        let mut device = new_device_codec(name, params)
            .unwrap_or_else(|e| panic!("{name} {params}: {}", e.0))
            .unwrap_or_else(|| panic!("{name} {params} has no device path"));
        for (shape, dtype) in &cases {
            let mut values = synthetic_activations(*shape, 11);
            for nan in [false, true] {
                if nan {
                    values[shape[2] + 1] = f32::NAN;
                }
                let raw = crate::convert::f32_to_bytes(&values, *dtype);
                let host_wire =
                    TensorView::new(*dtype, shape, &raw).and_then(|view| host.encode(&view));
                let capacity = device
                    .max_wire_len(shape, *dtype)
                    .unwrap_or_else(|e| panic!("{}: max_wire_len: {}", what(shape, *dtype), e.0));
                let mut input = EmulatedBuffer::from_bytes(&raw);
                let mut wire = EmulatedBuffer::zeroed(capacity);
                let wire_ptr = wire.ptr();
                let tensor = DeviceTensor {
                    dtype: *dtype,
                    shape,
                    ptr: input.ptr(),
                };
                let buffer = DeviceBuffer {
                    ptr: wire_ptr,
                    len: 0,
                    capacity,
                };
                let device_len = device.encode(&cuda, &tensor, buffer);
                let (host_wire, len) = match (host_wire, device_len) {
                    (Ok(h), Ok(len)) => (h, len),
                    (Err(_), Err(_)) => continue,
                    (h, d) => panic!(
                        "{}{}: host encode {:?}, device encode {:?}",
                        what(shape, *dtype),
                        if nan { " with a NaN" } else { "" },
                        h.map(|w| w.len()),
                        d
                    ),
                };
                if nan {
                    // Carried by both; NaN payload bits may differ, so only lengths compare.
                    assert_eq!(len, host_wire.len(), "{} with a NaN", what(shape, *dtype));
                    continue;
                }
                let device_wire = &wire.bytes()[..len];
                if let Some(i) = device_wire.iter().zip(&host_wire).position(|(a, b)| a != b) {
                    panic!(
                        "{}: device wire differs from the host path's at byte {i} of {len}",
                        what(shape, *dtype)
                    );
                }
                assert_eq!(len, host_wire.len(), "{}: wire length", what(shape, *dtype));
                let mut output = EmulatedBuffer::zeroed(raw.len());
                let out_tensor = DeviceTensor {
                    dtype: *dtype,
                    shape,
                    ptr: output.ptr(),
                };
                let buffer = DeviceBuffer {
                    ptr: wire_ptr,
                    len,
                    capacity,
                };
                device
                    .decode(&cuda, buffer, &out_tensor)
                    .unwrap_or_else(|e| panic!("{}: device decode: {}", what(shape, *dtype), e.0));
                let host_decoded = host
                    .decode(&host_wire, shape, *dtype)
                    .unwrap_or_else(|e| panic!("{}: host decode: {}", what(shape, *dtype), e.0));
                if let Some(i) = output
                    .bytes()
                    .iter()
                    .zip(&host_decoded)
                    .position(|(a, b)| a != b)
                {
                    panic!(
                        "{}: device decode differs from the host path's at byte {i}",
                        what(shape, *dtype)
                    );
                }
            }
        }
    }
}
