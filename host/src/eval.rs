//! The eval loop: windows in batches through the split model, a codec at every link, NLL of
//! the scored labels.

use candle_core::{Device, IndexOp, Tensor};
use serde::{Deserialize, Serialize};

use crate::codec_host::{LinkCodec, LinkError, LinkTraffic};
use crate::model::{BatchContext, Decoder, ModelError};
use crate::plan::Plan;
use crate::protocol::Window;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
}

/// NLL and scored labels of one window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct WindowResult {
    pub begin: usize,
    pub end: usize,
    pub nll: f64,
    pub scored: usize,
}

/// The links of a plan with a codec at each; counters accumulate across batches.
pub struct Links<'a> {
    pub plan: &'a Plan,
    pub codecs: Vec<LinkCodec>,
    after_layer: Vec<Option<usize>>,
    after_embed: Option<usize>,
}

impl<'a> Links<'a> {
    pub fn new(plan: &'a Plan, codecs: Vec<LinkCodec>) -> Self {
        Links {
            after_layer: plan.link_after_layer(),
            after_embed: plan.link_after_embed(),
            plan,
            codecs,
        }
    }

    fn cross(
        &mut self,
        k: Option<usize>,
        h: Tensor,
        traffic: &mut [LinkTraffic],
    ) -> Result<Tensor, LinkError> {
        match k {
            Some(k) => self.codecs[k].transmit(&h, &self.plan.links[k], &mut traffic[k]),
            None => Ok(h),
        }
    }
}

/// Right-padded ids `[batch, t]` and each row's real length.
fn batch_ids(
    tokens: &[u32],
    windows: &[Window],
    device: &Device,
) -> candle_core::Result<(Tensor, Vec<usize>, usize)> {
    let t = windows.iter().map(Window::len).max().unwrap_or(0);
    let mut ids = vec![0u32; windows.len() * t];
    let mut lengths = Vec::with_capacity(windows.len());
    for (row, w) in windows.iter().enumerate() {
        ids[row * t..row * t + w.len()].copy_from_slice(&tokens[w.begin..w.end]);
        lengths.push(w.len());
    }
    Ok((
        Tensor::from_vec(ids, (windows.len(), t), device)?,
        lengths,
        t,
    ))
}

/// One batch, embedded, with its shared context.
pub struct Batch<'w> {
    pub windows: &'w [Window],
    pub ctx: BatchContext,
    /// Padded length.
    pub t: usize,
}

/// Embeds a batch: `(batch, hidden states after the embedding)`.
pub fn embed_batch<'w>(
    decoder: &Decoder,
    tokens: &[u32],
    windows: &'w [Window],
) -> Result<(Batch<'w>, Tensor), EvalError> {
    let (ids, lengths, t) = batch_ids(tokens, windows, decoder.device())?;
    let ctx = decoder.context(&lengths, t)?;
    let h = decoder.embed(&ids)?;
    Ok((Batch { windows, ctx, t }, h))
}

/// Where a forward pass resumes: the link it crosses first, then the layers after it.
#[derive(Debug, Clone, Copy)]
pub struct Resume {
    /// Link crossed before the first layer of `layers` (None: no link there).
    pub link: Option<usize>,
    pub first_layer: usize,
}

impl Links<'_> {
    /// The layers that run before the first link, and where the rest resumes. Every codec of
    /// a sweep shares that prefix.
    pub fn prefix(&self, num_layers: usize) -> (std::ops::Range<usize>, Resume) {
        if let Some(k) = self.after_embed {
            return (
                0..0,
                Resume {
                    link: Some(k),
                    first_layer: 0,
                },
            );
        }
        match self.after_layer.iter().position(Option::is_some) {
            Some(i) => (
                0..i + 1,
                Resume {
                    link: self.after_layer[i],
                    first_layer: i + 1,
                },
            ),
            None => (
                0..num_layers,
                Resume {
                    link: None,
                    first_layer: num_layers,
                },
            ),
        }
    }
}

/// Runs `layers` without crossing any link (the shared prefix).
pub fn run_layers(
    decoder: &Decoder,
    batch: &Batch<'_>,
    mut h: Tensor,
    layers: std::ops::Range<usize>,
) -> Result<Tensor, EvalError> {
    for i in layers {
        h = decoder.layer(i, &h, &batch.ctx)?;
    }
    Ok(h)
}

/// Resumes a forward pass at `resume`, crossing every link with this `links`' codecs.
pub fn run_rest(
    decoder: &Decoder,
    batch: &Batch<'_>,
    h: Tensor,
    resume: Resume,
    links: &mut Links<'_>,
    traffic: &mut [LinkTraffic],
) -> Result<Tensor, EvalError> {
    let mut h = links.cross(resume.link, h, traffic)?;
    for i in resume.first_layer..decoder.num_layers() {
        h = decoder.layer(i, &h, &batch.ctx)?;
        h = links.cross(links.after_layer[i], h, traffic)?;
    }
    Ok(h)
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

/// One set of codecs' pass over a batch.
pub struct Pass {
    pub scores: Vec<WindowScores>,
    pub traffic: Vec<LinkTraffic>,
    /// Against the baseline, per window (empty for the baseline itself).
    pub comparisons: Vec<TokenComparison>,
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
    let pass =
        |links: &mut Links<'_>| -> Result<(Vec<WindowLogProbs>, Vec<LinkTraffic>), EvalError> {
            let mut traffic = vec![LinkTraffic::default(); links.codecs.len()];
            let h = run_rest(decoder, &batch, shared.clone(), resume, links, &mut traffic)?;
            Ok((head_log_probs(decoder, tokens, &batch, &h)?, traffic))
        };
    let (base_lp, base_traffic) = pass(base)?;
    let references = base_lp
        .iter()
        .map(Reference::new)
        .collect::<Result<Vec<_>, _>>()?;
    let mut outcomes = Vec::with_capacity(codecs.len());
    for links in codecs.iter_mut() {
        let Some(links) = links else {
            outcomes.push(None);
            continue;
        };
        match pass(links) {
            Ok((log_probs, traffic)) => {
                let comparisons = references
                    .iter()
                    .zip(&log_probs)
                    .map(|(b, c)| compare(b, c))
                    .collect::<Result<Vec<_>, _>>()?;
                outcomes.push(Some(Ok(Pass {
                    scores: log_probs.into_iter().map(WindowScores::from).collect(),
                    traffic,
                    comparisons,
                })));
            }
            Err(EvalError::Link(e)) => outcomes.push(Some(Err(e))),
            Err(e) => return Err(e),
        }
    }
    let base = Pass {
        scores: base_lp.into_iter().map(WindowScores::from).collect(),
        traffic: base_traffic,
        comparisons: Vec::new(),
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
    let h = run_rest(decoder, &batch, h, resume, links, &mut traffic)?;
    let results = head_log_probs(decoder, tokens, &batch, &h)?
        .into_iter()
        .map(|w| w.result)
        .collect();
    Ok((results, traffic))
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
    use super::*;
    use crate::model::load::{load_safetensors, local_files, Projections};
    use crate::synth::{write_model, SynthShape};

    fn tiny_model() -> Decoder {
        let dir = std::env::temp_dir().join(format!(
            "splitbench-eval-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let shape = SynthShape {
            family: "llama".into(),
            layers: 4,
            hidden: 32,
            intermediate: 64,
            heads: 4,
            kv_heads: 2,
            head_dim: None,
            max_positions: 256,
            tie_embeddings: false,
            seed: 9,
            vocab: 320,
            preset: None,
            rope_theta: 10000.0,
            dtype: "f32".into(),
        };
        write_model(&dir, &shape).unwrap();
        load_safetensors(
            &local_files(&dir).unwrap(),
            candle_core::DType::F32,
            &Device::Cpu,
            Projections::Dense,
        )
        .unwrap()
        .decoder
    }

    #[test]
    fn padding_does_not_change_nll() {
        let decoder = tiny_model();
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
        let decoder = tiny_model();
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
