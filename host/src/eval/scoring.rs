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
    /// Each window with its NLL still 0, in row order.
    windows: Vec<WindowResult>,
}

impl ScoredStates {
    pub fn new(tokens: &[u32], batch: &Batch<'_>, h: &Tensor) -> Result<Self, EvalError> {
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        let mut windows = Vec::with_capacity(batch.windows.len());
        for (row, w) in batch.windows.iter().enumerate() {
            let (first, scored) = (w.first_target(), w.scored());
            if scored > 0 {
                rows.push(h.i(row)?.narrow(0, first - 1, scored)?);
                targets.extend_from_slice(&tokens[w.begin + first..w.end]);
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
    /// Tokens where both put the same token on top.
    pub top1_agree: usize,
    /// p_codec(target) − p_base(target) per scored token.
    pub dp: Vec<f32>,
}

/// What a window's pass keeps: its targets' log-probabilities and its result.
pub struct WindowScores {
    pub target_lp: Vec<f32>,
    pub result: WindowResult,
}

/// A codec's scores and its comparison with the baseline, per window.
pub type CodecScores = (Vec<WindowScores>, Vec<TokenComparison>);

/// One row of logits reduced: log-sum-exp, top token, and the target's log-probability.
#[derive(Debug, Clone, Copy)]
struct Row {
    log_sum_exp: f32,
    top: u32,
    target_lp: f32,
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

    /// KL(self ‖ codec) per row.
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

/// The reduction of `Chunk::new` with tensor ops, for devices other than the CPU.
fn rows_with_tensor_ops(logits: &Tensor, targets: &[u32]) -> Result<Vec<Row>, EvalError> {
    let max = logits.max_keepdim(D::Minus1)?;
    let lse = (logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + max)?;
    let t = Tensor::from_slice(targets, (targets.len(), 1), logits.device())?;
    let target_lp = (logits.gather(&t, 1)? - &lse)?
        .squeeze(1)?
        .to_vec1::<f32>()?;
    let top = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let lse = lse.squeeze(1)?.to_vec1::<f32>()?;
    Ok((0..targets.len())
        .map(|i| Row {
            log_sum_exp: lse[i],
            top: top[i],
            target_lp: target_lp[i],
        })
        .collect())
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
    let n = base.targets.len();
    let mut base_lp = Vec::with_capacity(n);
    /// A codec's rows so far: target log-probabilities, KLD, top-1 agreement.
    type CodecRows = (Vec<f32>, Vec<f32>, Vec<bool>);
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
                let (Some(codec), Some((lp, kld, top1))) = (codec, acc) else {
                    continue;
                };
                let states = codec.states.as_ref().ok_or_else(|| {
                    candle_core::Error::Msg("a codec pass scored no position".into())
                })?;
                let c = Chunk::new(logits(states, start, rows)?, targets)?;
                kld.extend(b.kl_to(&c)?);
                lp.extend(c.rows.iter().map(|r| r.target_lp));
                top1.extend(b.rows.iter().zip(&c.rows).map(|(b, c)| b.top == c.top));
            }
        }
    }
    let codec_scores = per_codec
        .into_iter()
        .map(|acc| {
            acc.map(|(lp, kld, top1)| {
                let comparisons = base
                    .per_window(&kld)
                    .zip(base.per_window(&top1))
                    .zip(base.per_window(&base_lp).zip(base.per_window(&lp)))
                    .map(|((kld, top1), (lp_b, lp_c))| TokenComparison {
                        kld: kld.to_vec(),
                        top1_agree: top1.iter().filter(|&&t| t).count(),
                        dp: lp_b
                            .iter()
                            .zip(lp_c)
                            .map(|(b, c)| c.exp() - b.exp())
                            .collect(),
                    })
                    .collect();
                (base.scores(lp), comparisons)
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
        }
    }
}
