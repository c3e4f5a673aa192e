//! `hqq`: Half-Quadratic Quantization of the hidden state, as the `hqq` library (0.2.8)
//! computes `Quantizer.quantize(x, nbits, group_size, axis=1, optimize=True)` on a CPU.
//!
//! Every token's hidden vector is cut into groups of `group` values (the last may be shorter,
//! where the library requires the size to divide the tensor). Per group, in f32:
//! 1. min/max initialization: `scale = (2^bits - 1) / (max - min)` (1 where
//!    `|max - min| <= 1e-4`, at most 2e4), `zero = -min * scale` (the library works with the
//!    inverse scale: `q = round(x * scale + zero)`).
//! 2. its default zero-point optimizer (`optimize_weights_proximal_legacy`): 20 iterations of
//!    `q = clamp(round(x * scale + zero), 0, 2^bits - 1)`, `r = (q - zero) / scale`,
//!    `e = shrink_lp(x - r)` (p = 0.7, beta = 10), `zero = mean(q - (x - e) * scale)`, stopped
//!    early as the library does: after each step, when the mean |x - r| over the *whole tensor*
//!    is not below the best so far, it stops, keeping the zero that step just computed. The
//!    library's `kappa` (1.01) only enters its v2 optimizer; the default one never grows beta.
//! 3. codes `clamp(round(x * scale + zero), 0, 2^bits - 1)` with the final zero.
//!
//! Rounding is half to even (`torch.round`). The scale sent is `1 / scale`, and it and the zero
//! are rounded to the model dtype (the prototype's `compute_dtype`); decoding is
//! `(q - zero) * scale` with each operation rounded to the model dtype, as HQQLinear's
//! dequantize does on `compute_dtype` tensors. Not bit-exact with the library: its group means
//! and its whole-tensor error are f32 sums in an order that depends on the CPU's vector width
//! (here: f64 sums, rounded once), and its `pow` is vectorized; the last bits of a zero point
//! differ, which moves a code by one step on a few values in 10^4 (scripts/compare_codecs.py).
//!
//! Wire (little-endian): every group's scale in the model dtype (4 or 2 bytes), then every
//! group's zero in the model dtype, then all codes, `bits` each, bit-packed LSB-first over the
//! whole tensor. Non-finite input is rejected: it would poison its group and the stopping rule.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::{f32_to_bytes, read_value, round_to, write_value},
    export_plugin, params,
    quant::finite_values,
    range::min_max,
    wire::{self, WireReader},
    Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HqqParams {
    pub bits: u32,
    pub group: usize,
}

impl Default for HqqParams {
    fn default() -> Self {
        // The library's defaults (nbits 4, group_size 64), as the prototype ran it.
        HqqParams { bits: 4, group: 64 }
    }
}

const DOCS: &[(&str, &str)] = &[
    ("bits", "bits per value, 1..=8"),
    (
        "group",
        "values per scale and zero, along the hidden dimension within a token",
    ),
];

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "hqq".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Half-Quadratic Quantization (hqq library): min/max init, proximal \
                      zero-point optimizer"
            .into(),
        codecs: vec![CodecInfo::new::<HqqParams>(
            "hqq",
            "HQQ intN per group: scale and zero in the model dtype, bit-packed codes",
            DOCS,
        )],
    }
}

/// Largest `group` accepted: far above any hidden size.
const MAX_GROUP: usize = 1 << 24;

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    if name != "hqq" {
        return Err(info().unknown_codec(name));
    }
    let p: HqqParams = params::parse(name, params_json)?;
    if !(1..=8).contains(&p.bits) {
        return Err(CodecError::new(format!(
            "`bits` must be in 1..=8, got {}",
            p.bits
        )));
    }
    if !(1..=MAX_GROUP).contains(&p.group) {
        return Err(CodecError::new(format!(
            "`group` must be in 1..={MAX_GROUP}, got {}",
            p.group
        )));
    }
    Ok(Box::new(Hqq {
        bits: p.bits,
        group: p.group,
    }))
}

export_plugin!(info, new_codec);

// The library's optimizer constants (`optimize_weights_proximal_legacy`'s opt_params).
const ITERS: usize = 20;
/// `1.0 / beta` with beta = 10, as torch multiplies an f32 tensor by a Python float.
const BETA_INV: f32 = 0.1;
/// `lp_norm - 1` with lp_norm = 0.7, computed in f64 by Python, then an f32 exponent.
const LP_EXPONENT: f32 = (0.7f64 - 1.0) as f32;
/// Below this |max - min| the library uses scale 1.
const MIN_RANGE: f32 = 1e-4;
/// The library clamps the (inverse) scale to this "to avoid half-precision problems".
const MAX_SCALE: f32 = 2e4;

/// `torch.sign`: 0 for 0.
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The library's `shrink_lp_op` for p < 1: sign(x) * relu(|x| - |x|^(p-1) / beta).
fn shrink(x: f32) -> f32 {
    let a = x.abs();
    (a - BETA_INV * a.powf(LP_EXPONENT)).max(0.0) * sign(x)
}

/// The library's min/max initialization: `(scale, zero)` of one group.
pub fn initial(group: &[f32], max_v: f32) -> (f32, f32) {
    let (lo, hi) = min_max(group);
    let range = hi - lo;
    let scale = if range.abs() <= MIN_RANGE {
        1.0
    } else {
        max_v / range
    }
    .min(MAX_SCALE);
    (scale, -lo * scale)
}

fn quantize(x: f32, scale: f32, zero: f32, max_v: f32) -> f32 {
    (x * scale + zero).round_ties_even().clamp(0.0, max_v)
}

/// One proximal step on one group: its next zero and its sum of |x - r| (for the stopping
/// rule's whole-tensor mean).
///
/// The mean is summed in f64 and rounded once: torch's f32 sum order depends on the CPU's
/// vector width, so no f32 order reproduces it everywhere; the exact mean is within its error.
fn step(group: &[f32], scale: f32, zero: f32, max_v: f32) -> (f32, f64) {
    let mut target = 0f64;
    let mut err = 0f64;
    for &x in group {
        let q = quantize(x, scale, zero, max_v);
        let r = (q - zero) / scale;
        err += f64::from((x - r).abs());
        target += f64::from(q - (x - shrink(x - r)) * scale);
    }
    ((target / group.len() as f64) as f32, err)
}

/// Bytes of the wire for `rows × hidden` values.
fn wire_len(rows: usize, hidden: usize, p: (u32, usize), dtype: DType) -> Option<usize> {
    let (bits, group) = p;
    rows.checked_mul(hidden.div_ceil(group))?
        .checked_mul(2 * dtype.size_in_bytes())?
        .checked_add(wire::packed_len(rows.checked_mul(hidden)?, bits))
}

pub struct Hqq {
    pub bits: u32,
    pub group: usize,
}

impl Hqq {
    fn max_v(&self) -> f32 {
        ((1u32 << self.bits) - 1) as f32
    }

    /// Per group `(scale, zero)` after the library's initialization and optimizer: `scale`
    /// is the inverse scale the library quantizes with.
    pub fn fit(&self, values: &[f32], hidden: usize) -> Vec<(f32, f32)> {
        let max_v = self.max_v();
        // Every group's place in `values`: groups never cross a token.
        let groups: Vec<&[f32]> = values
            .chunks(hidden)
            .flat_map(|row| row.chunks(self.group))
            .collect();
        let mut params: Vec<(f32, f32)> = groups.par_iter().map(|g| initial(g, max_v)).collect();
        if values.is_empty() {
            return params;
        }
        let mut best = f32::INFINITY;
        for _ in 0..ITERS {
            let stepped: Vec<(f32, f64)> = groups
                .par_iter()
                .zip(params.par_iter())
                .map(|(g, &(scale, zero))| step(g, scale, zero, max_v))
                .collect();
            // The library's `torch.abs(W_f - W_r).mean()`, over the whole tensor.
            let err = (stepped.iter().map(|s| s.1).sum::<f64>() / values.len() as f64) as f32;
            // The step's zero is kept even when it is the step that stops the loop.
            for (p, s) in params.iter_mut().zip(&stepped) {
                p.1 = s.0;
            }
            if err < best {
                best = err;
            } else {
                break;
            }
        }
        params
    }
}

impl Codec for Hqq {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = finite_values(input)?;
        let dtype = input.dtype();
        let hidden = input.hidden().max(1);
        let rows = values.len() / hidden;
        let max_v = self.max_v();
        let params = self.fit(&values, hidden);
        let per_row = hidden.div_ceil(self.group);
        let mut codes = vec![0u8; values.len()];
        codes
            .par_chunks_mut(hidden)
            .zip(values.par_chunks(hidden))
            .zip(params.par_chunks(per_row))
            .for_each(|((codes, row), params)| {
                for ((c, g), &(scale, zero)) in codes
                    .chunks_mut(self.group)
                    .zip(row.chunks(self.group))
                    .zip(params)
                {
                    for (c, &x) in c.iter_mut().zip(g) {
                        *c = quantize(x, scale, zero, max_v) as u8;
                    }
                }
            });
        let size = dtype.size_in_bytes();
        let mut out = vec![0u8; 2 * params.len() * size];
        let (scales, zeros) = out.split_at_mut(params.len() * size);
        for ((s, z), &(scale, zero)) in scales
            .chunks_exact_mut(size)
            .zip(zeros.chunks_exact_mut(size))
            .zip(&params)
        {
            write_value(s, dtype, 1.0 / scale);
            write_value(z, dtype, zero);
        }
        out.extend_from_slice(&wire::pack_codes(&codes, self.bits));
        debug_assert_eq!(
            Some(out.len()),
            wire_len(rows, hidden, (self.bits, self.group), dtype)
        );
        Ok(out)
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        let hidden = hidden.max(1);
        let expected = wire_len(rows, hidden, (self.bits, self.group), dtype)
            .ok_or_else(|| CodecError::new("wire size overflows usize"))?;
        wire::expect_len(wire, expected)?;
        let size = dtype.size_in_bytes();
        let per_row = hidden.div_ceil(self.group);
        let mut reader = WireReader::new(wire);
        let scales = reader.take(rows * per_row * size)?;
        let zeros = reader.take(rows * per_row * size)?;
        let packed = reader.take(wire::packed_len(rows * hidden, self.bits))?;
        reader.finish()?;
        let mut values = vec![0f32; rows * hidden];
        values
            .par_chunks_mut(hidden)
            .zip(scales.par_chunks(per_row * size))
            .zip(zeros.par_chunks(per_row * size))
            .enumerate()
            .for_each(|(r, ((out, scales), zeros))| {
                for (g, ((out, s), z)) in out
                    .chunks_mut(self.group)
                    .zip(scales.chunks_exact(size))
                    .zip(zeros.chunks_exact(size))
                    .enumerate()
                {
                    let (scale, zero) = (read_value(s, dtype), read_value(z, dtype));
                    let start = r * hidden + g * self.group;
                    for (j, o) in out.iter_mut().enumerate() {
                        let q = wire::read_code(packed, start + j, self.bits) as f32;
                        *o = round_to(dtype, round_to(dtype, q - zero) * scale);
                    }
                }
            });
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitbench_plugin_api::convert::bytes_to_f32;

    fn round(c: &mut Hqq, values: &[f32], hidden: usize, dtype: DType) -> (Vec<u8>, Vec<f32>) {
        let raw = f32_to_bytes(values, dtype);
        let shape = [1, values.len() / hidden, hidden];
        let view = TensorView::new(dtype, &shape, &raw).unwrap();
        let wire = c.encode(&view).unwrap();
        let out = c.decode(&wire, &shape, dtype).unwrap();
        (wire, bytes_to_f32(&out, dtype))
    }

    #[test]
    fn initialization_by_hand() {
        // 2 bits: max_v 3. [-1, 2]: scale 3 / 3 = 1, zero 1.
        assert_eq!(initial(&[-1.0, 0.5, 2.0], 3.0), (1.0, 1.0));
        // A flat group: scale 1, zero -min.
        assert_eq!(initial(&[5.0, 5.0], 3.0), (1.0, -5.0));
        // A tiny range hits the 2e4 cap: 15 / 1e-3 = 15000 is kept, 15 / 5e-4 = 30000 is not.
        assert_eq!(initial(&[0.0, 1e-3], 15.0).0, 15.0 / 1e-3);
        assert_eq!(initial(&[0.0, 5e-4], 15.0).0, 2e4);
    }

    #[test]
    fn shrink_by_hand() {
        // |x| - 0.1 |x|^-0.3: for 1 -> 0.9; for a small x the threshold wins -> 0; sign kept.
        assert!((shrink(1.0) - 0.9).abs() < 1e-7);
        assert!((shrink(-1.0) + 0.9).abs() < 1e-7);
        assert_eq!(shrink(0.01), 0.0);
        assert_eq!(shrink(0.0), 0.0);
    }

    #[test]
    fn values_on_the_grid_stay_exact() {
        // [0, 1, 2, 3] with 2 bits: scale 1, zero 0, every r equals x, the error is 0 from the
        // first step on, so the second step (error not below 0) stops; zero stays 0.
        let mut c = Hqq { bits: 2, group: 4 };
        let (wire, out) = round(&mut c, &[0.0, 1.0, 2.0, 3.0], 4, DType::F32);
        assert_eq!(&wire[..4], &1.0f32.to_le_bytes());
        assert_eq!(&wire[4..8], &0.0f32.to_le_bytes());
        assert_eq!(wire[8], 0b11_10_01_00);
        assert_eq!(out, [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn partial_groups_and_bf16_storage() {
        // hidden 5, group 4: two groups per token, scale and zero in 2 bytes each.
        let mut c = Hqq { bits: 4, group: 4 };
        let values: Vec<f32> = (0..10).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let (wire, out) = round(&mut c, &values, 5, DType::BF16);
        assert_eq!(wire.len(), 4 * 2 * 2 + 5);
        for (x, y) in values.iter().zip(&out) {
            assert!((x - y).abs() < 0.3, "{x} -> {y}");
        }
    }

    #[test]
    fn the_optimizer_beats_min_max_on_outliers() {
        // One massive value per group: the zero point moves so the bulk is coded better (in
        // the lp sense) than plain min/max rounding.
        let mut values: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        for g in 0..4 {
            values[g * 64] = 300.0;
        }
        let c = Hqq { bits: 3, group: 64 };
        let fitted = c.fit(&values, 256);
        let plain: Vec<(f32, f32)> = values.chunks(64).map(|g| initial(g, 7.0)).collect();
        let err = |p: &[(f32, f32)]| -> f64 {
            values
                .chunks(64)
                .zip(p)
                .flat_map(|(g, &(s, z))| g.iter().map(move |&x| (x, s, z)))
                .map(|(x, s, z)| f64::from((x - (quantize(x, s, z, 7.0) - z) / s).abs()).powf(0.7))
                .sum()
        };
        assert!(
            err(&fitted) < err(&plain),
            "{} vs {}",
            err(&fitted),
            err(&plain)
        );
    }

    #[test]
    fn bad_params() {
        assert!(new_codec("hqq", r#"{"bits": 0}"#).is_err());
        assert!(new_codec("hqq", r#"{"bits": 9}"#).is_err());
        assert!(new_codec("hqq", r#"{"group": 0}"#).is_err());
        assert!(new_codec("hqq4", "{}").is_err());
    }
}
