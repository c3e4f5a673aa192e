//! One batch through the baseline and every codec, sharing the layers before the first link.

use super::error::EvalError;
use super::forward::{embed_batch, run_layers, run_rest, Links};
use super::layer_error::{LayerErrorSums, LayerReference};
use super::scoring::{
    score, score_sweep, ScoredStates, TokenComparison, WindowResult, WindowScores,
};
use super::windows::Window;
use crate::link::{LinkError, LinkTraffic};
use crate::model::Decoder;

/// A codec pass against the baseline's on one batch.
#[derive(Debug, Clone, Default)]
pub struct BatchComparison {
    /// Its scored tokens, every window's in turn.
    pub tokens: TokenComparison,
    /// The hidden state's error at each depth after the first link.
    pub layers: LayerErrorSums,
}

/// One set of codecs' pass over a batch.
pub struct Pass {
    pub scores: Vec<WindowScores>,
    pub traffic: Vec<LinkTraffic>,
    /// Against the baseline (None for the baseline itself).
    pub comparison: Option<BatchComparison>,
}

/// What became of one codec set in a sweep batch: skipped, failed at a link, or its pass.
pub type CodecOutcome = Option<Result<Pass, LinkError>>;

/// A batch through the baseline and every codec set, sharing the layers before the first
/// link. `None` skips a codec set (one that already failed); a codec set whose link fails
/// gets `Some(Err(..))` and the others go on.
pub fn sweep_batch(
    decoder: &Decoder,
    tokens: &[u32],
    windows: &[Window],
    base: &mut Links<'_>,
    codecs: &mut [Option<&mut Links<'_>>],
) -> Result<(Pass, Vec<CodecOutcome>), EvalError> {
    let (batch, h) = embed_batch(decoder, tokens, windows)?;
    let (prefix, resume) = base.prefix(decoder.num_layers());
    let shared = run_layers(decoder, &batch, h, prefix)?;
    let lengths: Vec<usize> = windows.iter().map(Window::len).collect();
    let mut base_traffic = vec![LinkTraffic::default(); base.codecs.len()];
    // The baseline's state at every depth after the first link, for the codecs' error there
    // (a few MB each).
    let mut reference = Vec::new();
    let h = run_rest(
        decoder,
        &batch,
        shared.clone(),
        resume,
        base,
        &mut base_traffic,
        &mut |_, h| {
            reference.push(LayerReference::new(h)?);
            Ok(())
        },
    )?;
    let base_states = ScoredStates::new(tokens, &batch, &h)?;
    let pass = |links: &mut Links<'_>| -> Result<(ScoredStates, Vec<LinkTraffic>, LayerErrorSums), EvalError> {
        let mut traffic = vec![LinkTraffic::default(); links.codecs.len()];
        let mut layers = LayerErrorSums {
            first_depth: resume.first_layer,
            relative_l2: Vec::with_capacity(reference.len()),
            tokens: lengths.iter().sum::<usize>() as u64,
        };
        let h = run_rest(
            decoder,
            &batch,
            shared.clone(),
            resume,
            links,
            &mut traffic,
            &mut |depth, h| {
                let r = &reference[depth - resume.first_layer];
                layers.relative_l2.push(r.relative_l2_sum(h, &lengths)?);
                Ok(())
            },
        )?;
        Ok((ScoredStates::new(tokens, &batch, &h)?, traffic, layers))
    };
    // Every codec's last hidden states first (a few MB each), then the head over all of
    // them a chunk of positions at a time.
    let mut passes = Vec::with_capacity(codecs.len());
    for links in codecs.iter_mut() {
        passes.push(match links {
            None => None,
            Some(links) => match pass(links) {
                Ok(p) => Some(Ok(p)),
                Err(EvalError::Link(e)) => Some(Err(e)),
                Err(e) => return Err(e),
            },
        });
    }
    let states: Vec<Option<&ScoredStates>> = passes
        .iter()
        .map(|p| p.as_ref().and_then(|p| p.as_ref().ok()).map(|(s, ..)| s))
        .collect();
    let (base_scores, codec_scores) = score_sweep(decoder, &base_states, &states)?;
    let outcomes = passes
        .into_iter()
        .zip(codec_scores)
        .map(|(pass, scores)| {
            pass.map(|p| {
                p.map(|(_, traffic, layers)| {
                    let (scores, tokens) = scores.unwrap_or_default();
                    Pass {
                        scores,
                        traffic,
                        comparison: Some(BatchComparison { tokens, layers }),
                    }
                })
            })
        })
        .collect();
    let base = Pass {
        scores: base_scores,
        traffic: base_traffic,
        comparison: None,
    };
    Ok((base, outcomes))
}

/// Runs one batch of windows through the split model with one codec set; returns per-window
/// NLL and the traffic of this batch at each link.
pub fn eval_batch(
    decoder: &Decoder,
    tokens: &[u32],
    windows: &[Window],
    links: &mut Links<'_>,
) -> Result<(Vec<WindowResult>, Vec<LinkTraffic>), EvalError> {
    let (batch, h) = embed_batch(decoder, tokens, windows)?;
    let mut traffic = vec![LinkTraffic::default(); links.codecs.len()];
    let (prefix, resume) = links.prefix(decoder.num_layers());
    let h = run_layers(decoder, &batch, h, prefix)?;
    let h = run_rest(
        decoder,
        &batch,
        h,
        resume,
        links,
        &mut traffic,
        &mut |_, _| Ok(()),
    )?;
    let results = score(decoder, &ScoredStates::new(tokens, &batch, &h)?)?
        .into_iter()
        .map(|w| w.result)
        .collect();
    Ok((results, traffic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::LinkCodec;
    use crate::model::synth::tiny_decoder;
    use crate::plan::Plan;

    #[test]
    fn padding_does_not_change_nll() {
        let decoder = tiny_decoder();
        let tokens: Vec<u32> = (0..40u32).map(|i| (i * 37 + 11) % 257).collect();
        // Two windows of different lengths: batched (the shorter one right-padded) and alone.
        let ws = [
            Window {
                begin: 0,
                end: 30,
                trg_len: 30,
            },
            Window {
                begin: 20,
                end: 40,
                trg_len: 10,
            },
        ];
        let plan = Plan::default_split(4, 2).unwrap();
        let codecs = || {
            plan.links
                .iter()
                .map(|_| LinkCodec::None)
                .collect::<Vec<_>>()
        };
        let mut links = Links::new(&plan, codecs());
        let (together, _) = eval_batch(&decoder, &tokens, &ws, &mut links).unwrap();
        for (i, w) in ws.iter().enumerate() {
            let mut links = Links::new(&plan, codecs());
            let (alone, _) =
                eval_batch(&decoder, &tokens, std::slice::from_ref(w), &mut links).unwrap();
            assert_eq!(alone[0].scored, together[i].scored);
            assert!(
                (alone[0].nll - together[i].nll).abs() <= 1e-5 * alone[0].nll.abs().max(1.0),
                "window {i}: alone {} together {}",
                alone[0].nll,
                together[i].nll
            );
        }
        assert_eq!(together[0].scored, 29);
        assert_eq!(together[1].scored, 10);
    }

    #[test]
    fn none_counts_elements_times_dtype_size() {
        let decoder = tiny_decoder();
        let tokens: Vec<u32> = (0..16u32).collect();
        let ws = [
            Window {
                begin: 0,
                end: 16,
                trg_len: 16,
            },
            Window {
                begin: 8,
                end: 12,
                trg_len: 4,
            },
        ];
        let plan = Plan::default_split(4, 2).unwrap();
        let mut links = Links::new(&plan, plan.links.iter().map(|_| LinkCodec::None).collect());
        let (_, traffic) = eval_batch(&decoder, &tokens, &ws, &mut links).unwrap();
        // batch 2 × padded 16 tokens × hidden 32 × 4 bytes, per link.
        for t in &traffic {
            assert_eq!(t.bytes, 2 * 16 * 32 * 4);
            assert_eq!(t.tokens_processed, 32);
            assert_eq!(t.transmissions, 1);
        }
    }
}
