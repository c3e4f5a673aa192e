//! `[data]` into token ids: the text read, tokenized as HF's tokenizer does, cut to
//! `first_k_tokens`, with its hash for the record.

use std::path::PathBuf;

use anyhow::{bail, Result};
use tokenizers::Tokenizer;

use super::data;
use crate::config::LoadedExperiment;
use crate::digest::sha256_hex;
use crate::output::record::DatasetInfo;

/// The token stream and its provenance.
pub struct Tokens {
    pub ids: Vec<u32>,
    pub info: DatasetInfo,
}

fn data_path(exp: &LoadedExperiment) -> Result<PathBuf> {
    let d = &exp.experiment.data;
    if let Some(p) = &d.path {
        return Ok(exp.resolve(p));
    }
    match std::env::var_os("SPLITBENCH_WIKITEXT_DIR") {
        Some(dir) => Ok(PathBuf::from(dir).join(format!("wiki.{}.raw", d.split))),
        None => bail!(
            "no data file: set data.path to a wiki.{}.raw (or any text file with format = \"text\"), \
             or set SPLITBENCH_WIKITEXT_DIR to the folder holding WikiText-2's raw files",
            d.split
        ),
    }
}

pub fn load_tokens(exp: &LoadedExperiment, tokenizer: &Tokenizer) -> Result<Tokens> {
    let d = &exp.experiment.data;
    let source = data_path(exp)?;
    let text = data::read_text(&source, d.format)?;
    let mut ids = data::tokenize(tokenizer, &text, d.add_special_tokens)?;
    let text_tokens = ids.len();
    if d.first_k_tokens > 0 {
        if d.first_k_tokens > ids.len() {
            eprintln!(
                "splitbench: data.first_k_tokens = {} but the text has only {} tokens; using all of them",
                d.first_k_tokens,
                ids.len()
            );
        }
        ids.truncate(d.first_k_tokens);
    }
    if ids.len() < 2 {
        return Err(data::DataError::TooShort(ids.len()).into());
    }
    Ok(Tokens {
        info: DatasetInfo {
            source,
            format: d.format,
            add_special_tokens: d.add_special_tokens,
            text_sha256: sha256_hex(text.as_bytes()),
            text_tokens,
            tokens: ids.len(),
        },
        ids,
    })
}
