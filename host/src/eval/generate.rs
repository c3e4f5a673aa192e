//! The decode phase: prompts prefilled through the split model, then one token at a time,
//! each step's hidden state `[prompts, 1, hidden]` crossing every link alone, with a KV cache
//! per layer (so per node) that the codec's errors enter.

use std::rc::Rc;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::error::EvalError;
use super::forward::{run_layers, run_rest, Batch, Links};
use crate::link::LinkTraffic;
use crate::model::{Decoder, KvCache};

/// One link's wire bytes per token in each phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerationLink {
    pub name: String,
    /// Per prompt token crossing during the prefill.
    pub prefill_bytes_per_token: f64,
    /// Per generated token's state crossing alone.
    pub decode_bytes_per_token: f64,
}

/// A codec's decode phase against the uncompressed model's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerationRecord {
    pub prompts: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// The generated ids per prompt, the codec on every link at every step.
    pub continuations: Vec<Vec<u32>>,
    /// Fraction of generated positions equal to the uncompressed continuation's.
    pub match_rate: f64,
    /// Mean index of the first token that differs from the uncompressed continuation
    /// (`new_tokens` when none does).
    pub first_divergence_mean: f64,
    /// Fed the uncompressed continuation (teacher forcing): KL(uncompressed ‖ codec) of the
    /// next-token distributions, mean and by generated position.
    pub kld_forced_mean: f64,
    pub kld_forced_by_position: Vec<f64>,
    /// Teacher-forced: how often the codec's top token is the uncompressed model's.
    pub top1_forced: f64,
    /// The uncompressed model's mean NLL of this continuation (is the text still fluent).
    pub baseline_nll: f64,
    pub links: Vec<GenerationLink>,
    pub prefill_bytes_per_token: f64,
    pub decode_bytes_per_token: f64,
    /// Measured compute of one decode step of all prompts (ms), and of the prefill.
    pub compute_ms_per_step: f64,
    pub prefill_compute_ms: f64,
    /// Under the link profile, per prompt: time to first token and per output token (the
    /// measured compute, plus at every link its latency, its bytes at the bandwidth and the
    /// codec's measured encode and decode time).
    pub ttft_ms: f64,
    pub tpot_ms: f64,
}

/// What is fed after each step.
#[derive(Clone, Copy)]
pub enum Feed<'a> {
    /// The step's own greedy pick.
    Greedy,
    /// These tokens, one per prompt and step (teacher forcing).
    Forced(&'a [Vec<u32>]),
}

/// The links a generation crosses, and where their traffic is counted: the prompt's pass
/// (prefill) and the single-token passes (decode) apart.
pub struct GenerationLinks<'l, 'p> {
    pub links: &'l mut Links<'p>,
    pub prefill: &'l mut [LinkTraffic],
    pub decode: &'l mut [LinkTraffic],
}

/// The index of the largest value, ties to the lowest index (as `torch.argmax`).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}

/// `new` tokens after each of `prompts` (equal lengths): returns each step's greedy pick per
/// prompt; `observe` sees each step's logits `[prompts][vocab]` (f32, on the host). Without
/// `links`, the uncompressed model.
pub fn generate(
    decoder: &Decoder,
    prompts: &[Vec<u32>],
    new: usize,
    feed: Feed<'_>,
    mut links: Option<GenerationLinks<'_, '_>>,
    observe: &mut dyn FnMut(usize, &[Vec<f32>]),
) -> Result<Vec<Vec<u32>>, EvalError> {
    let rows = prompts.len();
    let cache = Rc::new(KvCache::new(prompts.first().map_or(0, Vec::len) + new));
    let mut input: Vec<u32> = prompts.concat();
    let mut picks = vec![Vec::with_capacity(new); rows];
    for step in 0..new {
        let t = input.len() / rows.max(1);
        let ids = Tensor::from_vec(std::mem::take(&mut input), (rows, t), decoder.device())?;
        let batch = Batch {
            windows: &[],
            ctx: decoder.cached_context(&cache, rows, t)?,
        };
        let h = decoder.embed(&ids)?;
        let h = match &mut links {
            None => run_layers(decoder, &batch, h, 0..decoder.num_layers())?,
            Some(l) => {
                let (prefix, resume) = l.links.prefix(decoder.num_layers());
                let h = run_layers(decoder, &batch, h, prefix)?;
                let traffic = if step == 0 {
                    &mut *l.prefill
                } else {
                    &mut *l.decode
                };
                run_rest(decoder, &batch, h, resume, l.links, traffic, &mut |_, _| {
                    Ok(())
                })?
            }
        };
        let logits = decoder
            .head(&h.narrow(1, t - 1, 1)?.contiguous()?)?
            .squeeze(1)?;
        let logits: Vec<Vec<f32>> = logits.to_vec2()?;
        observe(step, &logits);
        for (row, l) in logits.iter().enumerate() {
            let pick = argmax(l);
            picks[row].push(pick);
            input.push(match feed {
                Feed::Greedy => pick,
                Feed::Forced(tokens) => tokens[row][step],
            });
        }
    }
    Ok(picks)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use candle_core::{DType, Device};

    use super::*;
    use crate::model::load::{load_safetensors, ModelFiles, Projections};

    fn fixture(case: &str) -> Decoder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/families")
            .join(case);
        let files = ModelFiles {
            config: dir.join("config.json"),
            tokenizer: dir.join("config.json"),
            weights: vec![dir.join("model.safetensors")],
        };
        load_safetensors(&files, DType::F32, &Device::Cpu, Projections::Dense)
            .unwrap()
            .decoder
    }

    #[derive(serde::Deserialize)]
    struct Run {
        prompt: Vec<u32>,
        new_ids: Vec<u32>,
    }

    #[derive(serde::Deserialize)]
    struct HfGenerate {
        runs: Vec<Run>,
        step_logits: Vec<Vec<f32>>,
    }

    #[test]
    fn argmax_ties_to_the_lowest_index() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[2.0]), 0);
    }

    /// The uncompressed greedy continuation is Hugging Face `generate`'s (greedy, KV cache),
    /// the prompts batched together here and one at a time there.
    #[test]
    fn greedy_generation_equals_transformers_generate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/families");
        let text = std::fs::read_to_string(dir.join("llama-generate/generate.json")).unwrap();
        let hf: HfGenerate = serde_json::from_str(&text).unwrap();
        let decoder = fixture("llama-generate");
        let prompts: Vec<Vec<u32>> = hf.runs.iter().map(|r| r.prompt.clone()).collect();
        let mut first_prompt_logits = Vec::new();
        let ours = generate(&decoder, &prompts, 16, Feed::Greedy, None, &mut |_, l| {
            first_prompt_logits.push(l[0].clone())
        })
        .unwrap();
        for (run, ours) in hf.runs.iter().zip(&ours) {
            assert_eq!(ours, &run.new_ids, "prompt {:?}", run.prompt);
        }
        let worst = first_prompt_logits
            .iter()
            .flatten()
            .zip(hf.step_logits.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "step logits differ by up to {worst}");
    }

    /// With the cache, each step's logits are the whole sequence's forward pass's at that
    /// position: windows, soft-capping, local and global rotary bases, experts, post-norms.
    #[test]
    fn cached_steps_equal_the_full_forward_pass() {
        let row: Vec<u32> = vec![
            17, 94, 3, 121, 58, 40, 7, 88, 112, 25, 66, 1, 99, 73, 30, 127,
        ];
        for case in ["gemma2", "gemma3", "olmo2", "mixtral", "qwen3moe", "phi3"] {
            let decoder = fixture(case);
            let ids = Tensor::new(row.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let full: Vec<Vec<f32>> = decoder
                .forward(&ids, &[row.len()])
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec2()
                .unwrap();
            let (prompt, rest) = row.split_at(5);
            let forced = vec![rest.to_vec()];
            let mut worst = 0f32;
            generate(
                &decoder,
                &[prompt.to_vec()],
                rest.len(),
                Feed::Forced(&forced),
                None,
                &mut |step, l| {
                    for (a, b) in l[0].iter().zip(&full[prompt.len() - 1 + step]) {
                        worst = worst.max((a - b).abs());
                    }
                },
            )
            .unwrap();
            assert!(
                worst < 1e-4,
                "{case}: cached steps differ from the full pass by {worst}"
            );
        }
    }
}
