//! The llama-perplexity figures of a sweep against the same figures computed directly.

use candle_core::{Device, Tensor};

use super::LlamaStats;
use crate::eval::{score_sweep, BatchComparison, ScoredStates, WindowResult};
use crate::stats::{Accumulator, Stream};

/// The llama-perplexity figures of a sweep against the same figures computed directly, on
/// a small model's head: full log-softmax in f64 per token, then each statistic by its
/// definition (two-pass means and spreads, Pearson's correlation, sorted order
/// statistics), not from running sums.
#[test]
fn llama_statistics_equal_a_direct_computation_on_a_small_model() {
    let decoder = crate::model::synth::tiny_decoder();
    let (n, hidden, vocab) = (64usize, 32usize, 320usize);
    let wave =
        |i: usize, j: usize, a: f64, b: f64| (2.0 * (a * i as f64 + b * j as f64).sin()) as f32;
    let states = |shift: f32| {
        let v: Vec<f32> = (0..n * hidden)
            .map(|k| {
                wave(k / hidden, k % hidden, 0.7, 1.3)
                    + shift * wave(k / hidden, k % hidden, 2.1, 0.4)
            })
            .collect();
        Tensor::from_vec(v, (n, hidden), &Device::Cpu).unwrap()
    };
    let targets: Vec<u32> = (0..n as u32)
        .map(|i| (i * 37 + 11) % vocab as u32)
        .collect();
    let windows = vec![
        WindowResult {
            begin: 0,
            end: 41,
            nll: 0.0,
            scored: 40,
        },
        WindowResult {
            begin: 40,
            end: 65,
            nll: 0.0,
            scored: 24,
        },
    ];
    // Rows 0..40 are window 0's positions 0..40, rows 40..64 window 1's positions 0..24.
    let at: Vec<usize> = (0..64).collect();
    let positions: Vec<u32> = (0..40).chain(0..24).collect();
    let scored = |shift| {
        ScoredStates::from_rows(
            states(shift),
            targets.clone(),
            at.clone(),
            positions.clone(),
            windows.clone(),
        )
    };
    let (base, codec) = (scored(0.0), scored(0.6));
    let (_, codecs) = score_sweep(&decoder, &base, &[Some(&codec)]).unwrap();
    let mut acc = Accumulator::default();
    // Input token ids 0, 1, 2, 3, 0, 1, ... along the stream.
    let ids: Vec<u32> = (0..65).map(|i| i % 4).collect();
    let batch = BatchComparison {
        tokens: codecs[0].as_ref().unwrap().1.clone(),
        layers: Default::default(),
    };
    let text = |i: usize| format!("t{}", i % 4);
    acc.add_batch(
        &batch,
        &Stream {
            ids: &ids,
            text: &text,
        },
    );
    let got = LlamaStats::of(&acc).unwrap();

    // Per token, from the whole logits in f64.
    let log_softmax = |t: &ScoredStates| -> Vec<Vec<f64>> {
        let logits = decoder.head(t.states()).unwrap().to_vec2::<f32>().unwrap();
        logits
            .into_iter()
            .map(|row| {
                let row: Vec<f64> = row.into_iter().map(f64::from).collect();
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
                row.iter().map(|x| x - lse).collect()
            })
            .collect()
    };
    let (lp_b, lp_q) = (log_softmax(&base), log_softmax(&codec));
    let kl = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(a, b)| a.exp() * (a - b)).sum::<f64>();
    let argmax = |r: &[f64]| (0..r.len()).fold(0, |m, i| if r[i] > r[m] { i } else { m });
    let top10 = |r: &[f64]| {
        let mut ids: Vec<usize> = (0..r.len()).collect();
        ids.sort_by(|&a, &b| r[b].total_cmp(&r[a]).then(a.cmp(&b)));
        ids.truncate(10);
        ids
    };
    let mut nll_q = Vec::new();
    let mut nll_b = Vec::new();
    let (mut kld, mut rkld, mut dp, mut same, mut overlap) = (vec![], vec![], vec![], 0.0, 0.0);
    for i in 0..n {
        let t = targets[i] as usize;
        nll_q.push(-lp_q[i][t]);
        nll_b.push(-lp_b[i][t]);
        kld.push(kl(&lp_b[i], &lp_q[i]));
        rkld.push(kl(&lp_q[i], &lp_b[i]));
        dp.push(lp_q[i][t].exp() - lp_b[i][t].exp());
        same += f64::from(u8::from(argmax(&lp_b[i]) == argmax(&lp_q[i])));
        let (tb, tq) = (top10(&lp_b[i]), top10(&lp_q[i]));
        overlap += tb.iter().filter(|x| tq.contains(x)).count() as f64 / 10.0;
    }
    let nf = n as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / nf;
    // The standard error of a mean: the spread about the mean over N, then over N − 1.
    let se = |v: &[f64]| {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / nf / (nf - 1.0)).sqrt()
    };
    let cov_of_means = |a: &[f64], b: &[f64]| {
        let (ma, mb) = (mean(a), mean(b));
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - ma) * (y - mb))
            .sum::<f64>()
            / nf
            / (nf - 1.0)
    };
    // Order statistic at q·(N − 1), between its two neighbours.
    let at = |v: &[f64], q: f64| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let pos = q * (nf - 1.0);
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        s[lo] * (1.0 - (pos - lo as f64)) + s[hi] * (pos - lo as f64)
    };
    let close = |what: &str, got: f64, want: f64| {
        assert!(
            (got - want).abs() <= 2e-4 * want.abs() + 2e-6,
            "{what}: {got} against {want} computed directly"
        );
    };
    let (ppl_q, ppl_b) = (mean(&nll_q).exp(), mean(&nll_b).exp());
    close("PPL(Q)", got.ppl.value, ppl_q);
    close("PPL(Q) ±", got.ppl.pm, ppl_q * se(&nll_q));
    close("PPL(base)", got.ppl_base.value, ppl_b);
    close("PPL(base) ±", got.ppl_base.pm, ppl_b * se(&nll_b));
    let pearson = cov_of_means(&nll_q, &nll_b) / (se(&nll_q) * se(&nll_b));
    close("Cor", got.correlation, pearson);
    // ln(PPL(Q)/PPL(base)) is the mean of the per-token NLL differences, ± their spread.
    let diff: Vec<f64> = nll_q.iter().zip(&nll_b).map(|(q, b)| q - b).collect();
    close("ln ratio", got.ln_ratio.value, mean(&diff));
    close("ln ratio ±", got.ln_ratio.pm, se(&diff));
    close("ratio", got.ratio.value, ppl_q / ppl_b);
    close("ratio ±", got.ratio.pm, ppl_q / ppl_b * se(&diff));
    close("PPL(Q) − PPL(base)", got.difference.value, ppl_q - ppl_b);
    // The delta method on the two correlated perplexities.
    let var_diff = (ppl_q * se(&nll_q)).powi(2) + (ppl_b * se(&nll_b)).powi(2)
        - 2.0 * ppl_q * ppl_b * cov_of_means(&nll_q, &nll_b);
    close("PPL(Q) − PPL(base) ±", got.difference.pm, var_diff.sqrt());
    close("KLD", got.kld.value, mean(&kld));
    close("KLD ±", got.kld.pm, se(&kld));
    for p in &got.kld_percentiles {
        close(&format!("KLD q{}", p.q), p.value, at(&kld, p.q));
    }
    close("Δp", got.dp.value, mean(&dp));
    close("Δp ±", got.dp.pm, se(&dp));
    for p in &got.dp_percentiles {
        close(&format!("Δp q{}", p.q), p.value, at(&dp, p.q));
    }
    let dp2: Vec<f64> = dp.iter().map(|d| d * d).collect();
    let rms = mean(&dp2).sqrt();
    close("RMS Δp", got.dp_rms.value, rms);
    close("RMS Δp ±", got.dp_rms.pm, se(&dp2) / (2.0 * rms));
    let p_same = same / nf;
    close("same top", got.same_top.value, p_same);
    close(
        "same top ±",
        got.same_top.pm,
        (p_same * (1.0 - p_same) / (nf - 1.0)).sqrt(),
    );
    close("reverse KLD", got.reverse_kld.value, mean(&rkld));
    close("reverse KLD ±", got.reverse_kld.pm, se(&rkld));
    close(
        "reverse KLD max",
        got.reverse_kld_percentiles[0].value,
        at(&rkld, 1.0),
    );
    close("top-10 overlap", got.top_k_overlap, overlap / nf);
    // Which tokens are hurt: by log2 position bin and by input token, summed directly.
    let hurt = acc.hurt.summary();
    for p in &hurt.by_position {
        let rows: Vec<usize> = (0..n)
            .filter(|&i| (p.first..=p.last).contains(&positions[i]))
            .collect();
        assert_eq!(p.tokens, rows.len() as u64);
        let k: Vec<f64> = rows.iter().map(|&i| kld[i]).collect();
        let d: Vec<f64> = rows.iter().map(|&i| diff[i]).collect();
        close(
            "KLD by position",
            p.kld_mean,
            k.iter().sum::<f64>() / k.len() as f64,
        );
        close(
            "ΔNLL by position",
            p.dnll_mean,
            d.iter().sum::<f64>() / d.len() as f64,
        );
        close(
            "KLD share",
            p.kld_share,
            k.iter().sum::<f64>() / kld.iter().sum::<f64>(),
        );
    }
    assert_eq!(
        hurt.by_position.len(),
        7,
        "positions 0..40 fill bins 0 to 6"
    );
    assert_eq!(hurt.top_tokens.len(), 4);
    for t in &hurt.top_tokens {
        let rows: Vec<usize> = (0..n).filter(|&i| i % 4 == t.id as usize).collect();
        let k = rows.iter().map(|&i| kld[i]).sum::<f64>() / rows.len() as f64;
        close("KLD by token", t.kld_mean, k);
        assert_eq!(t.text, format!("t{}", t.id));
    }
    assert!(hurt
        .top_tokens
        .windows(2)
        .all(|w| w[0].kld_mean >= w[1].kld_mean));
    // The case is not degenerate: the codec moved predictions, and not all of them.
    assert!(p_same > 0.2 && p_same < 1.0, "same top {p_same}");
    assert!(overlap / nf < 1.0 && mean(&kld) > 1e-3);
}
