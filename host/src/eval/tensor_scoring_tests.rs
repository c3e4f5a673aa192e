//! The tensor-op scoring against the CPU's row kernels, run on the CPU: by hand, and on
//! vocabulary-sized chunks cut into several head chunks.

use candle_core::{Device, Tensor};

use super::*;
use crate::eval::logit_rows::tests::{check_by_hand, hand_logits, HAND_TARGETS};
use crate::eval::logit_rows::Chunk;

/// The states are the logits: a head that only cuts the chunk out.
fn identity_head(states: &Tensor, start: usize, rows: usize) -> Result<Tensor, EvalError> {
    Ok(states.narrow(0, start, rows)?)
}

#[test]
fn tensor_scoring_by_hand() {
    let (base, codec) = hand_logits();
    let (base_rows, codecs) = score_chunks(&Passes {
        head: &identity_head,
        base: &base,
        codecs: &[Some(&codec), None, Some(&base)],
        targets: &HAND_TARGETS,
        chunk: 1,
    })
    .unwrap();
    let (codec, absent, same) = (&codecs[0], &codecs[1], &codecs[2]);
    let (codec, same) = (codec.as_ref().unwrap(), same.as_ref().unwrap());
    assert!(absent.is_none());
    check_by_hand(
        (&base_rows, &codec.rows),
        &codec.kld,
        &codec.reverse_kld,
        &same.kld,
    );
}

/// The same top-k ids in the same order as the row kernels, and log-sum-exp, target
/// log-probabilities and both divergences within f32 rounding, over head chunks of 3 rows.
#[test]
fn tensor_scoring_equals_the_cpu_kernels_on_large_chunks() {
    let (rows, vocab) = (7, 5003);
    let logits = |seed: u64| {
        let v: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i as u64 * 2_654_435_761 + seed) % 100_003) as f32 / 997.0 - 40.0)
            .collect();
        Tensor::from_vec(v, (rows, vocab), &Device::Cpu).unwrap()
    };
    let base = logits(0);
    // The codec's logits: the base's plus a smaller, unrelated part.
    let codec = (&base + (logits(17) * 0.05).unwrap()).unwrap();
    let targets: Vec<u32> = (0..rows as u32).map(|r| r * 611 % vocab as u32).collect();
    let (base_rows, codecs) = score_chunks(&Passes {
        head: &identity_head,
        base: &base,
        codecs: &[Some(&codec)],
        targets: &targets,
        chunk: 3,
    })
    .unwrap();
    let got = codecs[0].as_ref().unwrap();
    let b = Chunk::new(base, &targets).unwrap();
    let c = Chunk::new(codec, &targets).unwrap();
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * a.abs().max(1.0);
    for (got_rows, want_rows) in [(&base_rows, &b.rows), (&got.rows, &c.rows)] {
        for (r, (g, w)) in got_rows.iter().zip(want_rows).enumerate() {
            assert_eq!(g.top_k, w.top_k, "row {r}");
            assert_eq!(g.top, w.top, "row {r}");
            assert!(close(g.log_sum_exp, w.log_sum_exp), "row {r}");
            assert!(close(g.target_lp, w.target_lp), "row {r}");
        }
    }
    for (got, want) in [
        (&got.kld, b.kl_to(&c).unwrap()),
        (&got.reverse_kld, c.kl_to(&b).unwrap()),
    ] {
        for (r, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1e-3),
                "row {r}: {g} vs {w}"
            );
        }
    }
}
