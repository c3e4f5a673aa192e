//! Scoring: log-probabilities at the scored positions, NLL and perplexity, and the per-token
//! comparison of a codec with the baseline.

use candle_core::{IndexOp, Tensor};
use serde::{Deserialize, Serialize};

use super::error::EvalError;
use super::forward::Batch;
use crate::model::Decoder;

/// NLL and scored labels of one window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct WindowResult {
    pub begin: usize,
    pub end: usize,
    pub nll: f64,
    pub scored: usize,
}

/// Log-probabilities over the vocabulary at one window's scored positions.
pub struct WindowLogProbs {
    /// `[scored, vocab]`, f32.
    pub log_probs: Tensor,
    /// Log-probability of each target.
    pub target_lp: Vec<f32>,
    pub result: WindowResult,
}

/// The head at every scored position of every window of the batch.
pub fn head_log_probs(
    decoder: &Decoder,
    tokens: &[u32],
    batch: &Batch<'_>,
    h: &Tensor,
) -> Result<Vec<WindowLogProbs>, EvalError> {
    let device = decoder.device();
    let mut out = Vec::with_capacity(batch.windows.len());
    for (row, w) in batch.windows.iter().enumerate() {
        let first = w.first_target();
        let scored = w.scored();
        let targets = Tensor::from_slice(&tokens[w.begin + first..w.end], scored, device)?;
        let (log_probs, target_lp) = if scored == 0 {
            (
                Tensor::zeros((0, decoder.vocab_size()), candle_core::DType::F32, device)?,
                Vec::new(),
            )
        } else {
            // The head runs only where a label is scored: position p predicts token p + 1.
            let hs = h.i(row)?.narrow(0, first - 1, scored)?;
            let log_probs =
                candle_nn::ops::log_softmax(&decoder.head(&hs)?, candle_core::D::Minus1)?;
            let target_lp = log_probs
                .gather(&targets.unsqueeze(1)?, 1)?
                .squeeze(1)?
                .to_vec1::<f32>()?;
            (log_probs, target_lp)
        };
        let nll = -target_lp.iter().map(|&x| f64::from(x)).sum::<f64>();
        out.push(WindowLogProbs {
            log_probs,
            target_lp,
            result: WindowResult {
                begin: w.begin,
                end: w.end,
                nll,
                scored,
            },
        });
    }
    Ok(out)
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

/// What every codec's comparison needs of one baseline window, computed once per batch.
pub struct Reference<'a> {
    window: &'a WindowLogProbs,
    /// `exp(log_probs)`, `[scored, vocab]`.
    probs: Tensor,
    /// The baseline's top token per scored position.
    top: Tensor,
}

impl<'a> Reference<'a> {
    pub fn new(window: &'a WindowLogProbs) -> Result<Self, EvalError> {
        Ok(Reference {
            probs: window.log_probs.exp()?,
            top: window.log_probs.argmax(candle_core::D::Minus1)?,
            window,
        })
    }
}

pub fn compare(base: &Reference<'_>, codec: &WindowLogProbs) -> Result<TokenComparison, EvalError> {
    let Reference {
        window: base,
        probs,
        top: top_b,
    } = base;
    if base.result.scored == 0 {
        return Ok(TokenComparison::default());
    }
    let kld = (probs * (&base.log_probs - &codec.log_probs)?)?
        .sum(candle_core::D::Minus1)?
        .to_vec1::<f32>()?;
    let top_c = codec.log_probs.argmax(candle_core::D::Minus1)?;
    let top1_agree = top_b
        .eq(&top_c)?
        .to_dtype(candle_core::DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()? as usize;
    let dp = base
        .target_lp
        .iter()
        .zip(&codec.target_lp)
        .map(|(b, c)| c.exp() - b.exp())
        .collect();
    Ok(TokenComparison {
        kld,
        top1_agree,
        dp,
    })
}

/// What a window's pass keeps once compared: its targets' log-probabilities and its result
/// (the vocabulary-wide log-probabilities are dropped as soon as they are compared).
pub struct WindowScores {
    pub target_lp: Vec<f32>,
    pub result: WindowResult,
}

impl From<WindowLogProbs> for WindowScores {
    fn from(w: WindowLogProbs) -> Self {
        WindowScores {
            target_lp: w.target_lp,
            result: w.result,
        }
    }
}

/// Perplexity of a total NLL over `scored` labels.
pub fn perplexity(total_nll: f64, scored: usize) -> f64 {
    if scored == 0 {
        f64::NAN
    } else {
        (total_nll / scored as f64).exp()
    }
}
