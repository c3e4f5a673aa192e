//! The eval loop: windows in batches through the split model, a codec at every link, NLL of
//! the scored labels.

use candle_core::{Device, IndexOp, Tensor};
use serde::{Deserialize, Serialize};

use crate::codec_host::{LinkCodec, LinkError, LinkTraffic};
use crate::model::{decoder::target_log_probs, Decoder, ModelError};
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

/// What one batch contributed; the progress bar and the JSONL curve are fed from these.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub batch: usize,
    pub windows: Vec<WindowResult>,
    /// batch × padded length, as the prototype counts processed tokens.
    pub tokens_processed: u64,
    pub link_traffic: Vec<LinkTraffic>,
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

/// Runs one batch of windows through the split model; returns per-window NLL and the
/// traffic of this batch at each link.
pub fn eval_batch(
    decoder: &Decoder,
    tokens: &[u32],
    windows: &[Window],
    links: &mut Links<'_>,
) -> Result<(Vec<WindowResult>, Vec<LinkTraffic>), EvalError> {
    let device = decoder.device();
    let (ids, lengths, t) = batch_ids(tokens, windows, device)?;
    let ctx = decoder.context(&lengths, t)?;
    let mut traffic = vec![LinkTraffic::default(); links.codecs.len()];
    let mut h = decoder.embed(&ids)?;
    h = links.cross(links.after_embed, h, &mut traffic)?;
    for i in 0..decoder.num_layers() {
        h = decoder.layer(i, &h, &ctx)?;
        h = links.cross(links.after_layer[i], h, &mut traffic)?;
    }
    let mut results = Vec::with_capacity(windows.len());
    for (row, w) in windows.iter().enumerate() {
        let first = w.first_target();
        let scored = w.scored();
        let nll = if scored == 0 {
            0.0
        } else {
            // The head runs only where a label is scored: position p predicts token p + 1.
            let hs = h.i(row)?.narrow(0, first - 1, scored)?;
            let logits = decoder.head(&hs)?;
            let targets = Tensor::from_slice(&tokens[w.begin + first..w.end], scored, device)?;
            let lp = target_log_probs(&logits, &targets)?.to_dtype(candle_core::DType::F64)?;
            -lp.sum_all()?.to_scalar::<f64>()?
        };
        results.push(WindowResult {
            begin: w.begin,
            end: w.end,
            nll,
            scored,
        });
    }
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
