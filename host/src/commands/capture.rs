//! `splitbench capture`: the uncompressed hidden states entering each link of an experiment's
//! plan, for the first tokens of its text, saved as safetensors. Codec authors get real
//! activations (massive ones included) to work on, and `codec-roundtrip` takes the file as it is.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Tensor;

use crate::config::LoadedExperiment;
use crate::eval::{states_at_links, Window};
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
    let window = Window {
        begin: 0,
        end: n,
        trg_len: n,
    };
    let states = states_at_links(decoder, &ids, window, &plan)?;
    let saved: HashMap<String, Tensor> = plan
        .links
        .iter()
        .map(|l| l.name.clone())
        .zip(states)
        .collect();
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
