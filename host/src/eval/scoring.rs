//! Scoring: log-probabilities of the targets, NLL and perplexity, and the per-token comparison
//! of a codec with the baseline. The head runs on a chunk of positions at a time (96 MiB of
//! logits), so the `[tokens, vocab]` logits never exist whole (400 MB for a batch of 2 × 1024
//! at a 49k vocabulary, 1.2 GB at 152k); a sweep compares each chunk of every codec with the
//! same chunk of the baseline.

use candle_core::{IndexOp, Storage, Tensor, D};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::EvalError;
use super::forward::Batch;
use crate::model::cpu::{kl_divergence, log_softmax_stats, RowStats};
use crate::model::Decoder;
use crate::profile::{section, Phase};

/// f32 logits per head chunk: 512 positions at a 49k vocabulary, where gemm runs 1.6× faster
/// than on 128 (137 → 223 GFLOP/s on 2 cores), 165 at 152k.
const HEAD_CHUNK_BYTES: usize = 96 << 20;

/// NLL and scored labels of one window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct WindowResult {
    pub begin: usize,
    pub end: usize,
    pub nll: f64,
    pub scored: usize,
}

/// The last layer's hidden states at one batch's scored positions (position p predicts token
/// p + 1), every window's rows in order, and the tokens they must predict.
pub struct ScoredStates {
    /// `[scored, hidden]`; None when no window scores anything.
    states: Option<Tensor>,
    targets: Vec<u32>,
    /// Per row: where in the token stream its input token is, and its position in its window.
    at: Vec<usize>,
    positions: Vec<u32>,
    /// Each window with its NLL still 0, in row order.
    windows: Vec<WindowResult>,
}

impl ScoredStates {
    pub fn new(tokens: &[u32], batch: &Batch<'_>, h: &Tensor) -> Result<Self, EvalError> {
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        let mut at = Vec::new();
        let mut positions = Vec::new();
        let mut windows = Vec::with_capacity(batch.windows.len());
        for (row, w) in batch.windows.iter().enumerate() {
            let (first, scored) = (w.first_target(), w.scored());
            if scored > 0 {
                rows.push(h.i(row)?.narrow(0, first - 1, scored)?);
                targets.extend_from_slice(&tokens[w.begin + first..w.end]);
                at.extend(w.begin + first - 1..w.end - 1);
                positions.extend(first as u32 - 1..w.len() as u32 - 1);
            }
            windows.push(WindowResult {
                begin: w.begin,
                end: w.end,
                nll: 0.0,
                scored,
            });
        }
        let states = if rows.is_empty() {
            None
        } else {
            Some(Tensor::cat(&rows, 0)?)
        };
        Ok(ScoredStates {
            states,
            targets,
            at,
            positions,
            windows,
        })
    }

    /// Splits per-row values into per-window ones, in window order.
    fn per_window<'v, T>(&self, values: &'v [T]) -> impl Iterator<Item = &'v [T]> + use<'v, '_, T> {
        let mut start = 0;
        self.windows.iter().map(move |w| {
            let part = &values[start..start + w.scored];
            start += w.scored;
            part
        })
    }

    fn scores(&self, target_lp: Vec<f32>) -> Vec<WindowScores> {
        self.per_window(&target_lp)
            .zip(&self.windows)
            .map(|(lp, w)| WindowScores {
                target_lp: lp.to_vec(),
                result: WindowResult {
                    nll: -lp.iter().map(|&x| f64::from(x)).sum::<f64>(),
                    ..*w
                },
            })
            .collect()
    }
}

/// Per-token comparison of a codec's predictions with the baseline's on the same tokens.
#[derive(Debug, Clone, Default)]
pub struct TokenComparison {
    /// KL(base ‖ codec) per scored token.
    pub kld: Vec<f32>,
    /// KL(codec ‖ base) per scored token.
    pub reverse_kld: Vec<f32>,
    /// Tokens where both put the same token on top.
    pub top1_agree: usize,
    /// Σ over tokens of how many of the baseline's `TOP_K` most likely tokens are among the
    /// codec's `TOP_K`.
    pub top_k_shared: usize,
    /// p_codec(target) − p_base(target) per scored token.
    pub dp: Vec<f32>,
    /// −log p(target) per scored token: the baseline's and the codec's.
    pub nll_base: Vec<f32>,
    pub nll: Vec<f32>,
    /// Per scored token: where its input token (the one whose state made the prediction) is
    /// in the token stream, and its position in the window.
    pub at: Vec<usize>,
    pub position: Vec<u32>,
}

/// How many of the most likely tokens the top-k overlap compares.
pub const TOP_K: usize = 10;

/// What a window's pass keeps: its targets' log-probabilities and its result.
pub struct WindowScores {
    pub target_lp: Vec<f32>,
    pub result: WindowResult,
}

/// A codec's scores and its comparison with the baseline, per window.
pub type CodecScores = (Vec<WindowScores>, Vec<TokenComparison>);

/// One row of logits reduced: log-sum-exp, the most likely tokens, and the target's
/// log-probability.
#[derive(Debug, Clone, Copy)]
struct Row {
    log_sum_exp: f32,
    top: u32,
    /// The `TOP_K` largest logits' token ids, largest first (`u32::MAX` past the vocabulary).
    top_k: [u32; TOP_K],
    target_lp: f32,
}

impl Row {
    /// How many of `self`'s top-k tokens are among `other`'s.
    fn top_k_shared(&self, other: &Row) -> usize {
        self.top_k
            .iter()
            .filter(|t| other.top_k.contains(t))
            .count()
    }
}

/// The ids of a row's `TOP_K` largest values, largest first (the first of equals first).
fn top_k(xs: &[f32]) -> [u32; TOP_K] {
    /// Values tested at once: a chunk with nothing above the k-th best so far (almost every
    /// chunk of a vocabulary-sized row) is skipped after one vectorized comparison.
    const CHUNK: usize = 16;
    let mut best = [(f32::NEG_INFINITY, u32::MAX); TOP_K];
    for (c, chunk) in xs.chunks(CHUNK).enumerate() {
        let (kth, full) = (best[TOP_K - 1].0, best[TOP_K - 1].1 != u32::MAX);
        if full && !chunk.iter().fold(false, |any, &x| any | (x > kth)) {
            continue;
        }
        for (j, &x) in chunk.iter().enumerate() {
            if x > best[TOP_K - 1].0 || (best[TOP_K - 1].1 == u32::MAX && !x.is_nan()) {
                let mut at = TOP_K - 1;
                while at > 0 && (x > best[at - 1].0 || best[at - 1].1 == u32::MAX) {
                    best[at] = best[at - 1];
                    at -= 1;
                }
                best[at] = (x, (c * CHUNK + j) as u32);
            }
        }
    }
    best.map(|(_, i)| i)
}

/// A chunk of logits `[rows, vocab]` (f32) and its rows reduced.
struct Chunk {
    logits: Tensor,
    rows: Vec<Row>,
}

impl Chunk {
    fn new(logits: Tensor, targets: &[u32]) -> Result<Self, EvalError> {
        let rows = match cpu_rows(&logits, |rows, vocab| {
            rows.par_chunks(vocab)
                .zip(targets)
                .map(|(x, &t)| {
                    let RowStats {
                        argmax,
                        log_sum_exp,
                        ..
                    } = log_softmax_stats(x);
                    let target = x.get(t as usize).ok_or_else(|| {
                        candle_core::Error::Msg(format!(
                            "token id {t} is outside the head's {} logits: the tokenizer does not belong to this model",
                            x.len()
                        ))
                    })?;
                    Ok(Row {
                        log_sum_exp,
                        top: argmax as u32,
                        top_k: top_k(x),
                        target_lp: target - log_sum_exp,
                    })
                })
                .collect::<Result<Vec<_>, candle_core::Error>>()
        }) {
            Some(rows) => rows?,
            None => rows_with_tensor_ops(&logits, targets)?,
        };
        Ok(Chunk { logits, rows })
    }

    /// KL(self ‖ other) per row.
    fn kl_to(&self, codec: &Chunk) -> Result<Vec<f32>, EvalError> {
        let (b, c) = (
            self.logits.storage_and_layout(),
            codec.logits.storage_and_layout(),
        );
        if let (Some(b), Some(c)) = (cpu_f32(&b.0, b.1), cpu_f32(&c.0, c.1)) {
            let vocab = self.logits.dim(1)?;
            return Ok(b
                .par_chunks(vocab)
                .zip(c.par_chunks(vocab))
                .zip(self.rows.par_iter().zip(&codec.rows))
                .map(|((b, c), (rb, rc))| kl_divergence(b, rb.log_sum_exp, c, rc.log_sum_exp))
                .collect());
        }
        let lse = |rows: &[Row]| {
            let v: Vec<f32> = rows.iter().map(|r| r.log_sum_exp).collect();
            Tensor::from_vec(v, (rows.len(), 1), self.logits.device())
        };
        let lp_b = self.logits.broadcast_sub(&lse(&self.rows)?)?;
        let lp_c = codec.logits.broadcast_sub(&lse(&codec.rows)?)?;
        Ok((lp_b.exp()? * (lp_b - lp_c)?)?.sum(D::Minus1)?.to_vec1()?)
    }
}

/// The contiguous f32 data of a CPU tensor, if it is one.
fn cpu_f32<'s>(storage: &'s Storage, layout: &candle_core::Layout) -> Option<&'s [f32]> {
    match storage {
        Storage::Cpu(candle_core::CpuStorage::F32(v)) => {
            let (start, end) = layout.contiguous_offsets()?;
            Some(&v[start..end])
        }
        _ => None,
    }
}

/// `f(data, vocab)` on a contiguous f32 CPU tensor `[rows, vocab]`; None elsewhere.
fn cpu_rows<T>(logits: &Tensor, f: impl FnOnce(&[f32], usize) -> T) -> Option<T> {
    let (storage, layout) = logits.storage_and_layout();
    let vocab = *layout.dims().last()?;
    cpu_f32(&storage, layout).map(|data| f(data, vocab))
}

/// The reduction of `Chunk::new` with tensor ops, for devices other than the CPU. Everything
/// is reduced where the logits are, the top-k too (`TOP_K` rounds of argmax, each taking its
/// winner out), and only `2 + TOP_K` numbers per row cross to the host, in one read: the
/// logits themselves never do.
fn rows_with_tensor_ops(logits: &Tensor, targets: &[u32]) -> Result<Vec<Row>, EvalError> {
    let logits = logits.to_dtype(candle_core::DType::F32)?.contiguous()?;
    let (rows, vocab) = logits.dims2()?;
    let max = logits.max_keepdim(D::Minus1)?;
    let lse = (logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + max)?;
    let t = Tensor::from_slice(targets, (targets.len(), 1), logits.device())?;
    let target_lp = (logits.gather(&t, 1)? - &lse)?;
    // A copy to take winners out of; ids below 2^24 are exact in f32.
    let remaining = logits.copy()?;
    let out = Tensor::full(f32::NEG_INFINITY, (rows, 1), logits.device())?;
    let mut columns = vec![lse, target_lp];
    for _ in 0..TOP_K.min(vocab) {
        let best = remaining.argmax_keepdim(D::Minus1)?;
        remaining.scatter_set(&best, &out, 1)?;
        columns.push(best.to_dtype(candle_core::DType::F32)?);
    }
    let table = Tensor::cat(&columns, 1)?.to_vec2::<f32>()?;
    Ok(table
        .iter()
        .map(|r| {
            let mut top_k = [u32::MAX; TOP_K];
            for (slot, &id) in top_k.iter_mut().zip(&r[2..]) {
                *slot = id as u32;
            }
            Row {
                log_sum_exp: r[0],
                top: top_k[0],
                top_k,
                target_lp: r[1],
            }
        })
        .collect())
}

/// A codec's rows so far, in row order.
#[derive(Default)]
struct CodecRows {
    lp: Vec<f32>,
    kld: Vec<f32>,
    reverse_kld: Vec<f32>,
    top1: Vec<bool>,
    top_k_shared: Vec<usize>,
}

/// The baseline's scores alone.
pub fn score(decoder: &Decoder, states: &ScoredStates) -> Result<Vec<WindowScores>, EvalError> {
    Ok(score_sweep(decoder, states, &[])?.0)
}

/// The baseline's scores and, for every codec pass present, its scores and its comparison
/// with the baseline. The head runs once per chunk of positions for each.
pub fn score_sweep(
    decoder: &Decoder,
    base: &ScoredStates,
    codecs: &[Option<&ScoredStates>],
) -> Result<(Vec<WindowScores>, Vec<Option<CodecScores>>), EvalError> {
    section(Phase::Scoring, decoder.head_device(), || {
        score_sweep_unprofiled(decoder, base, codecs)
    })
}

fn score_sweep_unprofiled(
    decoder: &Decoder,
    base: &ScoredStates,
    codecs: &[Option<&ScoredStates>],
) -> Result<(Vec<WindowScores>, Vec<Option<CodecScores>>), EvalError> {
    let n = base.targets.len();
    let mut base_lp = Vec::with_capacity(n);
    let mut per_codec: Vec<Option<CodecRows>> = codecs
        .iter()
        .map(|c| c.map(|_| Default::default()))
        .collect();
    if let Some(base_states) = &base.states {
        let logits = |states: &Tensor, start: usize, rows: usize| -> Result<Tensor, EvalError> {
            Ok(decoder.head(&states.narrow(0, start, rows)?)?)
        };
        let chunk = (HEAD_CHUNK_BYTES / 4 / decoder.vocab_size()).max(1);
        for start in (0..n).step_by(chunk) {
            let rows = chunk.min(n - start);
            let targets = &base.targets[start..start + rows];
            let b = Chunk::new(logits(base_states, start, rows)?, targets)?;
            base_lp.extend(b.rows.iter().map(|r| r.target_lp));
            for (codec, acc) in codecs.iter().zip(&mut per_codec) {
                let (Some(codec), Some(acc)) = (codec, acc) else {
                    continue;
                };
                let states = codec.states.as_ref().ok_or_else(|| {
                    candle_core::Error::Msg("a codec pass scored no position".into())
                })?;
                let c = Chunk::new(logits(states, start, rows)?, targets)?;
                acc.kld.extend(b.kl_to(&c)?);
                acc.reverse_kld.extend(c.kl_to(&b)?);
                acc.lp.extend(c.rows.iter().map(|r| r.target_lp));
                for (b, c) in b.rows.iter().zip(&c.rows) {
                    acc.top1.push(b.top == c.top);
                    acc.top_k_shared.push(b.top_k_shared(c));
                }
            }
        }
    }
    let codec_scores = per_codec
        .into_iter()
        .map(|acc| {
            acc.map(|acc| {
                let comparisons = base
                    .per_window(&acc.kld)
                    .zip(base.per_window(&acc.reverse_kld))
                    .zip(
                        base.per_window(&acc.top1)
                            .zip(base.per_window(&acc.top_k_shared)),
                    )
                    .zip(base.per_window(&base_lp).zip(base.per_window(&acc.lp)))
                    .zip(
                        base.per_window(&base.at)
                            .zip(base.per_window(&base.positions)),
                    )
                    .map(
                        |(
                            (((kld, reverse_kld), (top1, top_k_shared)), (lp_b, lp_c)),
                            (at, position),
                        )| {
                            TokenComparison {
                                kld: kld.to_vec(),
                                reverse_kld: reverse_kld.to_vec(),
                                top1_agree: top1.iter().filter(|&&t| t).count(),
                                top_k_shared: top_k_shared.iter().sum(),
                                dp: lp_b
                                    .iter()
                                    .zip(lp_c)
                                    .map(|(b, c)| c.exp() - b.exp())
                                    .collect(),
                                nll_base: lp_b.iter().map(|&b| -b).collect(),
                                nll: lp_c.iter().map(|&c| -c).collect(),
                                at: at.to_vec(),
                                position: position.to_vec(),
                            }
                        },
                    )
                    .collect();
                (base.scores(acc.lp), comparisons)
            })
        })
        .collect();
    Ok((base.scores(base_lp), codec_scores))
}

/// Perplexity of a total NLL over `scored` labels.
pub fn perplexity(total_nll: f64, scored: usize) -> f64 {
    if scored == 0 {
        f64::NAN
    } else {
        (total_nll / scored as f64).exp()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Two tokens over a vocabulary of 2, as log-probabilities. Base: p = (0.5, 0.5) and
    /// (0.9, 0.1); codec: (0.25, 0.75) and (0.9, 0.1); targets 1 and 0.
    fn chunks(reduce: fn(&Tensor, &[u32]) -> Result<Vec<Row>, EvalError>) -> (Chunk, Chunk) {
        let lp = |rows: &[[f32; 2]]| {
            let v: Vec<f32> = rows.iter().flatten().map(|p| p.ln()).collect();
            Tensor::from_vec(v, (rows.len(), 2), &Device::Cpu).unwrap()
        };
        let make = |logits: Tensor| {
            let rows = reduce(&logits, &[1, 0]).unwrap();
            Chunk { logits, rows }
        };
        (
            make(lp(&[[0.5, 0.5], [0.9, 0.1]])),
            make(lp(&[[0.25, 0.75], [0.9, 0.1]])),
        )
    }

    fn on_cpu(logits: &Tensor, targets: &[u32]) -> Result<Vec<Row>, EvalError> {
        Ok(Chunk::new(logits.clone(), targets)?.rows)
    }

    #[test]
    fn kld_agreement_and_target_log_probs_by_hand() {
        // The CPU kernels and the tensor ops other devices use give the same answers.
        for reduce in [on_cpu, rows_with_tensor_ops] {
            let (base, codec) = chunks(reduce);
            // Targets: ln 0.5 and ln 0.9 in the base, ln 0.75 and ln 0.9 in the codec.
            for (row, want) in base.rows.iter().zip([0.5f32, 0.9]) {
                assert!((row.target_lp - want.ln()).abs() < 1e-6);
                assert!(row.log_sum_exp.abs() < 1e-6);
            }
            assert!((codec.rows[0].target_lp - 0.75f32.ln()).abs() < 1e-6);
            // KL = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3); row 1 is identical.
            let kld = base.kl_to(&codec).unwrap();
            assert!((kld[0] - 0.5 * (4.0f32 / 3.0).ln()).abs() < 1e-6);
            assert!(kld[1].abs() < 1e-6);
            // Top-1: row 0 base is a tie (the first wins), the codec's is 1.
            let tops: Vec<_> = base
                .rows
                .iter()
                .zip(&codec.rows)
                .map(|(b, c)| (b.top, c.top))
                .collect();
            assert_eq!(tops, [(0, 1), (0, 0)]);
            // Identical predictions: KLD 0.
            assert!(base.kl_to(&base).unwrap().iter().all(|&k| k.abs() < 1e-7));
            // Reverse: 0.25 ln(0.25/0.5) + 0.75 ln(0.75/0.5) = 0.75 ln 1.5 − 0.25 ln 2.
            let reverse = codec.kl_to(&base).unwrap();
            let want = 0.75 * 1.5f32.ln() - 0.25 * 2f32.ln();
            assert!((reverse[0] - want).abs() < 1e-6, "{}", reverse[0]);
            // A vocabulary of 2: both ids in each top-k, padding past it.
            assert_eq!(base.rows[0].top_k[..3], [0, 1, u32::MAX]);
            assert_eq!(codec.rows[0].top_k[..3], [1, 0, u32::MAX]);
            assert_eq!(base.rows[0].top_k_shared(&codec.rows[0]), TOP_K);
        }
    }

    /// The tensor-op reduction, which keeps the logits on their device, against the CPU
    /// kernels on a vocabulary-sized chunk: the same top-k ids in the same order, the same
    /// log-sum-exp and target log-probabilities within f32 rounding.
    #[test]
    fn tensor_op_reduction_equals_the_cpu_kernels_on_a_large_chunk() {
        let (rows, vocab) = (7, 5003);
        let v: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i as u64 * 2_654_435_761) % 100_003) as f32 / 997.0 - 40.0)
            .collect();
        let logits = Tensor::from_vec(v, (rows, vocab), &Device::Cpu).unwrap();
        let targets: Vec<u32> = (0..rows as u32).map(|r| r * 611 % vocab as u32).collect();
        let cpu = on_cpu(&logits, &targets).unwrap();
        let ops = rows_with_tensor_ops(&logits, &targets).unwrap();
        for (r, (a, b)) in cpu.iter().zip(&ops).enumerate() {
            assert_eq!(a.top_k, b.top_k, "row {r}");
            assert_eq!(a.top, b.top, "row {r}");
            assert!((a.log_sum_exp - b.log_sum_exp).abs() < 1e-5, "row {r}");
            assert!((a.target_lp - b.target_lp).abs() < 1e-5, "row {r}");
        }
    }

    #[test]
    fn top_k_is_the_largest_first_and_ties_keep_order() {
        let xs = [
            0.0, 5.0, 1.0, 9.0, 5.0, -2.0, 3.0, 7.0, 8.0, 2.0, 6.0, 4.0, 5.0,
        ];
        assert_eq!(top_k(&xs), [3, 8, 7, 10, 1, 4, 12, 11, 6, 9]);
        // A long row with ties and NaN across the skipped chunks: the same ids as sorting.
        let long: Vec<f32> = (0..5000u32)
            .map(|i| match i {
                777 | 4001 => f32::NAN,
                _ => ((i * 7919) % 1013) as f32 / 8.0,
            })
            .collect();
        let mut want: Vec<u32> = (0..5000).filter(|&i| !long[i as usize].is_nan()).collect();
        want.sort_by(|&a, &b| {
            long[b as usize]
                .total_cmp(&long[a as usize])
                .then(a.cmp(&b))
        });
        assert_eq!(top_k(&long)[..], want[..TOP_K]);
        let mut shifted = Row {
            log_sum_exp: 0.0,
            top: 0,
            top_k: top_k(&xs),
            target_lp: 0.0,
        };
        let same = shifted;
        // Two ids out of the top-10 (9 and 6 → 0 and 5): 8 shared.
        shifted.top_k[8] = 0;
        shifted.top_k[9] = 5;
        assert_eq!(same.top_k_shared(&shifted), 8);
    }

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
        let scored = |shift| ScoredStates {
            states: Some(states(shift)),
            targets: targets.clone(),
            at: at.clone(),
            positions: positions.clone(),
            windows: windows.clone(),
        };
        let (base, codec) = (scored(0.0), scored(0.6));
        let (_, codecs) = score_sweep(&decoder, &base, &[Some(&codec)]).unwrap();
        let mut acc = crate::stats::Accumulator::default();
        // Input token ids 0, 1, 2, 3, 0, 1, ... along the stream.
        let ids: Vec<u32> = (0..65).map(|i| i % 4).collect();
        for c in &codecs[0].as_ref().unwrap().1 {
            acc.add(c, &ids, &|i| format!("t{}", i % 4));
        }
        let got = crate::stats::LlamaStats::of(&acc).unwrap();

        // Per token, from the whole logits in f64.
        let log_softmax = |t: &ScoredStates| -> Vec<Vec<f64>> {
            let logits = decoder
                .head(t.states.as_ref().unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
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
        let kl =
            |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(a, b)| a.exp() * (a - b)).sum::<f64>();
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
}
