//! A chunk of logits on the CPU reduced row by row by the row kernels: log-sum-exp, the most
//! likely tokens, the target's log-probability, and KL divergence between two chunks. Logits
//! on other devices are reduced there (`tensor_scoring`).

use candle_core::{Storage, Tensor};
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

/// A chunk of logits `[rows, vocab]` (f32, on the CPU) and its rows reduced.
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
            None => return Err(not_on_the_cpu()),
        };
        Ok(Chunk { logits, rows })
    }

    /// KL(self ‖ other) per row.
    pub fn kl_to(&self, codec: &Chunk) -> Result<Vec<f32>, EvalError> {
        let (b, c) = (
            self.logits.storage_and_layout(),
            codec.logits.storage_and_layout(),
        );
        let (Some(b), Some(c)) = (cpu_f32(&b.0, b.1), cpu_f32(&c.0, c.1)) else {
            return Err(not_on_the_cpu());
        };
        let vocab = self.logits.dim(1)?;
        Ok(b.par_chunks(vocab)
            .zip(c.par_chunks(vocab))
            .zip(self.rows.par_iter().zip(&codec.rows))
            .map(|((b, c), (rb, rc))| kl_divergence(b, rb.log_sum_exp, c, rc.log_sum_exp))
            .collect())
    }
}

fn not_on_the_cpu() -> EvalError {
    candle_core::Error::Msg("the CPU's scoring got logits that are not f32 on the CPU".into())
        .into()
}

/// A pass's head on its states `[tokens, hidden]`: `(states, start, rows)` to the logits of
/// rows `start..start + rows`.
pub type HeadChunk<'h> = dyn Fn(&Tensor, usize, usize) -> Result<Tensor, EvalError> + 'h;

/// A codec pass's rows and its KL divergences from and to the baseline, per token.
pub struct CodecRows {
    pub rows: Vec<Row>,
    pub kld: Vec<f32>,
    pub reverse_kld: Vec<f32>,
}

/// What a batch's scoring reduces: every pass's states `[tokens, hidden]` through `head`,
/// `chunk` tokens at a time, against `targets`.
pub struct Passes<'p> {
    pub head: &'p HeadChunk<'p>,
    pub base: &'p Tensor,
    pub codecs: &'p [Option<&'p Tensor>],
    pub targets: &'p [u32],
    pub chunk: usize,
}

impl Passes<'_> {
    /// Each chunk's first token and length.
    pub fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let n = self.targets.len();
        (0..n)
            .step_by(self.chunk)
            .map(move |start| (start, self.chunk.min(n - start)))
    }
}

/// The baseline's rows, and each codec pass's rows with its divergences from the baseline.
pub type PassRows = (Vec<Row>, Vec<Option<CodecRows>>);

/// [`Passes`] reduced on the CPU by the row kernels.
pub fn score_chunks(passes: &Passes<'_>) -> Result<PassRows, EvalError> {
    let n = passes.targets.len();
    let mut base_rows = Vec::with_capacity(n);
    let mut codec_rows: Vec<Option<CodecRows>> = passes
        .codecs
        .iter()
        .map(|c| {
            c.map(|_| CodecRows {
                rows: Vec::with_capacity(n),
                kld: Vec::with_capacity(n),
                reverse_kld: Vec::with_capacity(n),
            })
        })
        .collect();
    for (start, rows) in passes.chunks() {
        let targets = &passes.targets[start..start + rows];
        let b = Chunk::new((passes.head)(passes.base, start, rows)?, targets)?;
        for (codec, acc) in passes.codecs.iter().zip(&mut codec_rows) {
            let (Some(states), Some(acc)) = (codec, acc) else {
                continue;
            };
            let c = Chunk::new((passes.head)(states, start, rows)?, targets)?;
            acc.kld.extend(b.kl_to(&c)?);
            acc.reverse_kld.extend(c.kl_to(&b)?);
            acc.rows.extend(c.rows);
        }
        base_rows.extend(b.rows);
    }
    Ok((base_rows, codec_rows))
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

#[cfg(test)]
pub(super) mod tests {
    use candle_core::Device;

    use super::*;

    /// The targets of [`hand_logits`].
    pub(in crate::eval) const HAND_TARGETS: [u32; 2] = [1, 0];

    /// Two tokens over a vocabulary of 2, as log-probabilities. Base: p = (0.5, 0.5) and
    /// (0.9, 0.1); codec: (0.25, 0.75) and (0.9, 0.1).
    pub(in crate::eval) fn hand_logits() -> (Tensor, Tensor) {
        let lp = |rows: &[[f32; 2]]| {
            let v: Vec<f32> = rows.iter().flatten().map(|p| p.ln()).collect();
            Tensor::from_vec(v, (rows.len(), 2), &Device::Cpu).unwrap()
        };
        (
            lp(&[[0.5, 0.5], [0.9, 0.1]]),
            lp(&[[0.25, 0.75], [0.9, 0.1]]),
        )
    }

    /// What a reduction of [`hand_logits`] must give: both passes' rows, KL(base ‖ codec),
    /// KL(codec ‖ base) and KL(base ‖ base).
    pub(in crate::eval) fn check_by_hand(
        (base, codec): (&[Row], &[Row]),
        kld: &[f32],
        reverse: &[f32],
        identical: &[f32],
    ) {
        // Targets: ln 0.5 and ln 0.9 in the base, ln 0.75 and ln 0.9 in the codec.
        for (row, want) in base.iter().zip([0.5f32, 0.9]) {
            assert!((row.target_lp - want.ln()).abs() < 1e-6);
            assert!(row.log_sum_exp.abs() < 1e-6);
        }
        assert!((codec[0].target_lp - 0.75f32.ln()).abs() < 1e-6);
        // KL = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3); row 1 is identical.
        assert!((kld[0] - 0.5 * (4.0f32 / 3.0).ln()).abs() < 1e-6);
        assert!(kld[1].abs() < 1e-6);
        // Top-1: row 0 base is a tie (the first wins), the codec's is 1.
        let tops: Vec<_> = base
            .iter()
            .zip(codec)
            .map(|(b, c)| (b.top, c.top))
            .collect();
        assert_eq!(tops, [(0, 1), (0, 0)]);
        // Identical predictions: KLD 0.
        assert!(identical.iter().all(|&k| k.abs() < 1e-7));
        // Reverse: 0.25 ln(0.25/0.5) + 0.75 ln(0.75/0.5) = 0.75 ln 1.5 − 0.25 ln 2.
        let want = 0.75 * 1.5f32.ln() - 0.25 * 2f32.ln();
        assert!((reverse[0] - want).abs() < 1e-6, "{}", reverse[0]);
        // A vocabulary of 2: both ids in each top-k, padding past it.
        assert_eq!(base[0].top_k[..3], [0, 1, u32::MAX]);
        assert_eq!(codec[0].top_k[..3], [1, 0, u32::MAX]);
        assert_eq!(base[0].top_k_shared(&codec[0]), TOP_K);
    }

    #[test]
    fn kld_agreement_and_target_log_probs_by_hand() {
        let (base, codec) = hand_logits();
        let base = Chunk::new(base, &HAND_TARGETS).unwrap();
        let codec = Chunk::new(codec, &HAND_TARGETS).unwrap();
        check_by_hand(
            (&base.rows, &codec.rows),
            &base.kl_to(&codec).unwrap(),
            &codec.kl_to(&base).unwrap(),
            &base.kl_to(&base).unwrap(),
        );
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
