//! The one rule for a mean's ± in every record: llama-perplexity's `mean_and_uncertainty`
//! (`tools/perplexity/perplexity.cpp`), the standard error √((E[x²] − E[x]²)/(N − 1)), 0 for
//! 10 tokens or fewer. Its rule, not another, because the records are read beside that tool's
//! output; at 10 tokens or fewer no standard error means much, and the bootstrap interval is
//! the figure to read.

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::measure::null_as_nan;

/// A figure and its ±.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    #[serde(deserialize_with = "null_as_nan")]
    pub value: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub pm: f64,
}

/// Below this many tokens a ± is 0 (llama-perplexity's `count > 10`).
const FEWEST_TOKENS: usize = 11;

/// The mean of a series from its sums, and the standard error of that mean.
pub fn mean_and_uncertainty(sum: f64, sum_sq: f64, count: usize) -> Estimate {
    if count == 0 {
        return Estimate {
            value: 0.0,
            pm: 0.0,
        };
    }
    let n = count as f64;
    let mean = sum / n;
    let var = sum_sq / n - mean * mean;
    let pm = if var > 0.0 && count >= FEWEST_TOKENS {
        (var / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Estimate { value: mean, pm }
}

/// llama-perplexity's `covariance` of two means, (E[ab] − E[a]E[b])/(N − 1); 0 under 10 tokens.
pub fn covariance(sum_a: f64, sum_b: f64, sum_ab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1.0)
}

/// Perplexity exp(E[nll]) and its ±, PPL · se(nll), from per-token NLL sums; NaN without
/// tokens.
pub fn perplexity_estimate(nll_sum: f64, nll_sq_sum: f64, count: usize) -> Estimate {
    if count == 0 {
        return Estimate {
            value: f64::NAN,
            pm: f64::NAN,
        };
    }
    let log = mean_and_uncertainty(nll_sum, nll_sq_sum, count);
    let ppl = log.value.exp();
    Estimate {
        value: ppl,
        pm: ppl * log.pm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perplexity_error_by_hand() {
        // Eleven NLLs, five 1s and six 3s: mean 23/11, E[x²] 59/11; error e^mean · sd/√10.
        let (sum, sq) = (5.0 + 18.0, 5.0 + 54.0);
        let e = perplexity_estimate(sum, sq, 11);
        let mean = 23.0f64 / 11.0;
        let var = 59.0 / 11.0 - mean * mean;
        assert!((e.value - mean.exp()).abs() < 1e-12);
        assert!((e.pm - mean.exp() * (var / 10.0).sqrt()).abs() < 1e-12);
        // Ten tokens or fewer: no ±, as llama-perplexity; none at all without tokens.
        assert_eq!(perplexity_estimate(4.0, 10.0, 2).pm, 0.0);
        assert!(perplexity_estimate(0.0, 0.0, 0).value.is_nan());
    }
}
