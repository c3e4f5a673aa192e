//! The conformance checks: round trips, determinism, small shapes, hostile wires, NaN/Inf.

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::measure::measure;
use super::peak::with_peak;
use super::{call, raw_for, HiddenSize};
use crate::convert::{bytes_to_f32, f32_to_bytes};
use crate::measure::synthetic_activations;
use crate::{Codec, CodecError, DType, TensorView};

/// One conformance check and its outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub outcome: Result<(), String>,
}

type Factory<'a> = dyn FnMut() -> Result<Box<dyn Codec>, CodecError> + 'a;

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

fn check_round_trip(make: &mut Factory<'_>, hidden: HiddenSize) -> Result<(), String> {
    for dtype in DType::ALL {
        for shape in SHAPES {
            round_trip(make, hidden.fit(shape), dtype)?;
        }
    }
    Ok(())
}

fn check_deterministic(make: &mut Factory<'_>, hidden: HiddenSize) -> Result<(), String> {
    let shape = hidden.fit([2, 5, 64]);
    for dtype in DType::ALL {
        let (_, first) = round_trip(make, shape, dtype)?;
        let (_, second) = round_trip(make, shape, dtype)?;
        if first != second {
            return Err(format!(
                "two fresh instances encoded the same {dtype} tensor differently"
            ));
        }
    }
    Ok(())
}

fn check_small_shapes(make: &mut Factory<'_>, hidden: HiddenSize) -> Result<(), String> {
    for shape in [[1, 0, 64], [0, 4, 64], [1, 1, 64], [1, 1, 1]] {
        round_trip(make, hidden.fit(shape), DType::F32)?;
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

fn check_truncated(make: &mut Factory<'_>, hidden: HiddenSize) -> Result<(), String> {
    let shape = hidden.fit([2, 5, 64]);
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

fn check_random(make: &mut Factory<'_>, hidden: HiddenSize) -> Result<(), String> {
    let shape = hidden.fit([2, 5, 64]);
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

fn check_non_finite(make: &mut Factory<'_>, hidden: HiddenSize) -> Result<(), String> {
    let shape = hidden.fit([1, 3, 64]);
    let h = shape[2];
    // One bad value per token: at 3, 70 and 150 for hidden 64.
    let bad = [
        (3 % h, f32::NAN),
        (h + 6 % h, f32::INFINITY),
        (2 * h + 22 % h, f32::NEG_INFINITY),
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

fn check_synthetic(make: &mut Factory<'_>, hidden: HiddenSize) -> Result<(), String> {
    let mut codec = make().map_err(|e| format!("creating the codec failed: {e}"))?;
    let shape = hidden.fit([1, 16, 576]);
    let m = measure(codec.as_mut(), shape, DType::F32, 3, 1).map_err(|e| e.to_string())?;
    if !m.error.rel_l2.is_finite() {
        return Err(format!(
            "relative L2 error on synthetic activations is {}",
            m.error.rel_l2
        ));
    }
    Ok(())
}

/// Runs every conformance check on codecs made by `make` (a fresh instance per check).
pub fn conformance(make: impl FnMut() -> Result<Box<dyn Codec>, CodecError>) -> Vec<Check> {
    conformance_at(make, HiddenSize::Any)
}

/// [`conformance`] on tensors of `hidden`'s hidden size.
pub(super) fn conformance_at(
    mut make: impl FnMut() -> Result<Box<dyn Codec>, CodecError>,
    hidden: HiddenSize,
) -> Vec<Check> {
    type CheckFn = fn(&mut Factory<'_>, HiddenSize) -> Result<(), String>;
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
            outcome: check(&mut make, hidden),
        })
        .collect()
}

/// The failed checks, one line each.
pub(super) fn failures(checks: Vec<Check>) -> Vec<String> {
    checks
        .into_iter()
        .filter_map(|c| c.outcome.err().map(|e| format!("- {}: {e}", c.name)))
        .collect()
}

/// Panics with every failed check listed; for a plugin crate's `cargo test`.
pub fn assert_conformance(make: impl FnMut() -> Result<Box<dyn Codec>, CodecError>) {
    let failures = failures(conformance(make));
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
}
