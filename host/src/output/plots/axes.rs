//! The axes the figures share: symlog (linear near 0, logarithmic beyond) and linear axes
//! with chosen ticks, tick labels that read as numbers, padded ranges.

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::prelude::*;

/// A symmetric log axis (matplotlib's symlog): linear within ±`c` of 0, logarithmic beyond,
/// so zero, tiny and huge differences of either sign share one readable axis.
#[derive(Debug, Clone, Copy)]
pub struct SymLog {
    pub c: f64,
}

impl SymLog {
    /// `c` a power of ten at or below the smallest non-zero magnitude.
    pub fn fitting(values: impl Iterator<Item = f64>) -> SymLog {
        let smallest = values
            .filter(|v| v.is_finite() && *v != 0.0)
            .map(f64::abs)
            .fold(f64::INFINITY, f64::min);
        let c = if smallest.is_finite() {
            10f64.powf(smallest.log10().floor()).clamp(1e-9, 1.0)
        } else {
            1e-3
        };
        SymLog { c }
    }

    pub fn to(self, v: f64) -> f64 {
        v.signum() * (1.0 + v.abs() / self.c).log10()
    }

    pub fn from(self, t: f64) -> f64 {
        t.signum() * self.c * (10f64.powf(t.abs()) - 1.0)
    }

    /// Ticks at 0 and ±c·10^k inside `lo..hi` (axis units), thinned to at most 8.
    pub fn ticks(self, lo: f64, hi: f64) -> Vec<f64> {
        let mut magnitudes = Vec::new();
        let mut m = self.c;
        while self.to(m) <= hi.abs().max(lo.abs()) {
            magnitudes.push(m);
            m *= 10.0;
        }
        let step = magnitudes.len().div_ceil(4).max(1);
        let kept: Vec<f64> = magnitudes.into_iter().rev().step_by(step).collect();
        let mut ticks: Vec<f64> = std::iter::once(0.0)
            .chain(kept.iter().map(|&m| self.to(m)))
            .chain(kept.iter().map(|&m| -self.to(m)))
            .filter(|t| (lo..=hi).contains(t))
            .collect();
        ticks.sort_by(f64::total_cmp);
        ticks
    }
}

/// A linear axis with the ticks given (plotters' own f64 axis picks its own and has no
/// default formatting to go with chosen ticks).
pub struct Ticked {
    pub range: std::ops::Range<f64>,
    pub ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let share = (v - self.range.start) / (self.range.end - self.range.start);
        limit.0 + (f64::from(limit.1 - limit.0) * share).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for Ticked {
    fn format(value: &f64) -> String {
        number(*value)
    }
}

/// A tick label: `0`, `0.01`, `10`, `1e-5`.
pub fn number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if (0.01..10_000.0).contains(&v.abs()) {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.0e}")
    }
}

impl Ticked {
    /// A symlog axis (in `scale`'s units) over the padded range `lo..hi`, ticked below 0 only
    /// when a value is.
    pub fn symlog(scale: SymLog, (lo, hi): (f64, f64), values_below_zero: bool) -> Ticked {
        Ticked {
            range: lo..hi,
            ticks: scale.ticks(if values_below_zero { lo } else { 0.0 }, hi),
        }
    }
}

/// `lo..hi` padded by 6% of its span (a point's width when the span is 0).
pub fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (-1.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = (hi - lo) * 0.06;
        (lo - pad, hi + pad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlog_is_linear_near_zero_logarithmic_beyond_and_inverts() {
        let s = SymLog { c: 0.01 };
        assert_eq!(s.to(0.0), 0.0);
        assert!((s.to(0.01) - 2f64.log10()).abs() < 1e-12);
        assert!((s.to(-9.99) + 3.0).abs() < 1e-12);
        for v in [-5.0, -0.003, 0.0, 0.02, 700.0] {
            assert!((s.from(s.to(v)) - v).abs() < 1e-9 * v.abs().max(1.0), "{v}");
        }
        assert_eq!(SymLog::fitting([0.0, 0.034, -2.0].into_iter()).c, 0.01);
    }

    #[test]
    fn symlog_ticks_are_zero_and_powers_of_ten_within_range() {
        let s = SymLog { c: 0.1 };
        let ticks: Vec<String> = s
            .ticks(-0.1, s.to(12.0))
            .into_iter()
            .map(|t| number(s.from(t)))
            .collect();
        assert_eq!(ticks, ["0", "0.1", "1", "10"]);
    }

    #[test]
    fn tick_labels_read_as_numbers() {
        assert_eq!(number(2000.0), "2000");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1e-5), "1e-5");
        assert_eq!(number(-0.01), "-0.01");
    }
}
