//! `[data]` into token ids: the text read from its source, tokenized as HF's tokenizer does,
//! cut to `first_k_tokens`, with its provenance for the record.

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::data::{DataError, DataSource, Origin};
use super::text_units::TextUnits;
use crate::config::{LoadedExperiment, TextFormat};

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("tokenizing the text failed: {0}")]
    Tokenize(String),
    #[error("the text has only {0} token{s}; a window needs at least 2 to score one. Use a longer text or a larger data.first_k_tokens", s = if *.0 == 1 { "" } else { "s" })]
    TooShort(usize),
}

/// The text's provenance, as the records keep it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// A path, `builtin:wikitext-2-raw-v1/<split>` or an `hf://datasets/…` address (a string,
    /// so records written when this was always a path still read).
    pub source: String,
    /// What the text was read from, in full; absent in older records.
    #[serde(default)]
    pub origin: Option<Origin>,
    /// The rule that turned a file into the text; absent for Hub datasets.
    pub format: Option<TextFormat>,
    pub add_special_tokens: bool,
    pub text_sha256: String,
    /// Tokens of the whole text, and after first_k_tokens.
    pub text_tokens: usize,
    pub tokens: usize,
}

/// The token stream, the text each token stands for, and its provenance.
pub struct Tokens {
    pub ids: Vec<u32>,
    pub units: TextUnits,
    pub info: DatasetInfo,
}

pub fn load_tokens(
    exp: &LoadedExperiment,
    source: &DataSource,
    tokenizer: &Tokenizer,
) -> Result<Tokens, TokensError> {
    let d = &exp.experiment.data;
    let text = source.load()?;
    let (mut ids, mut units) = tokenize(tokenizer, &text.text, d.add_special_tokens)?;
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
        units.truncate(d.first_k_tokens);
    }
    if ids.len() < 2 {
        return Err(TokensError::TooShort(ids.len()));
    }
    Ok(Tokens {
        info: DatasetInfo {
            source: text.label,
            format: source.format(),
            origin: Some(text.origin),
            add_special_tokens: d.add_special_tokens,
            text_sha256: text.sha256,
            text_tokens,
            tokens: ids.len(),
        },
        ids,
        units,
    })
}

/// Token ids of the text, as HF `tokenizer(text)` gives them, and the text each stands for.
fn tokenize(
    tokenizer: &Tokenizer,
    text: &str,
    add_special_tokens: bool,
) -> Result<(Vec<u32>, TextUnits), TokensError> {
    let encoding = tokenizer
        .encode(text, add_special_tokens)
        .map_err(|e| TokensError::Tokenize(e.to_string()))?;
    let units = TextUnits::new(text, encoding.get_offsets());
    Ok((encoding.get_ids().to_vec(), units))
}
