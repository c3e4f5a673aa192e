//! The calibrated codecs' checks: fitting is deterministic, a fitted codec passes every
//! conformance check and the decoder fuzzer at its hidden size, and hostile states are refused.

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::conformance::{conformance_at, failures};
use super::fuzz::{fuzz_cases, fuzz_decoder_at};
use super::peak::with_peak;
use super::{call, raw_for, HiddenSize};
use crate::calibration::Calibration;
use crate::{Codec, CodecError, DType, TensorView};

/// Hidden sizes the codecs are fitted to: a multiple of 8 and one that packs unevenly.
const HIDDEN_SIZES: [usize; 2] = [64, 100];
/// Tokens of synthetic activations each fit sees.
const CALIBRATION_ROWS: usize = 512;
/// Seed of the calibration activations; the checks encode others (seeds below 100).
const CALIBRATION_SEED: u64 = 1001;

/// Runs the calibrated checks on each `(codec, params)` of `calibration`'s family and panics
/// with every failure listed; for a plugin crate's `cargo test`. Each case must fit hidden
/// sizes 64 and 100. Cases with different codec names must refuse each other's states.
pub fn assert_calibrated_conformance(calibration: Calibration, cases: &[(&str, &str)]) {
    let found = calibrated_conformance(calibration, cases);
    assert!(
        found.is_empty(),
        "calibrated conformance failures:\n{}",
        found.join("\n")
    );
}

/// The failures [`assert_calibrated_conformance`] lists.
fn calibrated_conformance(calibration: Calibration, cases: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut states = Vec::new();
    for &(codec, params) in cases {
        let kit = Kit {
            calibration,
            codec,
            params,
        };
        let (case_failures, state) = kit.run();
        found.extend(
            case_failures
                .into_iter()
                .map(|f| format!("{codec} {params}: {f}")),
        );
        states.extend(state.map(|s| (codec, params, s)));
    }
    for &(codec, params, _) in &states {
        for (other, other_params, state) in states.iter().filter(|(c, ..)| *c != codec) {
            let kit = Kit {
                calibration,
                codec,
                params,
            };
            if let Err(e) = kit.refuses(state, "another codec's state") {
                found.push(format!(
                    "{codec} {params} given {other} {other_params}'s state: {e}"
                ));
            }
        }
    }
    found
}

/// One `(codec, params)` of a family under test.
struct Kit<'a> {
    calibration: Calibration,
    codec: &'a str,
    params: &'a str,
}

impl Kit<'_> {
    /// Every check of this case, and its f32 state at the first hidden size.
    fn run(&self) -> (Vec<String>, Option<Vec<u8>>) {
        match call("needs_calibration", || {
            (self.calibration.needs_calibration)(self.codec, self.params)
        }) {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return (vec!["needs_calibration is false".into()], None),
            Ok(Err(e)) => return (vec![format!("needs_calibration refused: {e}")], None),
            Err(panic) => return (vec![panic], None),
        }
        let mut found = Vec::new();
        let mut first_state = None;
        for hidden in HIDDEN_SIZES {
            for dtype in DType::ALL {
                let state = match self.fit(hidden, dtype) {
                    Ok(state) => state,
                    Err(e) => {
                        found.push(format!("hidden {hidden}, {dtype} samples: {e}"));
                        continue;
                    }
                };
                let checks = conformance_at(|| self.codec_from(&state), HiddenSize::Fitted(hidden));
                found.extend(
                    failures(checks)
                        .into_iter()
                        .chain(self.instances_agree(&state, hidden).err())
                        .map(|f| format!("hidden {hidden}, {dtype} samples: {f}")),
                );
                if dtype == DType::F32 {
                    found.extend(self.hostile_states(&state, hidden).err());
                    let cases = fuzz_cases();
                    let report = fuzz_decoder_at(
                        || self.codec_from(&state),
                        HiddenSize::Fitted(hidden),
                        cases,
                        1,
                    );
                    found.extend(
                        report
                            .problem(cases)
                            .map(|p| format!("hidden {hidden}, fuzzing the decoder: {p}")),
                    );
                    first_state.get_or_insert(state);
                }
            }
        }
        (found, first_state)
    }

    fn codec_from(&self, state: &[u8]) -> Result<Box<dyn Codec>, CodecError> {
        (self.calibration.new_codec)(self.codec, self.params, state)
    }

    /// Fits twice on the same samples; the two states must be identical.
    fn fit(&self, hidden: usize, dtype: DType) -> Result<Vec<u8>, String> {
        let shape = [1, CALIBRATION_ROWS, hidden];
        let raw = raw_for(shape, dtype, CALIBRATION_SEED);
        let samples = TensorView::new(dtype, &shape, &raw).map_err(|e| e.to_string())?;
        let calibrate = || {
            call("calibrate", || {
                (self.calibration.calibrate)(self.codec, self.params, &samples)
            })
        };
        let first = calibrate()?.map_err(|e| format!("calibrate failed: {e}"))?;
        let second = calibrate()?.map_err(|e| format!("calibrate failed: {e}"))?;
        if first != second {
            return Err("two fits on the same samples gave different states".into());
        }
        Ok(first)
    }

    /// A wire that one instance writes, another made from the same state decodes to the
    /// same tensor (the sender and the receiver of a link are two instances).
    fn instances_agree(&self, state: &[u8], hidden: usize) -> Result<(), String> {
        let shape = [2, 5, hidden];
        for dtype in DType::ALL {
            let raw = raw_for(shape, dtype, 17);
            let view = TensorView::new(dtype, &shape, &raw).map_err(|e| e.to_string())?;
            let (mut sender, mut receiver) = (self.made(state)?, self.made(state)?);
            let wire = call("encode", || sender.encode(&view))?
                .map_err(|e| format!("encode of {shape:?} {dtype} failed: {e}"))?;
            let mine = call("decode", || sender.decode(&wire, &shape, dtype))?
                .map_err(|e| format!("decode failed: {e}"))?;
            let theirs = call("decode", || receiver.decode(&wire, &shape, dtype))?
                .map_err(|e| format!("decode in a second instance failed: {e}"))?;
            if mine != theirs {
                return Err(format!(
                    "two instances from one state decode a {dtype} wire differently"
                ));
            }
        }
        Ok(())
    }

    fn made(&self, state: &[u8]) -> Result<Box<dyn Codec>, String> {
        call("new_codec", || self.codec_from(state))?
            .map_err(|e| format!("creating the codec from its state failed: {e}"))
    }

    /// `new_codec` must refuse `state` with an error: no codec, no panic, no allocation
    /// beyond a few times the state's size.
    fn refuses(&self, state: &[u8], what: &str) -> Result<(), String> {
        match self.accepts(state)? {
            Some(_) => Err(format!("new_codec accepted {what} ({} bytes)", state.len())),
            None => Ok(()),
        }
    }

    /// The codec `state` makes, `None` if refused; a panic or an oversized allocation is an
    /// error.
    fn accepts(&self, state: &[u8]) -> Result<Option<Box<dyn Codec>>, String> {
        let (made, peak) = with_peak(|| call("new_codec", || self.codec_from(state)));
        let bound = 8 * state.len() + (1 << 20);
        if let Some(peak) = peak.filter(|&p| p > bound) {
            return Err(format!(
                "new_codec allocated {peak} bytes for a {}-byte state",
                state.len()
            ));
        }
        Ok(made?.ok())
    }

    /// Truncated, extended, re-labelled and bit-flipped states, and inputs of another hidden
    /// size than the state's.
    fn hostile_states(&self, state: &[u8], hidden: usize) -> Result<(), String> {
        let at = |e: String| format!("hidden {hidden}, hostile state: {e}");
        for cut in [state.len().saturating_sub(1), state.len() / 2, 1, 0] {
            if cut < state.len() {
                self.refuses(&state[..cut], "a truncated state")
                    .map_err(at)?;
            }
        }
        let mut extended = state.to_vec();
        extended.push(0);
        self.refuses(&extended, "a state with a trailing byte")
            .map_err(at)?;
        let mut relabelled = state.to_vec();
        if let Some(first) = relabelled.first_mut() {
            *first ^= 0xFF;
        }
        self.refuses(&relabelled, "a state with another magic")
            .map_err(at)?;
        self.wrong_hidden(state, hidden).map_err(at)?;
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..64 {
            let mut flipped = state.to_vec();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..flipped.len());
                flipped[i] ^= 1 << rng.random_range(0..8);
            }
            if let Some(mut codec) = self.accepts(&flipped).map_err(at)? {
                // Accepted (a flipped value in a table, say): the codec must still work.
                let shape = [1, 3, hidden];
                let raw = raw_for(shape, DType::F32, 5);
                let view = TensorView::new(DType::F32, &shape, &raw).map_err(|e| e.to_string())?;
                if let Ok(wire) = call("encode", || codec.encode(&view)).map_err(at)? {
                    let decoded = call("decode", || codec.decode(&wire, &shape, DType::F32));
                    if let Ok(out) = decoded.map_err(at)? {
                        if out.len() != raw.len() {
                            return Err(at(format!(
                                "a codec from a bit-flipped state decoded {} bytes, expected {}",
                                out.len(),
                                raw.len()
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Encoding or decoding a tensor of another hidden size than the fitted one is an error.
    fn wrong_hidden(&self, state: &[u8], hidden: usize) -> Result<(), String> {
        let mut codec = self.made(state)?;
        let fitted = [1, 3, hidden];
        let other = [1, 3, hidden + 1];
        let raw = raw_for(other, DType::F32, 5);
        let view = TensorView::new(DType::F32, &other, &raw).map_err(|e| e.to_string())?;
        if call("encode", || codec.encode(&view))?.is_ok() {
            return Err(format!(
                "encode accepted hidden {} for a state fitted to {hidden}",
                hidden + 1
            ));
        }
        let raw = raw_for(fitted, DType::F32, 5);
        let view = TensorView::new(DType::F32, &fitted, &raw).map_err(|e| e.to_string())?;
        let wire = call("encode", || codec.encode(&view))?.map_err(|e| e.to_string())?;
        if call("decode", || codec.decode(&wire, &other, DType::F32))?.is_ok() {
            return Err(format!(
                "decode accepted hidden {} for a state fitted to {hidden}",
                hidden + 1
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
