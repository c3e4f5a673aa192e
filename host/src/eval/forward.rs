//! The split forward pass: a batch of windows embedded, the layers run node by node, and the
//! hidden state sent through the codec at every link.

use std::time::Instant;

use candle_core::{Device, Tensor};

use super::error::EvalError;
use super::windows::Window;
use crate::link::{LinkCodec, LinkTraffic};
use crate::model::{BatchContext, Decoder};
use crate::plan::Plan;
use crate::profile::{section, Phase};

/// The links of a plan with a codec at each; counters accumulate across batches.
pub struct Links<'a> {
    pub plan: &'a Plan,
    pub codecs: Vec<LinkCodec>,
    after_layer: Vec<Option<usize>>,
    after_embed: Option<usize>,
    /// Seconds spent crossing links since these links were made, counted from when the device
    /// has finished the work queued before each link: the codec, copies, error statistics,
    /// synchronizations and allocations there.
    pub crossing_s: f64,
}

impl<'a> Links<'a> {
    pub fn new(plan: &'a Plan, codecs: Vec<LinkCodec>) -> Self {
        Links {
            after_layer: plan.link_after_layer(),
            after_embed: plan.link_after_embed(),
            plan,
            codecs,
            crossing_s: 0.0,
        }
    }

    fn cross(
        &mut self,
        k: Option<usize>,
        h: Tensor,
        traffic: &mut [LinkTraffic],
    ) -> Result<Tensor, EvalError> {
        match k {
            Some(k) => section(Phase::Link, h.device(), || {
                let codec = &mut self.codecs[k];
                // Every codec's path waits for the device first thing; waiting here keeps the
                // layers' queued work out of the link's time.
                if !matches!(codec, LinkCodec::None) {
                    h.device().synchronize()?;
                }
                let start = Instant::now();
                let out = codec.transmit(&h, &self.plan.links[k], &mut traffic[k])?;
                self.crossing_s += start.elapsed().as_secs_f64();
                Ok(out)
            }),
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
}

/// Embeds a batch: `(batch, hidden states after the embedding)`.
pub fn embed_batch<'w>(
    decoder: &Decoder,
    tokens: &[u32],
    windows: &'w [Window],
) -> Result<(Batch<'w>, Tensor), EvalError> {
    section(Phase::Embed, decoder.device(), || {
        let (ids, lengths, t) = batch_ids(tokens, windows, decoder.device())?;
        let ctx = decoder.context(&lengths, t)?;
        let h = decoder.embed(&ids)?;
        Ok((Batch { windows, ctx }, h))
    })
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

/// Sees the hidden state at each depth a resumed pass reaches (the number of layers run, links
/// crossed).
pub type DepthObserver<'o> = dyn FnMut(usize, &Tensor) -> Result<(), EvalError> + 'o;

/// Resumes a forward pass at `resume`, crossing every link with this `links`' codecs; `observe`
/// sees the state after the first link and after every later layer.
pub fn run_rest(
    decoder: &Decoder,
    batch: &Batch<'_>,
    h: Tensor,
    resume: Resume,
    links: &mut Links<'_>,
    traffic: &mut [LinkTraffic],
    observe: &mut DepthObserver<'_>,
) -> Result<Tensor, EvalError> {
    let mut h = links.cross(resume.link, h, traffic)?;
    if resume.link.is_some() {
        observe(resume.first_layer, &h)?;
    }
    for i in resume.first_layer..decoder.num_layers() {
        h = decoder.layer(i, &h, &batch.ctx)?;
        h = links.cross(links.after_layer[i], h, traffic)?;
        observe(i + 1, &h)?;
    }
    Ok(h)
}
