//! Statistics of a codec against the uncompressed baseline on the same tokens: KL divergence,
//! top-1 agreement, Δp of the correct token, and perplexity with confidence intervals.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::measure::nulls_as_nan;

use crate::eval::{perplexity, BatchComparison, LayerErrorSums, TokenComparison, WindowResult};

pub mod hurt;
pub mod llama;

pub use hurt::{Hurt, HurtSummary};
pub use llama::LlamaStats;

/// Sums over tokens of the two NLL series, for their means, spreads and covariance.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct NllSums {
    pub codec: f64,
    pub codec_sq: f64,
    pub base: f64,
    pub base_sq: f64,
    pub cross: f64,
}

/// Per-token values accumulated over a run. Fields added after the first release default to
/// empty, so batch states written before them still resume.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Accumulator {
    pub kld: Vec<f32>,
    pub top1_agree: usize,
    pub dp_sum: f64,
    pub dp_sq_sum: f64,
    #[serde(default)]
    pub dp: Vec<f32>,
    #[serde(default)]
    pub reverse_kld: Vec<f32>,
    #[serde(default)]
    pub top_k_shared: usize,
    #[serde(default)]
    pub nll: NllSums,
    #[serde(default)]
    pub hurt: Hurt,
    #[serde(default)]
    pub layers: LayerErrorSums,
}

impl Accumulator {
    /// A batch's comparison; `ids` is the token stream and `text(i)` the text token i stands
    /// for.
    pub fn add_batch(&mut self, c: &BatchComparison, ids: &[u32], text: &dyn Fn(usize) -> String) {
        for t in &c.tokens {
            self.add(t, ids, text);
        }
        self.layers.merge(&c.layers);
    }

    pub fn add(&mut self, c: &TokenComparison, ids: &[u32], text: &dyn Fn(usize) -> String) {
        for (i, (&at, &position)) in c.at.iter().zip(&c.position).enumerate() {
            self.hurt.add(
                position,
                ids[at],
                c.kld[i],
                c.nll[i] - c.nll_base[i],
                || text(at),
            );
        }
        self.kld.extend_from_slice(&c.kld);
        self.reverse_kld.extend_from_slice(&c.reverse_kld);
        self.top1_agree += c.top1_agree;
        self.top_k_shared += c.top_k_shared;
        self.dp.extend_from_slice(&c.dp);
        for &d in &c.dp {
            self.dp_sum += f64::from(d);
            self.dp_sq_sum += f64::from(d) * f64::from(d);
        }
        for (&q, &b) in c.nll.iter().zip(&c.nll_base) {
            let (q, b) = (f64::from(q), f64::from(b));
            self.nll.codec += q;
            self.nll.codec_sq += q * q;
            self.nll.base += b;
            self.nll.base_sq += b * b;
            self.nll.cross += q * b;
        }
    }

    pub fn tokens(&self) -> usize {
        self.kld.len()
    }

    pub fn merge(&mut self, other: &Accumulator) {
        self.kld.extend_from_slice(&other.kld);
        self.reverse_kld.extend_from_slice(&other.reverse_kld);
        self.top1_agree += other.top1_agree;
        self.top_k_shared += other.top_k_shared;
        self.dp.extend_from_slice(&other.dp);
        self.dp_sum += other.dp_sum;
        self.dp_sq_sum += other.dp_sq_sum;
        let (a, b) = (&mut self.nll, &other.nll);
        a.codec += b.codec;
        a.codec_sq += b.codec_sq;
        a.base += b.base;
        a.base_sq += b.base_sq;
        a.cross += b.cross;
        self.hurt.merge(&other.hurt);
        self.layers.merge(&other.layers);
    }
}

/// Linear interpolation between order statistics (numpy's default), on sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Interval {
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub lo: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub hi: f64,
}

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

/// Perplexity with llama.cpp's ± (standard error of the mean NLL, scaled by PPL) and a
/// bootstrap interval over windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PplStats {
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub ppl: f64,
    #[serde(deserialize_with = "splitbench_plugin_api::measure::null_as_nan")]
    pub stderr: f64,
    pub ci95: Interval,
}

/// llama.cpp's `PPL ± error` from per-token NLL sums.
pub fn ppl_stderr(nll_sum: f64, nll_sq_sum: f64, n: usize) -> (f64, f64) {
    if n < 2 {
        return (perplexity(nll_sum, n), f64::NAN);
    }
    let mean = nll_sum / n as f64;
    let var = (nll_sq_sum / n as f64 - mean * mean).max(0.0);
    let ppl = mean.exp();
    (ppl, ppl * (var / (n - 1) as f64).sqrt())
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

pub const BOOTSTRAP_RESAMPLES: usize = 1000;
pub const BOOTSTRAP_SEED: u64 = 0x5eed;

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

pub fn divergence(acc: &Accumulator, base: &[WindowResult], codec: &[WindowResult]) -> Divergence {
    let n = acc.tokens().max(1) as f64;
    Divergence {
        tokens: acc.tokens(),
        kld: KldSummary::of(&acc.kld),
        top1_agreement: acc.top1_agree as f64 / n,
        dp_mean: acc.dp_sum / n,
        dp_rms: (acc.dp_sq_sum / n).sqrt(),
        paired: bootstrap_paired(base, codec, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED),
        llama: LlamaStats::of(acc),
        hurt: (!acc.hurt.by_position.is_empty()).then(|| acc.hurt.summary()),
        error_by_layer: ErrorByLayer::of(&acc.layers),
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

    #[test]
    fn quantiles_by_hand() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.9), 4.6);
        assert_eq!(quantile(&v, 1.0), 5.0);
    }

    #[test]
    fn llama_cpp_error_by_hand() {
        // NLLs 1 and 3: mean 2, variance 1, n 2 -> PPL e², error e² · sqrt(1 / 1).
        let (ppl, err) = ppl_stderr(4.0, 10.0, 2);
        assert!((ppl - 2f64.exp()).abs() < 1e-12);
        assert!((err - 2f64.exp()).abs() < 1e-12);
    }

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
