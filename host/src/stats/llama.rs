//! llama.cpp's `llama-perplexity --kl-divergence` statistics, with its definitions
//! (`tools/perplexity/perplexity.cpp`: `mean_and_uncertainty`, `covariance`, `percentile`), so
//! a record can be set beside that tool's output line by line; computed from the per-token
//! values a sweep keeps, with no logit files. Plus two figures it lacks: the reverse KLD
//! KL(codec ‖ base) and the overlap of the two models' top-k tokens.

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::measure::null_as_nan;

use super::{quantile, Accumulator};
use crate::eval::TOP_K;

/// A figure and llama-perplexity's ± for it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    #[serde(deserialize_with = "null_as_nan")]
    pub value: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub pm: f64,
}

/// The `q` quantile of a per-token series (1 its maximum, 0 its minimum).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Percentile {
    pub q: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub value: f64,
}

/// Everything `llama-perplexity --kl-divergence` prints at the end, in its order, and the
/// reverse KLD and top-k overlap. PPL figures are per scored token, as there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LlamaStats {
    pub tokens: usize,
    pub ppl: Estimate,
    pub ppl_base: Estimate,
    /// Cor(ln PPL(Q), ln PPL(base)): the correlation of the two per-token NLL series.
    #[serde(deserialize_with = "null_as_nan")]
    pub correlation: f64,
    /// ln(PPL(Q)/PPL(base)), PPL(Q)/PPL(base), PPL(Q) − PPL(base), each ± with the covariance.
    pub ln_ratio: Estimate,
    pub ratio: Estimate,
    pub difference: Estimate,
    pub kld: Estimate,
    pub kld_percentiles: Vec<Percentile>,
    /// Δp = p_codec(target) − p_base(target), as a probability.
    pub dp: Estimate,
    pub dp_percentiles: Vec<Percentile>,
    pub dp_rms: Estimate,
    /// The share of tokens whose most likely next token is the same in both.
    pub same_top: Estimate,
    pub reverse_kld: Estimate,
    pub reverse_kld_percentiles: Vec<Percentile>,
    /// The mean share of the baseline's `top_k` most likely tokens among the codec's.
    pub top_k: usize,
    #[serde(deserialize_with = "null_as_nan")]
    pub top_k_overlap: f64,
}

/// The KLD quantiles llama-perplexity prints: maximum, 99.9%, …, median, …, 0.1%, minimum.
pub const KLD_QUANTILES: [f64; 11] = [
    1.0, 0.999, 0.99, 0.95, 0.9, 0.5, 0.1, 0.05, 0.01, 0.001, 0.0,
];
/// The Δp quantiles, with 75% and 25% besides.
pub const DP_QUANTILES: [f64; 13] = [
    1.0, 0.999, 0.99, 0.95, 0.9, 0.75, 0.5, 0.25, 0.1, 0.05, 0.01, 0.001, 0.0,
];

/// llama-perplexity's `mean_and_uncertainty`: the mean of a series from its sums, and the
/// standard error of that mean, √((E[x²] − E[x]²)/(N − 1)); 0 for 10 tokens or fewer.
fn mean_and_uncertainty(sum: f64, sum_sq: f64, count: usize) -> Estimate {
    if count == 0 {
        return Estimate {
            value: 0.0,
            pm: 0.0,
        };
    }
    let n = count as f64;
    let mean = sum / n;
    let var = sum_sq / n - mean * mean;
    let pm = if var > 0.0 && count > 10 {
        (var / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Estimate { value: mean, pm }
}

/// llama-perplexity's `covariance` of two means, (E[ab] − E[a]E[b])/(N − 1); 0 under 10 tokens.
fn covariance(sum_a: f64, sum_b: f64, sum_ab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1.0)
}

/// Linear interpolation at `q · (N − 1)` of the sorted values, as its `percentile`.
fn percentiles(values: &[f32], qs: &[f64]) -> Vec<Percentile> {
    let mut sorted: Vec<f64> = values.iter().map(|&x| f64::from(x)).collect();
    sorted.sort_by(f64::total_cmp);
    qs.iter()
        .map(|&q| Percentile {
            q,
            value: quantile(&sorted, q),
        })
        .collect()
}

fn sums(values: &[f32]) -> (f64, f64) {
    values
        .iter()
        .map(|&x| f64::from(x))
        .fold((0.0, 0.0), |(s, s2), x| (s + x, s2 + x * x))
}

impl LlamaStats {
    /// None without tokens, or for batch states written before the per-token series were kept.
    pub fn of(acc: &Accumulator) -> Option<LlamaStats> {
        let n = acc.tokens();
        if n == 0 || acc.dp.len() != n || acc.reverse_kld.len() != n {
            return None;
        }
        let s = &acc.nll;
        let log_ppl = mean_and_uncertainty(s.codec, s.codec_sq, n);
        let log_base = mean_and_uncertainty(s.base, s.base_sq, n);
        let ppl = Estimate {
            value: log_ppl.value.exp(),
            pm: log_ppl.value.exp() * log_ppl.pm,
        };
        let ppl_base = Estimate {
            value: log_base.value.exp(),
            pm: log_base.value.exp() * log_base.pm,
        };
        let cov = covariance(s.codec, s.base, s.cross, n);
        let ln_pm = (log_ppl.pm.powi(2) + log_base.pm.powi(2) - 2.0 * cov).sqrt();
        let ln_ratio = Estimate {
            value: log_ppl.value - log_base.value,
            pm: ln_pm,
        };
        let ratio = Estimate {
            value: ln_ratio.value.exp(),
            pm: ln_ratio.value.exp() * ln_pm,
        };
        let ppl_cov = ppl.value * ppl_base.value * cov;
        let difference = Estimate {
            value: ppl.value - ppl_base.value,
            pm: (ppl.pm.powi(2) + ppl_base.pm.powi(2) - 2.0 * ppl_cov).sqrt(),
        };
        let (kld_sum, kld_sq) = sums(&acc.kld);
        let (reverse_sum, reverse_sq) = sums(&acc.reverse_kld);
        let (mut p, mut p2, mut p4) = (0.0, 0.0, 0.0);
        for &d in &acc.dp {
            let d = f64::from(d);
            p += d;
            p2 += d * d;
            p4 += d * d * d * d;
        }
        // RMS Δp's ± by the delta method from the spread of Δp², as there.
        let mse = mean_and_uncertainty(p2, p4, n);
        let rms = mse.value.sqrt();
        let same = acc.top1_agree as f64 / n as f64;
        Some(LlamaStats {
            tokens: n,
            ppl,
            ppl_base,
            correlation: cov / (log_ppl.pm * log_base.pm),
            ln_ratio,
            ratio,
            difference,
            kld: mean_and_uncertainty(kld_sum, kld_sq, n),
            kld_percentiles: percentiles(&acc.kld, &KLD_QUANTILES),
            dp: mean_and_uncertainty(p, p2, n),
            dp_percentiles: percentiles(&acc.dp, &DP_QUANTILES),
            dp_rms: Estimate {
                value: rms,
                pm: if rms > 0.0 { 0.5 / rms * mse.pm } else { 0.0 },
            },
            same_top: Estimate {
                value: same,
                pm: if n > 1 {
                    (same * (1.0 - same) / (n - 1) as f64).sqrt()
                } else {
                    0.0
                },
            },
            reverse_kld: mean_and_uncertainty(reverse_sum, reverse_sq, n),
            reverse_kld_percentiles: percentiles(&acc.reverse_kld, &KLD_QUANTILES),
            top_k: TOP_K,
            top_k_overlap: acc.top_k_shared as f64 / (n * TOP_K) as f64,
        })
    }
}
