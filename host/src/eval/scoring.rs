//! Scoring: log-probabilities of the targets, NLL and perplexity, and the per-token comparison
//! of a codec with the baseline. The head runs on a chunk of positions at a time (96 MiB of
//! logits), so the `[tokens, vocab]` logits never exist whole (400 MB for a batch of 2 × 1024
//! at a 49k vocabulary, 1.2 GB at 152k); a sweep compares each chunk of every codec with the
//! same chunk of the baseline. On the CPU the row kernels reduce each chunk (`logit_rows`);
//! elsewhere tensor ops do, where the logits are (`tensor_scoring`).

use candle_core::{IndexOp, Tensor};
use serde::{Deserialize, Serialize};

use super::error::EvalError;
use super::forward::Batch;
use super::{logit_rows, tensor_scoring};
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

/// A codec's predictions against the baseline's on one batch's scored tokens: one value per
/// token, in row order (each window's rows in turn).
#[derive(Debug, Clone, Default)]
pub struct TokenComparison {
    /// KL(base ‖ codec) and KL(codec ‖ base).
    pub kld: Vec<f32>,
    pub reverse_kld: Vec<f32>,
    /// Both put the same token on top.
    pub top1: Vec<bool>,
    /// How many of the baseline's `TOP_K` most likely tokens are among the codec's `TOP_K`.
    pub top_k_shared: Vec<u32>,
    /// log p(target) under the codec and under the baseline.
    pub lp: Vec<f32>,
    pub lp_base: Vec<f32>,
    /// Where its input token (the one whose state made the prediction) is in the token
    /// stream, and its position in the window.
    pub at: Vec<usize>,
    pub position: Vec<u32>,
}

/// What a window's pass keeps: its targets' log-probabilities and its result.
pub struct WindowScores {
    pub target_lp: Vec<f32>,
    pub result: WindowResult,
}

/// A codec's scores per window and its comparison with the baseline.
pub type CodecScores = (Vec<WindowScores>, TokenComparison);

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
    let mut per_codec: Vec<Option<TokenComparison>> = codecs
        .iter()
        .map(|c| c.map(|_| Default::default()))
        .collect();
    if let Some(base_states) = &base.states {
        let logits = |states: &Tensor, start: usize, rows: usize| -> Result<Tensor, EvalError> {
            Ok(decoder.head(&states.narrow(0, start, rows)?)?)
        };
        let chunk = (HEAD_CHUNK_BYTES / 4 / decoder.vocab_size()).max(1);
        let codec_states = codecs
            .iter()
            .map(|c| {
                c.map(|c| c.states.as_ref().ok_or_else(no_position))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let score_chunks = match base_states.device().is_cpu() {
            true => logit_rows::score_chunks,
            false => tensor_scoring::score_chunks,
        };
        let (base_rows, codec_rows) = score_chunks(&logit_rows::Passes {
            head: &logits,
            base: base_states,
            codecs: &codec_states,
            targets: &base.targets,
            chunk,
        })?;
        base_lp.extend(base_rows.iter().map(|r| r.target_lp));
        for (codec, acc) in codec_rows.into_iter().zip(&mut per_codec) {
            let (Some(codec), Some(acc)) = (codec, acc) else {
                continue;
            };
            acc.kld = codec.kld;
            acc.reverse_kld = codec.reverse_kld;
            acc.lp.extend(codec.rows.iter().map(|r| r.target_lp));
            for (b, c) in base_rows.iter().zip(&codec.rows) {
                acc.top1.push(b.top == c.top);
                acc.top_k_shared.push(b.top_k_shared(c) as u32);
            }
        }
    }
    let codec_scores = per_codec
        .into_iter()
        .map(|acc| {
            acc.map(|acc| {
                let comparison = TokenComparison {
                    lp_base: base_lp.clone(),
                    at: base.at.clone(),
                    position: base.positions.clone(),
                    ..acc
                };
                (base.scores(comparison.lp.clone()), comparison)
            })
        })
        .collect();
    Ok((base.scores(base_lp), codec_scores))
}

fn no_position() -> EvalError {
    candle_core::Error::Msg("a codec pass scored no position".into()).into()
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
impl ScoredStates {
    /// Hidden states `[rows, hidden]` with their targets, stream indices, positions and
    /// windows, as `new` would make them from a batch.
    pub fn from_rows(
        states: Tensor,
        targets: Vec<u32>,
        at: Vec<usize>,
        positions: Vec<u32>,
        windows: Vec<WindowResult>,
    ) -> ScoredStates {
        ScoredStates {
            states: Some(states),
            targets,
            at,
            positions,
            windows,
        }
    }

    pub fn states(&self) -> &Tensor {
        self.states.as_ref().expect("states")
    }
}
