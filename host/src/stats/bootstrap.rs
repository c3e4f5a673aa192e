//! Percentile bootstrap intervals over whole windows (which keeps the dependence between
//! neighbouring tokens that a per-token ± ignores), with a fixed seed.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::series::quantile;
use crate::eval::{perplexity, WindowResult};

pub const BOOTSTRAP_RESAMPLES: usize = 1000;
pub const BOOTSTRAP_SEED: u64 = 0x5eed;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Interval {
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub lo: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub hi: f64,
}

/// A codec against the baseline, paired over the same windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paired {
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub delta_ppl: f64,
    pub delta_ppl_ci95: Interval,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub ppl_ratio: f64,
    pub ppl_ratio_ci95: Interval,
    /// ln(PPL_codec / PPL_base): the mean per-token NLL difference.
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub mean_ln_ratio: f64,
    pub mean_ln_ratio_ci95: Interval,
}

fn interval(mut v: Vec<f64>) -> Interval {
    v.sort_by(f64::total_cmp);
    Interval {
        lo: quantile(&v, 0.025),
        hi: quantile(&v, 0.975),
    }
}

/// Percentile bootstrap over windows of PPL (one run) — resampling whole windows keeps the
/// dependence between neighbouring tokens.
pub fn bootstrap_ppl(windows: &[WindowResult], resamples: usize, seed: u64) -> Interval {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = windows.len();
    let samples = (0..resamples)
        .map(|_| {
            let (mut nll, mut scored) = (0.0, 0);
            for _ in 0..n {
                let w = &windows[rng.random_range(0..n)];
                nll += w.nll;
                scored += w.scored;
            }
            perplexity(nll, scored)
        })
        .collect();
    interval(samples)
}

/// Paired bootstrap: the same resampled windows for baseline and codec.
pub fn bootstrap_paired(
    base: &[WindowResult],
    codec: &[WindowResult],
    resamples: usize,
    seed: u64,
) -> Paired {
    let total = |ws: &[WindowResult]| {
        (
            ws.iter().map(|w| w.nll).sum::<f64>(),
            ws.iter().map(|w| w.scored).sum::<usize>(),
        )
    };
    let (nb, sb) = total(base);
    let (nc, sc) = total(codec);
    let (pb, pc) = (perplexity(nb, sb), perplexity(nc, sc));
    let mut rng = StdRng::seed_from_u64(seed);
    let n = base.len().min(codec.len());
    let (mut deltas, mut ratios, mut lns) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..resamples {
        let (mut b, mut c, mut s) = (0.0, 0.0, 0usize);
        for _ in 0..n {
            let i = rng.random_range(0..n);
            b += base[i].nll;
            c += codec[i].nll;
            s += base[i].scored;
        }
        let (qb, qc) = (perplexity(b, s), perplexity(c, s));
        deltas.push(qc - qb);
        ratios.push(qc / qb);
        lns.push((c - b) / s.max(1) as f64);
    }
    Paired {
        delta_ppl: pc - pb,
        delta_ppl_ci95: interval(deltas),
        ppl_ratio: pc / pb,
        ppl_ratio_ci95: interval(ratios),
        mean_ln_ratio: (nc - nb) / sc.max(1) as f64,
        mean_ln_ratio_ci95: interval(lns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(nll: f64, scored: usize) -> WindowResult {
        WindowResult {
            begin: 0,
            end: scored + 1,
            nll,
            scored,
        }
    }

    #[test]
    fn identical_codec_has_zero_intervals() {
        let ws = [w(10.0, 5), w(20.0, 5), w(7.0, 5)];
        let p = bootstrap_paired(&ws, &ws, 200, 1);
        assert_eq!(p.delta_ppl, 0.0);
        assert_eq!(p.delta_ppl_ci95, Interval { lo: 0.0, hi: 0.0 });
        assert_eq!(p.ppl_ratio, 1.0);
        assert_eq!(p.mean_ln_ratio, 0.0);
    }

    #[test]
    fn bootstrap_is_reproducible_and_brackets_the_estimate() {
        let base = [w(10.0, 5), w(20.0, 5), w(7.0, 5), w(12.0, 5)];
        let codec = [w(11.0, 5), w(20.5, 5), w(8.0, 5), w(12.0, 5)];
        let a = bootstrap_paired(&base, &codec, 500, 7);
        let b = bootstrap_paired(&base, &codec, 500, 7);
        assert_eq!(a.delta_ppl_ci95, b.delta_ppl_ci95);
        // Every window got worse or stayed: the whole interval is ≥ 0 and holds the estimate.
        assert!(a.delta_ppl_ci95.lo >= 0.0);
        assert!(a.delta_ppl_ci95.lo <= a.delta_ppl && a.delta_ppl <= a.delta_ppl_ci95.hi);
        // mean ln ratio = (51.5 - 49) / 20.
        assert!((a.mean_ln_ratio - 2.5 / 20.0).abs() < 1e-12);
        let ci = bootstrap_ppl(&base, 500, 7);
        let ppl = (49.0f64 / 20.0).exp();
        assert!(ci.lo <= ppl && ppl <= ci.hi);
    }
}
