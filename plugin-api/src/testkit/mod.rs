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
//!
//! A family with calibrated codecs runs [`assert_calibrated_conformance`] on its
//! [`Calibration`](crate::calibration::Calibration) instead: the same checks on codecs fitted
//! to synthetic activations, plus the state's own (deterministic fitting, hostile states).

mod calibrated;
mod conformance;
mod device;
mod emulation;
mod fuzz;
mod measure;
mod peak;

pub use calibrated::assert_calibrated_conformance;
pub use conformance::{assert_conformance, conformance, Check};
pub use device::{assert_device_matches_host, assert_kernels_compile};
pub use emulation::emulated_stream;
pub use fuzz::{assert_fuzz_clean, fuzz_decoder, FuzzReport};
pub use measure::{measure, Measurement};
pub use peak::PeakAllocator;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::convert::f32_to_bytes;
use crate::measure::synthetic_activations;
use crate::{CodecError, DType};

/// What a test does when an input it needs is missing (a data file, a model, NVRTC, a C
/// compiler for the CUDA emulation): in CI (`CI` set) it fails, naming `test` and `why`;
/// elsewhere it prints SKIPPED and the caller returns.
pub fn missing_input(test: &str, why: impl std::fmt::Display) {
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    eprintln!("SKIPPED {test}: {why}");
}

/// Runs a codec call, turning a panic (caught here or by the plugin's export wrapper) into a
/// finding: `Err` is a panic, `Ok(Err)` an error the codec returned.
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

/// The hidden sizes a check encodes: any (a data-free codec), or the one size a calibrated
/// codec was fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HiddenSize {
    Any,
    Fitted(usize),
}

impl HiddenSize {
    /// `shape` with its hidden size replaced by the fitted one.
    fn fit(self, shape: [usize; 3]) -> [usize; 3] {
        match self {
            HiddenSize::Any => shape,
            HiddenSize::Fitted(hidden) => [shape[0], shape[1], hidden],
        }
    }
}

/// Synthetic activations in `dtype`: what the checks encode.
fn raw_for(shape: [usize; 3], dtype: DType, seed: u64) -> Vec<u8> {
    f32_to_bytes(&synthetic_activations(shape, seed), dtype)
}
