//! The range of a set of values, which every scaled format derives its scale from: the
//! largest magnitude (symmetric formats) or the minimum and maximum (affine formats).
//!
//! Callers pass finite values (`quant::finite_values`): a NaN would be skipped by `f32::max`
//! and `f32::min`, so a scale computed from it would hide it.

use rayon::prelude::*;

/// Largest magnitude (0 for an empty slice).
pub fn absmax(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// [`absmax`] of a whole tensor, in parallel (`max` is exact in any order, so the result is
/// the serial one).
pub fn par_absmax(values: &[f32]) -> f32 {
    values
        .par_iter()
        .fold(|| 0f32, |m, v| m.max(v.abs()))
        .reduce(|| 0f32, f32::max)
}

/// `(min, max)`; `(inf, -inf)` for an empty slice.
pub fn min_max(values: &[f32]) -> (f32, f32) {
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absmax_by_hand() {
        assert_eq!(absmax(&[]), 0.0);
        assert_eq!(absmax(&[0.5, -3.0, 2.0]), 3.0);
        assert_eq!(absmax(&[-0.0, 0.0]), 0.0);
    }

    #[test]
    fn par_absmax_is_absmax() {
        // Past rayon's splitting, with the largest magnitude negative and near the end.
        let mut values: Vec<f32> = (0..100_000).map(|i| (i % 997) as f32 * 0.01).collect();
        values[99_990] = -1250.5;
        assert_eq!(par_absmax(&values), 1250.5);
        assert_eq!(par_absmax(&values), absmax(&values));
        assert_eq!(par_absmax(&[]), 0.0);
    }

    #[test]
    fn min_max_by_hand() {
        assert_eq!(min_max(&[2.0, -1.0, 0.5]), (-1.0, 2.0));
        assert_eq!(min_max(&[4.0]), (4.0, 4.0));
        assert_eq!(min_max(&[]), (f32::INFINITY, f32::NEG_INFINITY));
    }
}
