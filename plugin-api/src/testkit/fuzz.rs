//! Decoder fuzzing: real wires mutated into hostile ones.

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::peak::with_peak;
use super::{call, raw_for, HiddenSize};
use crate::{Codec, CodecError, DType, TensorView};

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
    make: impl FnMut() -> Result<Box<dyn Codec>, CodecError>,
    cases: usize,
    seed: u64,
) -> FuzzReport {
    fuzz_decoder_at(make, HiddenSize::Any, cases, seed)
}

/// [`fuzz_decoder`] on wires of `hidden`'s hidden size.
pub(super) fn fuzz_decoder_at(
    mut make: impl FnMut() -> Result<Box<dyn Codec>, CodecError>,
    hidden: HiddenSize,
    cases: usize,
    seed: u64,
) -> FuzzReport {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = FuzzReport::default();
    for case in 0..cases {
        let shape = hidden.fit([
            rng.random_range(1..3),
            rng.random_range(0..6),
            rng.random_range(1..200),
        ]);
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
    let cases = fuzz_cases();
    for &(codec, params) in configs {
        let report = fuzz_decoder(|| new_codec(codec, params), cases, 1);
        if let Some(problem) = report.problem(cases) {
            panic!("{codec} {params}: {problem}");
        }
    }
}

/// Cases per fuzzed configuration: `SPLITBENCH_FUZZ_CASES`, else 2000.
pub(super) fn fuzz_cases() -> usize {
    std::env::var("SPLITBENCH_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000)
}

impl FuzzReport {
    /// What is wrong with a run of `cases` cases: findings, or cases that never ran.
    pub(super) fn problem(&self, cases: usize) -> Option<String> {
        if !self.findings.is_empty() {
            Some(format!("{:#?}", self.findings))
        } else if self.executions != cases {
            Some(format!("{} of {cases} cases ran", self.executions))
        } else {
            None
        }
    }
}
