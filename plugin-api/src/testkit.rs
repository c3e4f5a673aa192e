//! Conformance kit for codec authors, and the measurements `splitbench codec-check` prints.
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
use crate::{Codec, CodecError, DType, TensorView};

// ---------------------------------------------------------------------------------------------
// Synthetic activations

/// LLM-like hidden states, `[batch, tokens, hidden]`, flattened.
///
/// The bulk is Gaussian with per-channel scales of order 1. As in real residual streams
/// (measured on SmolLM2-135M: one channel reaches ~24,000 after the middle layers), a few
/// "massive activation" channels carry values in the hundreds on every token, and the first
/// token of each sequence (the attention sink) reaches ~24,000 in one of them.
pub fn synthetic_activations(shape: [usize; 3], seed: u64) -> Vec<f32> {
    let [batch, tokens, hidden] = shape;
    let mut rng = StdRng::seed_from_u64(seed);
    let channel_scale: Vec<f32> = (0..hidden)
        .map(|_| (0.5 * gaussian(&mut rng)).exp() * 0.8)
        .collect();
    let massive: Vec<usize> = if hidden >= 8 {
        vec![hidden * 13 / 100, hidden * 71 / 100, hidden * 97 / 100]
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(batch * tokens * hidden);
    for _ in 0..batch {
        for t in 0..tokens {
            let token_scale = (0.25 * gaussian(&mut rng)).exp();
            for (c, scale) in channel_scale.iter().enumerate() {
                let mut v = gaussian(&mut rng) * scale * token_scale;
                if let Some(rank) = massive.iter().position(|&m| m == c) {
                    let magnitude = match (rank, t) {
                        (0, 0) => 24_000.0,
                        (0, _) => 300.0 + 100.0 * rng.random::<f32>(),
                        (1, _) => -(150.0 + 50.0 * rng.random::<f32>()),
                        _ => 40.0 + 20.0 * rng.random::<f32>(),
                    };
                    v += magnitude;
                }
                out.push(v);
            }
        }
    }
    out
}

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller; 1 - u keeps the log argument in (0, 1].
    let u: f32 = 1.0 - rng.random::<f32>();
    let v: f32 = rng.random::<f32>();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
}

// ---------------------------------------------------------------------------------------------
// Error statistics

/// JSON has no NaN or infinity: serde_json writes them as `null`. Reads `null` back as NaN.
pub fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Reads `null` back as +∞ (an SNR of an exact reconstruction).
pub fn null_as_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

/// How far a reconstruction is from its reference.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorStats {
    /// ||x - y|| / ||x||
    #[serde(deserialize_with = "null_as_nan")]
    pub rel_l2: f64,
    /// 10 log10(||x||² / ||x - y||²); infinite for an exact reconstruction (`null` in JSON).
    #[serde(deserialize_with = "null_as_infinity")]
    pub snr_db: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub max_abs: f64,
}

impl ErrorStats {
    pub fn between(reference: &[f32], decoded: &[f32]) -> ErrorStats {
        let mut signal = 0f64;
        let mut noise = 0f64;
        let mut max_abs = 0f64;
        for (&x, &y) in reference.iter().zip(decoded) {
            let d = f64::from(x) - f64::from(y);
            signal += f64::from(x) * f64::from(x);
            noise += d * d;
            max_abs = max_abs.max(d.abs());
        }
        ErrorStats {
            rel_l2: if signal > 0.0 {
                (noise / signal).sqrt()
            } else {
                noise.sqrt()
            },
            snr_db: if noise > 0.0 {
                10.0 * (signal / noise).log10()
            } else {
                f64::INFINITY
            },
            max_abs,
        }
    }
}

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

/// Compiles a plugin's kernels with NVRTC for compute capability 9.0 and checks that every
/// kernel in `names` is in the PTX. Without NVRTC (no CUDA libraries on the library path) it
/// prints a SKIPPED line and returns: kernel source errors are caught wherever NVRTC is.
pub fn assert_kernels_compile(kernels: &crate::cuda::KernelSet, names: &[&str]) {
    if let Err(why) = crate::cuda::nvrtc_available() {
        eprintln!("SKIPPED: kernels not compiled: {why}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stats_by_hand() {
        // x = (3, 4), y = (3, 3): ||x|| = 5, ||x - y|| = 1.
        let s = ErrorStats::between(&[3.0, 4.0], &[3.0, 3.0]);
        assert!((s.rel_l2 - 0.2).abs() < 1e-12);
        assert!((s.snr_db - 10.0 * 25f64.log10()).abs() < 1e-9);
        assert_eq!(s.max_abs, 1.0);
        assert_eq!(ErrorStats::between(&[1.0], &[1.0]).snr_db, f64::INFINITY);
    }

    #[test]
    fn synthetic_has_massive_activations() {
        let x = synthetic_activations([1, 8, 576], 1);
        let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 20_000.0, "max {max}");
        let mut sorted: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!(median > 0.2 && median < 2.0, "median {median}");
        assert_eq!(x, synthetic_activations([1, 8, 576], 1));
    }
}
