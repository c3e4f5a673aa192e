//! Where the evaluation text comes from: WikiText-2 built into the binary (the default), a
//! Hugging Face Hub dataset, or a local file.

pub mod builtin;
pub mod hub;
mod parquet_column;
mod wikitext;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{DataSection, LoadedExperiment, TextFormat};
use crate::digest::sha256_hex;

/// The text to evaluate on, as the experiment names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// WikiText-2 raw v1 shipped in the binary: the Hub rows joined (`wikitext`), or the raw
    /// file as llama.cpp's `llama-perplexity` reads it (`text`).
    Builtin {
        split: builtin::Split,
        format: TextFormat,
    },
    /// A split of a Hub dataset.
    Hub(hub::HubDataset),
    /// A local file (`path` already resolved).
    File { path: PathBuf, format: TextFormat },
}

/// What the text was read from, recorded with every run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    Builtin {
        dataset: String,
        split: String,
        /// sha256 of the published raw file the text was built from.
        raw_sha256: String,
    },
    Hub {
        dataset: String,
        config: Option<String>,
        split: String,
        column: String,
        /// The revision the files were taken from (`refs/convert/parquet` when the repo's own
        /// revision had no parquet files for the split).
        revision: String,
        commit: String,
        files: Vec<String>,
        join: String,
        rows: usize,
    },
    File {
        path: PathBuf,
        format: TextFormat,
    },
}

impl Origin {
    /// One line naming the text's source: a path, `builtin:…`, or the `hf://` address
    /// `datasets` uses for the first file.
    pub fn label(&self) -> String {
        match self {
            Origin::Builtin { dataset, split, .. } => format!("builtin:{dataset}/{split}"),
            Origin::Hub {
                dataset,
                commit,
                files,
                ..
            } => {
                let first = files.first().map(String::as_str).unwrap_or_default();
                let more = match files.len() {
                    0 | 1 => String::new(),
                    n => format!(" (+{} more)", n - 1),
                };
                format!("hf://datasets/{dataset}@{commit}/{first}{more}")
            }
            Origin::File { path, .. } => path.display().to_string(),
        }
    }
}

/// The evaluation text.
#[derive(Debug, Clone)]
pub struct Text {
    pub text: String,
    /// sha256 of the text's UTF-8 bytes (what run.json records and resume compares).
    pub sha256: String,
    pub origin: Origin,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("[data]: {0}")]
    Config(String),
    #[error(transparent)]
    Builtin(#[from] builtin::BuiltinError),
    #[error(transparent)]
    Hub(#[from] hub::HubError),
    #[error(transparent)]
    File(#[from] wikitext::ReadError),
}

impl DataSource {
    /// The source a `[data]` section names: `path` (a file), `dataset` (the Hub), or neither
    /// (built-in WikiText-2, split `test` or `validation`). Relative paths start at the
    /// config file's folder.
    pub fn from_experiment(exp: &LoadedExperiment) -> Result<DataSource, DataError> {
        let d: &DataSection = &exp.experiment.data;
        let hub_only = [
            ("config", d.config.is_some()),
            ("column", d.column.is_some()),
            ("revision", d.revision.is_some()),
            ("join", d.join.is_some()),
            ("files", d.files.is_some()),
            ("cache_dir", d.cache_dir.is_some()),
        ];
        match (&d.path, &d.dataset) {
            (Some(_), Some(_)) => Err(DataError::Config(
                "takes `path` (a local file) or `dataset` (a Hub dataset), not both".into(),
            )),
            (path, None) => {
                let set: Vec<&str> = hub_only
                    .iter()
                    .filter(|(_, set)| *set)
                    .map(|(name, _)| *name)
                    .collect();
                if !set.is_empty() {
                    return Err(DataError::Config(format!(
                        "`{}` applies to a Hub dataset; name one with `dataset` (e.g. dataset = \"Salesforce/wikitext\")",
                        set.join("`, `")
                    )));
                }
                Ok(match path {
                    Some(path) => DataSource::File {
                        path: exp.resolve(path),
                        format: d.format,
                    },
                    None => DataSource::Builtin {
                        split: builtin::Split::parse(&d.split)?,
                        format: d.format,
                    },
                })
            }
            (None, Some(dataset)) => {
                if dataset.trim().is_empty() {
                    return Err(DataError::Config("`dataset` is empty".into()));
                }
                let mut ds = hub::HubDataset::new(dataset, d.config.as_deref(), &d.split);
                if let Some(column) = &d.column {
                    ds.column = column.clone();
                }
                if let Some(revision) = &d.revision {
                    ds.revision = revision.clone();
                }
                if let Some(join) = &d.join {
                    ds.join = join.clone();
                }
                if let Some(files) = &d.files {
                    if files.is_empty() {
                        return Err(DataError::Config(
                            "`files` is empty; name the dataset's parquet files, or leave it out"
                                .into(),
                        ));
                    }
                    ds.files = Some(files.clone());
                }
                ds.cache_dir = d.cache_dir.as_ref().map(|c| exp.resolve(c));
                Ok(DataSource::Hub(ds))
            }
        }
    }
}

/// Reads the text of a source.
pub fn load_text(source: &DataSource) -> Result<Text, DataError> {
    let (text, origin) = match source {
        DataSource::Builtin { split, format } => (
            match format {
                TextFormat::Wikitext => builtin::text(*split)?,
                TextFormat::Text => builtin::raw(*split)?,
            },
            Origin::Builtin {
                dataset: builtin::NAME.into(),
                split: split.name().into(),
                raw_sha256: split.raw_sha256().into(),
            },
        ),
        DataSource::Hub(ds) => {
            let read = hub::load(ds)?;
            let origin = Origin::Hub {
                dataset: ds.dataset.clone(),
                config: ds.config.clone(),
                split: ds.split.clone(),
                column: ds.column.clone(),
                revision: read.revision,
                commit: read.commit,
                files: read.files,
                join: ds.join.clone(),
                rows: read.rows,
            };
            (read.text, origin)
        }
        DataSource::File { path, format } => (
            wikitext::read_text(path, *format)?,
            Origin::File {
                path: path.clone(),
                format: *format,
            },
        ),
    };
    Ok(Text {
        sha256: sha256_hex(text.as_bytes()),
        text,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(data: &str) -> Result<LoadedExperiment, crate::config::ConfigError> {
        let dir = crate::scratch::ScratchDir::new("datasrc");
        let path = dir.join("x.toml");
        // An empty `data` leaves the section out altogether.
        let section = if data.is_empty() {
            String::new()
        } else {
            format!("[data]\n{data}\n")
        };
        std::fs::write(&path, format!("[model]\npath = \"m\"\n{section}")).unwrap();
        crate::config::load(&path, &[])
    }

    fn source(data: &str) -> DataSource {
        DataSource::from_experiment(&experiment(data).unwrap()).unwrap()
    }

    #[test]
    fn no_path_and_no_dataset_is_the_builtin_text() {
        assert_eq!(
            source(""),
            DataSource::Builtin {
                split: builtin::Split::Test,
                format: TextFormat::Wikitext,
            }
        );
        assert_eq!(
            source("split = \"validation\""),
            DataSource::Builtin {
                split: builtin::Split::Validation,
                format: TextFormat::Wikitext,
            }
        );
        let text = load_text(&source("")).unwrap();
        assert_eq!(text.origin.label(), "builtin:wikitext-2-raw-v1/test");
        assert_eq!(text.sha256, sha256_hex(text.text.as_bytes()));
        // format = "text": the raw file itself, whose sha256 is the published one.
        let raw = load_text(&source("format = \"text\"")).unwrap();
        assert_eq!(raw.sha256, builtin::Split::Test.raw_sha256());
        assert_ne!(raw.sha256, text.sha256);
    }

    /// The check the issue asks for: a run with no `[data]` section gets the very token ids
    /// of `wiki.test.raw` read with `format = "wikitext"`.
    #[test]
    fn no_data_section_gives_the_token_ids_of_wiki_test_raw() {
        let shared = std::env::var_os("SPLITBENCH_WIKITEXT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../shared/data/wikitext-2-raw-v1")
            })
            .join("wiki.test.raw");
        if !shared.is_file() {
            splitbench_plugin_api::testkit::missing_input(
                "tokens of the shared wiki.test.raw",
                format!(
                    "{} not found (set SPLITBENCH_WIKITEXT_DIR)",
                    shared.display()
                ),
            );
            return;
        }
        let tokenizer = crate::model::synth::byte_tokenizer().unwrap();
        let none = experiment("").unwrap();
        let mut file = none.clone();
        file.experiment.data.path = Some(shared.clone());
        let tokens = |exp: &LoadedExperiment| {
            let source = DataSource::from_experiment(exp).unwrap();
            crate::setup::load_tokens(exp, &source, &tokenizer).unwrap()
        };
        let (a, b) = (tokens(&none), tokens(&file));
        assert!(a.ids == b.ids);
        assert_eq!(a.info.text_sha256, b.info.text_sha256);
        assert_eq!(a.info.format, b.info.format);
        assert_eq!(a.info.source, "builtin:wikitext-2-raw-v1/test");
        assert_eq!(b.info.source, shared.display().to_string());
    }

    #[test]
    fn records_written_before_the_origin_still_read() {
        let old = r#"{"source": "/data/wiki.test.raw", "format": "wikitext",
            "add_special_tokens": true, "text_sha256": "ab", "text_tokens": 3, "tokens": 3}"#;
        let info: crate::setup::DatasetInfo = serde_json::from_str(old).unwrap();
        assert_eq!(info.source, "/data/wiki.test.raw");
        assert_eq!(info.format, Some(TextFormat::Wikitext));
        assert!(info.origin.is_none());
        let origin = Origin::Builtin {
            dataset: builtin::NAME.into(),
            split: "test".into(),
            raw_sha256: builtin::Split::Test.raw_sha256().into(),
        };
        let json = serde_json::to_value(&origin).unwrap();
        assert_eq!(json["kind"], "builtin");
        assert_eq!(serde_json::from_value::<Origin>(json).unwrap(), origin);
    }

    #[test]
    fn hub_keys_become_a_hub_dataset() {
        let s = source(
            "dataset = \"Salesforce/wikitext\"\nconfig = \"wikitext-2-raw-v1\"\nsplit = \"validation\"\n\
             revision = \"v1\"\njoin = \" \"\ncache_dir = \"c\"",
        );
        let DataSource::Hub(ds) = s else {
            panic!("{s:?}")
        };
        assert_eq!(ds.config.as_deref(), Some("wikitext-2-raw-v1"));
        assert_eq!(ds.split, "validation");
        assert_eq!(ds.column, "text");
        assert_eq!(ds.revision, "v1");
        assert_eq!(ds.join, " ");
        assert!(ds.cache_dir.unwrap().ends_with("c"));
        let DataSource::Hub(ds) = source("dataset = \"ptb_text_only\"\ncolumn = \"sentence\"")
        else {
            panic!()
        };
        assert_eq!(
            (ds.column.as_str(), ds.join.as_str(), ds.revision.as_str()),
            ("sentence", "\n\n", "main")
        );
    }

    #[test]
    fn wrong_combinations_are_refused() {
        for (data, says) in [
            ("path = \"a.txt\"\ndataset = \"x/y\"", "not both"),
            (
                "config = \"wikitext-2-raw-v1\"",
                "`config` applies to a Hub dataset",
            ),
            ("split = \"train\"", "\"test\" and \"validation\""),
            ("dataset = \"x/y\"\nfiles = []", "`files` is empty"),
        ] {
            let err = DataSource::from_experiment(&experiment(data).unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{data}: {err}");
        }
    }
}
