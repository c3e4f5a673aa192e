//! A local text file: `[data] path = "…"`, read as WikiText-2's raw files are (`wikitext`) or
//! as it is (`text`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::wikitext::wikitext_text;
use super::{parse_keys, to_keys, DataError, Keys, Origin, SourceKind, SourceText, TextSource};
use crate::config::TextFormat;

pub const SOURCE: SourceKind = SourceKind {
    name: "file",
    named_by: Some("path"),
    what: "a local file",
    parse: |keys| Ok(Box::new(parse_keys::<File>(keys, SOURCE.what)?)),
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// As written; relative to the config file's folder.
    pub path: PathBuf,
    #[serde(default)]
    pub format: TextFormat,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read data file `{path}`: {source}. Check data.path (relative paths are resolved from the config file's folder)")]
pub struct ReadError {
    path: PathBuf,
    source: std::io::Error,
}

impl TextSource for File {
    fn read(&self, base_dir: &Path) -> Result<SourceText, DataError> {
        let path = base_dir.join(&self.path);
        Ok(SourceText {
            text: read_text(&path, self.format).map_err(DataError::read)?,
            label: path.display().to_string(),
            origin: Origin::new(
                SOURCE.name,
                &File {
                    path,
                    format: self.format,
                },
            )?,
        })
    }

    fn format(&self) -> Option<TextFormat> {
        Some(self.format)
    }

    fn with_split(&self, _split: &str) -> Result<Box<dyn TextSource>, DataError> {
        Err(DataError::NoSplits {
            what: format!("the local file `{}`", self.path.display()),
        })
    }

    fn keys(&self) -> Result<Keys, DataError> {
        to_keys(self)
    }
}

pub fn read_text(path: &Path, format: TextFormat) -> Result<String, ReadError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ReadError {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(match format {
        TextFormat::Wikitext => wikitext_text(&raw),
        TextFormat::Text => raw,
    })
}
