//! Statistics kept as one value per scored token (their percentiles need every value): KL
//! divergence both ways and Δp of the target.

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::measure::null_as_nan;

use super::statistic::{Statistic, TokenScore};
use super::uncertainty::{mean_and_uncertainty, Estimate};

/// Linear interpolation between order statistics (numpy's default) at `q · (N − 1)`, on sorted
/// values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The `q` quantile of a per-token series (1 its maximum, 0 its minimum).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Percentile {
    pub q: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub value: f64,
}

/// Per-token values in the order they were scored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Series(pub Vec<f32>);

impl Series {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Σx and Σx², in f64, in order.
    pub fn sums(&self) -> (f64, f64) {
        self.0
            .iter()
            .map(|&x| f64::from(x))
            .fold((0.0, 0.0), |(s, s2), x| (s + x, s2 + x * x))
    }

    /// The mean and its ±.
    pub fn mean(&self) -> Estimate {
        let (sum, sum_sq) = self.sums();
        mean_and_uncertainty(sum, sum_sq, self.len())
    }

    /// The values in f64, ascending.
    pub fn sorted(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.0.iter().map(|&x| f64::from(x)).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The quantiles `qs`, in their order.
    pub fn percentiles(&self, qs: &[f64]) -> Vec<Percentile> {
        let sorted = self.sorted();
        qs.iter()
            .map(|&q| Percentile {
                q,
                value: quantile(&sorted, q),
            })
            .collect()
    }
}

/// A statistic that keeps one field of every token.
macro_rules! per_token_series {
    ($(#[$doc:meta])* $name:ident, $field:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Series);

        impl Statistic for $name {
            fn update(&mut self, token: &TokenScore<'_>) {
                self.0 .0.push(token.$field);
            }

            fn merge(&mut self, other: &Self) {
                self.0 .0.extend_from_slice(&other.0 .0);
            }
        }

        impl std::ops::Deref for $name {
            type Target = Series;

            fn deref(&self) -> &Series {
                &self.0
            }
        }
    };
}

per_token_series!(
    /// KL(base ‖ codec) per token.
    Kld,
    kld
);
per_token_series!(
    /// KL(codec ‖ base) per token: weighs the tokens the codec makes likely.
    ReverseKld,
    reverse_kld
);
per_token_series!(
    /// p_codec(target) − p_base(target) per token, as a probability.
    DeltaP,
    dp
);

impl DeltaP {
    /// √E[Δp²] and its ± by the delta method from the spread of Δp², as llama-perplexity.
    pub fn rms(&self) -> Estimate {
        let (mut p2, mut p4) = (0.0, 0.0);
        for &d in &self.0 .0 {
            let d = f64::from(d);
            p2 += d * d;
            p4 += d * d * d * d;
        }
        let mse = mean_and_uncertainty(p2, p4, self.len());
        let rms = mse.value.sqrt();
        Estimate {
            value: rms,
            pm: if rms > 0.0 { 0.5 / rms * mse.pm } else { 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_hand() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.9), 4.6);
        assert_eq!(quantile(&v, 1.0), 5.0);
    }
}
