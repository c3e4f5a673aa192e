//! WikiText-2 raw v1 (test and validation) shipped inside the binary, so that a run needs
//! no download and no file beside the clone. Source and licence: `host/data/wikitext-2-raw-v1/NOTICE`.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{parse_keys, to_keys, DataError, Keys, Origin, SourceKind, SourceText, TextSource};
use crate::config::TextFormat;

/// The dataset name recorded with runs that use the built-in text.
pub const NAME: &str = "wikitext-2-raw-v1";

/// `[data]` with neither `path` nor `dataset`.
pub const SOURCE: SourceKind = SourceKind {
    name: "builtin",
    named_by: None,
    what: "the built-in WikiText-2",
    parse: |keys| Ok(Box::new(parse_keys::<Builtin>(keys, SOURCE.what)?)),
};

/// WikiText-2 raw v1 shipped in the binary: the Hub rows joined (`wikitext`), or the raw file
/// as llama.cpp's `llama-perplexity` reads it (`text`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Builtin {
    #[serde(default = "Split::test")]
    pub split: Split,
    #[serde(default)]
    pub format: TextFormat,
}

/// What the built-in text was read from.
#[derive(Serialize)]
struct BuiltinOrigin<'a> {
    dataset: &'a str,
    split: &'a str,
    /// sha256 of the published raw file the text was built from.
    raw_sha256: &'a str,
}

impl TextSource for Builtin {
    fn read(&self, _base_dir: &Path) -> Result<SourceText, DataError> {
        let text = match self.format {
            TextFormat::Wikitext => text(self.split),
            TextFormat::Text => raw(self.split),
        }
        .map_err(DataError::read)?;
        let origin = BuiltinOrigin {
            dataset: NAME,
            split: self.split.name(),
            raw_sha256: self.split.raw_sha256(),
        };
        Ok(SourceText {
            text,
            origin: Origin::new(SOURCE.name, &origin)?,
            label: format!("builtin:{NAME}/{}", self.split),
        })
    }

    fn format(&self) -> Option<TextFormat> {
        Some(self.format)
    }

    fn with_split(&self, split: &str) -> Result<Box<dyn TextSource>, DataError> {
        Ok(Box::new(Builtin {
            split: Split::parse(split).map_err(DataError::read)?,
            format: self.format,
        }))
    }

    fn keys(&self) -> Result<Keys, DataError> {
        to_keys(self)
    }
}

/// A split of the built-in WikiText-2 (the train split is not shipped: 11 MB for no use here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Split {
    Test,
    Validation,
}

#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error(
        "data.split = \"{0}\": the built-in WikiText-2 has the splits \"test\" and \"validation\"; \
         for another split or dataset, name it with data.dataset (a Hub dataset) or data.path (a file)"
    )]
    UnknownSplit(String),
    /// The bytes compiled into this binary are not the published file: a broken build.
    #[error(
        "the built-in WikiText-2 {split} split is damaged (sha256 {found}, expected {expected}); \
         rebuild splitbench from a clean checkout, or set data.path to a copy of {file}"
    )]
    Corrupt {
        split: Split,
        file: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("the built-in WikiText-2 {split} split cannot be decompressed: {source}; rebuild splitbench from a clean checkout")]
    Decompress {
        split: Split,
        source: std::io::Error,
    },
}

impl TryFrom<String> for Split {
    type Error = BuiltinError;

    fn try_from(name: String) -> Result<Split, BuiltinError> {
        Split::parse(&name)
    }
}

impl From<Split> for &'static str {
    fn from(split: Split) -> &'static str {
        split.name()
    }
}

impl Split {
    fn test() -> Split {
        Split::Test
    }

    pub fn parse(name: &str) -> Result<Split, BuiltinError> {
        match name {
            "test" => Ok(Split::Test),
            "validation" => Ok(Split::Validation),
            other => Err(BuiltinError::UnknownSplit(other.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Split::Test => "test",
            Split::Validation => "validation",
        }
    }

    /// The published file this split is, its compressed bytes and that file's sha256.
    fn stored(self) -> (&'static str, &'static [u8], &'static str) {
        match self {
            Split::Test => (
                "wiki.test.raw",
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/data/wikitext-2-raw-v1/wiki.test.raw.zst"
                )),
                "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08",
            ),
            Split::Validation => (
                "wiki.valid.raw",
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/data/wikitext-2-raw-v1/wiki.valid.raw.zst"
                )),
                "4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7",
            ),
        }
    }

    /// sha256 of the published raw file (what `raw` checks).
    pub fn raw_sha256(self) -> &'static str {
        self.stored().2
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The published `wiki.<split>.raw`, decompressed and checked against its sha256.
pub fn raw(split: Split) -> Result<String, BuiltinError> {
    let (file, compressed, expected) = split.stored();
    let bytes = zstd::decode_all(compressed)
        .map_err(|source| BuiltinError::Decompress { split, source })?;
    let found = crate::digest::sha256_hex(&bytes);
    if found != expected {
        return Err(BuiltinError::Corrupt {
            split,
            file,
            expected,
            found,
        });
    }
    // The sha256 matched the published file, which is UTF-8; a failure here is the same
    // damage as a wrong digest.
    String::from_utf8(bytes).map_err(|e| BuiltinError::Corrupt {
        split,
        file,
        expected,
        found: format!("{found} but not UTF-8: {e}"),
    })
}

/// The evaluation text: the Hub dataset's rows joined with "\n\n", as the prototype built
/// it (the same as `format = "wikitext"` on the raw file).
pub fn text(split: Split) -> Result<String, BuiltinError> {
    Ok(super::wikitext::wikitext_text(&raw(split)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sha256 of `"\n\n".join(rows)` of the Hub dataset's splits, computed with Python from
    /// the published files: pins the row rule and the stored bytes together.
    const TEST_TEXT_SHA256: &str =
        "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83";
    const VALIDATION_TEXT_SHA256: &str =
        "b44fb967f92b525731216a507d1fbc44b97446b7ef0a2b4d1a893f81f1bbc29e";

    #[test]
    fn splits_decompress_to_the_published_files() {
        for (split, lines, text_sha) in [
            (Split::Test, 4358, TEST_TEXT_SHA256),
            (Split::Validation, 3760, VALIDATION_TEXT_SHA256),
        ] {
            let raw = raw(split).unwrap();
            assert_eq!(
                crate::digest::sha256_hex(raw.as_bytes()),
                split.raw_sha256()
            );
            // One row per line: the Hub split's row count.
            assert_eq!(
                crate::setup::data::wikitext::wikitext_rows(&raw).len(),
                lines
            );
            let text = text(split).unwrap();
            assert_eq!(crate::digest::sha256_hex(text.as_bytes()), text_sha);
        }
        assert!(text(Split::Test)
            .unwrap()
            .starts_with("\n\n = Robert Boulter = \n\n\n\n\n Robert Boulter is"));
    }

    #[test]
    fn same_text_as_the_shared_raw_file_read_as_wikitext() {
        // The development machines' copy of the published files (tests/cli.rs looks there too).
        let dir = std::env::var_os("SPLITBENCH_WIKITEXT_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../shared/data/wikitext-2-raw-v1")
            });
        for (split, file) in [
            (Split::Test, "wiki.test.raw"),
            (Split::Validation, "wiki.valid.raw"),
        ] {
            let path = dir.join(file);
            if !path.is_file() {
                splitbench_plugin_api::testkit::missing_input(
                    "builtin text against the shared files",
                    format!("{} not found (set SPLITBENCH_WIKITEXT_DIR)", path.display()),
                );
                return;
            }
            let from_file =
                crate::setup::data::file::read_text(&path, crate::config::TextFormat::Wikitext)
                    .unwrap();
            assert!(text(split).unwrap() == from_file, "{split} differs");
        }
    }

    #[test]
    fn split_names() {
        assert_eq!(Split::parse("test").unwrap(), Split::Test);
        assert_eq!(Split::parse("validation").unwrap(), Split::Validation);
        let err = Split::parse("train").unwrap_err().to_string();
        assert!(err.contains("\"test\" and \"validation\""), "{err}");
    }
}
