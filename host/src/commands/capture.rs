//! `splitbench capture`: the uncompressed hidden states entering each link of an experiment's
//! plan, for the first tokens of its text, saved as safetensors. Codec authors get real
//! activations (massive ones included) to work on, and `codec-roundtrip` takes the file as it is.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Tensor;

use crate::config::LoadedExperiment;
use crate::eval::{embed_batch, run_layers, Window};
use crate::plan::Plan;
use crate::setup::load_model_and_tokens;

pub fn capture(exp: &LoadedExperiment, out: &Path, first_tokens: usize) -> Result<()> {
    anyhow::ensure!(first_tokens >= 1, "--tokens must be at least 1");
    let (model, tokens) = load_model_and_tokens(exp)?;
    let decoder = &model.decoder;
    let plan = Plan::from_section(&exp.experiment.plan, decoder.num_layers())?;
    let ids = tokens.ids;
    // One window from the text's start, as the first window of a run sees it.
    let n = first_tokens
        .min(ids.len())
        .min(exp.experiment.eval.max_length);
    let window = [Window {
        begin: 0,
        end: n,
        trg_len: n,
    }];
    let (batch, mut h) = embed_batch(decoder, &ids, &window)?;
    let mut saved: HashMap<String, Tensor> = HashMap::new();
    if let Some(k) = plan.link_after_embed() {
        saved.insert(plan.links[k].name.clone(), h.clone());
    }
    let after_layer = plan.link_after_layer();
    // The layers after the last link are not needed.
    let last = after_layer
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |i| i + 1);
    for (i, link) in after_layer.iter().enumerate().take(last) {
        h = run_layers(decoder, &batch, h, i..i + 1)?;
        if let Some(k) = link {
            saved.insert(plan.links[*k].name.clone(), h.clone());
        }
    }
    anyhow::ensure!(
        !saved.is_empty(),
        "the plan has no links, so no hidden state crosses one; set plan.nodes or plan.split_after"
    );
    candle_core::safetensors::save(&saved, out)
        .with_context(|| format!("cannot write `{}`", out.display()))?;
    let mut names: Vec<&String> = saved.keys().collect();
    names.sort_by_key(|name| plan.links.iter().position(|l| &l.name == *name));
    for name in names {
        println!("{name}: {:?} {:?}", saved[name].dims(), saved[name].dtype());
    }
    println!("{n} tokens → {}", out.display());
    Ok(())
}
