//! Scoring where the logits are off the CPU (a GPU): each head chunk reduced where it is with
//! tensor ops (log-sum-exp, the target's log-probability, the top-k ids by `TOP_K` rounds of
//! argmax, and against the baseline's chunk both KL divergences), and the per-token scalars of
//! the whole batch read back in one copy. The logits never cross to the host.

use candle_core::{DType, Tensor, D};

use super::error::EvalError;
use super::logit_rows::{CodecRows, PassRows, Passes, Row, TOP_K};

/// Columns per pass and token: log-sum-exp, the target's log-probability, the top-k ids.
const ROW_COLUMNS: usize = 2 + TOP_K;
/// A codec pass adds KL(base ‖ codec) and KL(codec ‖ base).
const CODEC_COLUMNS: usize = ROW_COLUMNS + 2;

/// A chunk's logits `[rows, vocab]` (f32, contiguous), its log-sum-exps `[rows, 1]` and its
/// per-token columns `[rows, ROW_COLUMNS]`, all where the logits are.
struct Reduced {
    logits: Tensor,
    lse: Tensor,
    table: Tensor,
}

/// `targets` is `[rows, 1]` (u32) on the logits' device.
fn reduce(logits: Tensor, targets: &Tensor) -> Result<Reduced, EvalError> {
    let logits = logits.to_dtype(DType::F32)?.contiguous()?;
    let vocab = logits.dim(1)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let lse = (logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + max)?;
    let target_lp = (logits.gather(targets, 1)? - &lse)?;
    // A copy to take winners out of; ids below 2^24 are exact in f32.
    let remaining = logits.copy()?;
    let taken = Tensor::full(f32::NEG_INFINITY, (logits.dim(0)?, 1), logits.device())?;
    let mut columns = vec![lse.clone(), target_lp];
    for _ in 0..TOP_K.min(vocab) {
        let best = remaining.argmax_keepdim(D::Minus1)?;
        remaining.scatter_set(&best, &taken, 1)?;
        columns.push(best.to_dtype(DType::F32)?);
    }
    // A vocabulary under TOP_K: the ids past it are u32::MAX, as the CPU path pads them.
    for _ in vocab..TOP_K {
        columns.push(Tensor::full(
            u32::MAX as f32,
            (logits.dim(0)?, 1),
            logits.device(),
        )?);
    }
    let table = Tensor::cat(&columns, 1)?;
    Ok(Reduced { logits, lse, table })
}

/// KL(p ‖ q) per row, `[rows, 1]`.
fn kl(p: &Reduced, q: &Reduced) -> Result<Tensor, EvalError> {
    let lp_p = p.logits.broadcast_sub(&p.lse)?;
    let lp_q = q.logits.broadcast_sub(&q.lse)?;
    Ok((lp_p.exp()? * (lp_p - lp_q)?)?.sum_keepdim(D::Minus1)?)
}

fn row(columns: &[f32]) -> Row {
    let mut top_k = [u32::MAX; TOP_K];
    for (slot, &id) in top_k.iter_mut().zip(&columns[2..]) {
        *slot = id as u32;
    }
    Row {
        log_sum_exp: columns[0],
        top: top_k[0],
        top_k,
        target_lp: columns[1],
    }
}

/// [`Passes`] reduced where the states are; one copy to the host for all of it.
pub fn score_chunks(passes: &Passes<'_>) -> Result<PassRows, EvalError> {
    let mut tables = Vec::new();
    for (start, rows) in passes.chunks() {
        let targets = &passes.targets[start..start + rows];
        let t = Tensor::from_slice(targets, (rows, 1), passes.base.device())?;
        let b = reduce((passes.head)(passes.base, start, rows)?, &t)?;
        let mut columns = vec![b.table.clone()];
        for codec in passes.codecs.iter().flatten() {
            let c = reduce((passes.head)(codec, start, rows)?, &t)?;
            columns.extend([c.table.clone(), kl(&b, &c)?, kl(&c, &b)?]);
        }
        tables.push(Tensor::cat(&columns, 1)?);
    }
    let table = Tensor::cat(&tables, 0)?.to_vec2::<f32>()?;
    let base_rows = table.iter().map(|r| row(&r[..ROW_COLUMNS])).collect();
    let mut at = ROW_COLUMNS;
    let codec_rows = passes
        .codecs
        .iter()
        .map(|c| {
            c.map(|_| {
                let first = at;
                at += CODEC_COLUMNS;
                let column = |k: usize| table.iter().map(|r| r[first + k]).collect();
                CodecRows {
                    rows: table
                        .iter()
                        .map(|r| row(&r[first..first + ROW_COLUMNS]))
                        .collect(),
                    kld: column(ROW_COLUMNS),
                    reverse_kld: column(ROW_COLUMNS + 1),
                }
            })
        })
        .collect();
    Ok((base_rows, codec_rows))
}

#[cfg(test)]
#[path = "tensor_scoring_tests.rs"]
mod tests;
