//! llama.cpp's `llama-perplexity --kl-divergence` statistics, with its definitions
//! (`tools/perplexity/perplexity.cpp`: `mean_and_uncertainty`, `covariance`, `percentile`), so
//! a record can be set beside that tool's output line by line; computed from the per-token
//! values a sweep keeps, with no logit files. Plus two figures it lacks: the reverse KLD
//! KL(codec ‖ base) and the overlap of the two models' top-k tokens.

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::measure::null_as_nan;

use super::nll::LogPerplexities;
use super::series::Percentile;
use super::uncertainty::Estimate;
use super::Accumulator;
use crate::eval::TOP_K;

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

impl LlamaStats {
    /// None without tokens, or for batch states written before the per-token series were kept.
    pub fn of(acc: &Accumulator) -> Option<LlamaStats> {
        let n = acc.tokens();
        if n == 0 || acc.dp.len() != n || acc.reverse_kld.len() != n {
            return None;
        }
        let LogPerplexities {
            codec: log_ppl,
            base: log_base,
            covariance: cov,
        } = acc.nll.log_perplexities(n);
        let ppl = Estimate {
            value: log_ppl.value.exp(),
            pm: log_ppl.value.exp() * log_ppl.pm,
        };
        let ppl_base = Estimate {
            value: log_base.value.exp(),
            pm: log_base.value.exp() * log_base.pm,
        };
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
        Some(LlamaStats {
            tokens: n,
            ppl,
            ppl_base,
            correlation: cov / (log_ppl.pm * log_base.pm),
            ln_ratio,
            ratio,
            difference,
            kld: acc.kld.mean(),
            kld_percentiles: acc.kld.percentiles(&KLD_QUANTILES),
            dp: acc.dp.mean(),
            dp_percentiles: acc.dp.percentiles(&DP_QUANTILES),
            dp_rms: acc.dp.rms(),
            same_top: acc.top1_agree.share(n),
            reverse_kld: acc.reverse_kld.mean(),
            reverse_kld_percentiles: acc.reverse_kld.percentiles(&KLD_QUANTILES),
            top_k: TOP_K,
            top_k_overlap: acc.top_k_shared.overlap(n, TOP_K),
        })
    }
}

#[cfg(test)]
#[path = "llama_tests.rs"]
mod tests;
