//! A codec's record of its statistics against the baseline (`divergence`), and its
//! perplexity's `ppl_stats`: each figure from the statistic that holds it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::measure::nulls_as_nan;

use super::bootstrap::{bootstrap_paired, bootstrap_ppl, Interval, Paired};
use super::bootstrap::{BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED};
use super::llama::LlamaStats;
use super::series::quantile;
use super::uncertainty::{perplexity_estimate, Estimate};
use super::{Accumulator, HurtSummary};
use crate::eval::{LayerErrorSums, WindowResult};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KldSummary {
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub mean: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub median: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub p90: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub p99: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub max: f64,
}

impl KldSummary {
    /// The first release's summary, over the values clamped at 0 (a negative KLD is rounding).
    pub fn of(values: &[f32]) -> KldSummary {
        let mut v: Vec<f64> = values.iter().map(|&x| f64::from(x).max(0.0)).collect();
        v.sort_by(f64::total_cmp);
        KldSummary {
            mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
            median: quantile(&v, 0.5),
            p90: quantile(&v, 0.9),
            p99: quantile(&v, 0.99),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Perplexity with its ± (the one rule, `uncertainty`) and a bootstrap interval over windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PplStats {
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub ppl: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub stderr: f64,
    pub ci95: Interval,
}

impl PplStats {
    /// From the per-token NLL sums and the windows of a run.
    pub fn of(nll: f64, nll_sq: f64, scored: usize, windows: &[WindowResult]) -> PplStats {
        let Estimate { value, pm } = perplexity_estimate(nll, nll_sq, scored);
        PplStats {
            ppl: value,
            stderr: pm,
            ci95: bootstrap_ppl(windows, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Divergence {
    pub tokens: usize,
    pub kld: KldSummary,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub top1_agreement: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub dp_mean: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub dp_rms: f64,
    pub paired: Paired,
    /// llama-perplexity's `--kl-divergence` figures, reverse KLD and top-k overlap; absent in
    /// records written before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llama: Option<LlamaStats>,
    /// Which positions and tokens the divergence falls on (absent before it was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hurt: Option<HurtSummary>,
    /// Mean relative L2 error of the hidden state at each depth from the first link on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_by_layer: Option<ErrorByLayer>,
    /// The figures of statistics added after the fields above, by name (`Statistic::figures`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, Estimate>,
}

/// The relative L2 error ‖h − h_base‖ / ‖h_base‖ of the hidden state, averaged over tokens,
/// at each depth (layers run, links crossed) from the first link to the last layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorByLayer {
    pub depth: Vec<usize>,
    #[serde(deserialize_with = "nulls_as_nan")]
    pub relative_l2: Vec<f64>,
}

impl ErrorByLayer {
    fn of(sums: &LayerErrorSums) -> Option<ErrorByLayer> {
        if sums.relative_l2.is_empty() {
            return None;
        }
        let (depth, relative_l2) = sums.means().into_iter().unzip();
        Some(ErrorByLayer { depth, relative_l2 })
    }
}

pub fn divergence(acc: &Accumulator, base: &[WindowResult], codec: &[WindowResult]) -> Divergence {
    let n = acc.tokens();
    Divergence {
        tokens: n,
        kld: KldSummary::of(&acc.kld.0 .0),
        top1_agreement: acc.top1_agree.share(n).value,
        dp_mean: acc.dp.mean().value,
        dp_rms: acc.dp.rms().value,
        paired: bootstrap_paired(base, codec, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED),
        llama: LlamaStats::of(acc),
        hurt: (!acc.hurt.by_position.is_empty()).then(|| acc.hurt.summary()),
        error_by_layer: ErrorByLayer::of(&acc.layers),
        figures: acc
            .figures()
            .into_iter()
            .map(|f| (f.name.to_string(), f.estimate))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_error_by_layer_reads_back_as_nan() {
        let e = ErrorByLayer {
            depth: vec![3, 4],
            relative_l2: vec![0.5, f64::NAN],
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"depth":[3,4],"relative_l2":[0.5,null]}"#);
        let back: ErrorByLayer = serde_json::from_str(&json).unwrap();
        assert_eq!(back.relative_l2[0], 0.5);
        assert!(back.relative_l2[1].is_nan());
    }
}
