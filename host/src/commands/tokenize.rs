//! `splitbench tokenize`: the token ids an experiment evaluates, and the text's hash.

use std::path::Path;

use anyhow::Result;

use crate::config::LoadedExperiment;
use crate::setup::load_model_and_tokens;

pub fn tokenize(exp: &LoadedExperiment, out: Option<&Path>) -> Result<()> {
    let (_, tokens) = load_model_and_tokens(exp)?;
    println!(
        "{} tokens ({} in the whole text), text sha256 {}",
        tokens.ids.len(),
        tokens.info.text_tokens,
        tokens.info.text_sha256
    );
    if let Some(out) = out {
        let json = serde_json::json!({"text_sha256": tokens.info.text_sha256, "ids": tokens.ids});
        std::fs::write(out, json.to_string())
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", out.display()))?;
    }
    Ok(())
}
