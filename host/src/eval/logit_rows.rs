//! A chunk of logits reduced row by row: log-sum-exp, the most likely tokens, the target's
//! log-probability, and KL divergence between two chunks. On the CPU by the row kernels, on
//! other devices with tensor ops where the logits are, so the logits never cross to the host.

use candle_core::{Storage, Tensor, D};
use rayon::prelude::*;

use super::error::EvalError;
use crate::model::cpu::{kl_divergence, log_softmax_stats, RowStats};

/// How many of the most likely tokens the top-k overlap compares.
pub const TOP_K: usize = 10;

/// One row of logits reduced: log-sum-exp, the most likely tokens, and the target's
/// log-probability.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub log_sum_exp: f32,
    pub top: u32,
    /// The `TOP_K` largest logits' token ids, largest first (`u32::MAX` past the vocabulary).
    pub top_k: [u32; TOP_K],
    pub target_lp: f32,
}

impl Row {
    /// How many of `self`'s top-k tokens are among `other`'s.
    pub fn top_k_shared(&self, other: &Row) -> usize {
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
pub struct Chunk {
    pub logits: Tensor,
    pub rows: Vec<Row>,
}

impl Chunk {
    pub fn new(logits: Tensor, targets: &[u32]) -> Result<Self, EvalError> {
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
    pub fn kl_to(&self, codec: &Chunk) -> Result<Vec<f32>, EvalError> {
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
}
