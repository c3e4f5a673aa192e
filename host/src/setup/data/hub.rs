//! Any text dataset of the Hugging Face Hub, read as the prototype's
//! `"\n\n".join(load_dataset(dataset, config, split=split)[column])` did.
//!
//! Which files make a split. The Hub serves datasets as parquet in two places:
//! - the repository itself, as `datasets`' `push_to_hub` writes it: `{config}/{split}-NNNNN-of-NNNNN.parquet`
//!   (e.g. Salesforce/wikitext's `wikitext-2-raw-v1/test-00000-of-00001.parquet`), or
//!   `data/{split}-…parquet` for a dataset with a single config;
//! - the `refs/convert/parquet` revision, which the Hub's parquet converter fills for nearly
//!   every public dataset (also those stored as JSON, CSV or a loading script):
//!   `{config}/{split}/NNNN.parquet`, config `default` when the dataset has one config, and
//!   `{config}/partial-{split}/…` when only the first part of a large split was converted.
//!
//! The repository's own files are looked for first; when the requested revision is the default
//! `main` and it holds none for the split, the converted ones are used. `data.files` names the
//! files outright for any other layout (as `load_dataset(data_files=…)` does).
//!
//! Files go through the one Hub client (`setup::hub`) into the standard Hugging Face cache, the
//! cache `datasets` ≥ 3 uses too, so a split that Python already downloaded is read from disk.
//! With the Hub unreachable (or `HF_HUB_OFFLINE=1`), the files of the cached snapshot are used.

use std::path::{Path, PathBuf};

use hf_hub::RepoType;
use serde::{Deserialize, Serialize};

use super::glob::glob_match;
use super::parquet_column::{read_column, ColumnError};
use super::{parse_keys, to_keys, DataError, Keys, Origin, SourceKind, SourceText, TextSource};
use crate::config::TextFormat;
use crate::setup::hub::{ClientError, Hub, Listing};

pub const SOURCE: SourceKind = SourceKind {
    name: "hub",
    named_by: Some("dataset"),
    what: "a Hugging Face Hub dataset",
    parse: |keys| {
        let keys = parse_keys::<HubKeys>(keys, SOURCE.what)?;
        if keys.dataset.trim().is_empty() {
            return Err(DataError::Config("`dataset` is empty".into()));
        }
        if keys.files.as_ref().is_some_and(Vec::is_empty) {
            return Err(DataError::Config(
                "`files` is empty; name the dataset's parquet files, or leave it out".into(),
            ));
        }
        Ok(Box::new(keys))
    },
};

/// `[data]` naming a Hub dataset, as written: the keys left out take [`HubDataset::new`]'s
/// defaults (and stay out of the record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubKeys {
    /// e.g. `Salesforce/wikitext`, read from its parquet files.
    pub dataset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default = "test_split")]
    pub split: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// Relative to the config file's folder; default: the standard HF cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
}

fn test_split() -> String {
    "test".into()
}

/// What a Hub dataset's text was read from.
#[derive(Serialize)]
struct HubOrigin<'a> {
    dataset: &'a str,
    config: Option<&'a str>,
    split: &'a str,
    column: &'a str,
    /// The revision the files were taken from (`refs/convert/parquet` when the repo's own
    /// revision had no parquet files for the split).
    revision: &'a str,
    commit: &'a str,
    files: &'a [String],
    join: &'a str,
    rows: usize,
}

impl HubKeys {
    pub(super) fn dataset(&self, base_dir: &Path) -> HubDataset {
        let mut ds = HubDataset::new(&self.dataset, self.config.as_deref(), &self.split);
        let or = |key: &Option<String>, default: String| key.clone().unwrap_or(default);
        ds.column = or(&self.column, ds.column);
        ds.revision = or(&self.revision, ds.revision);
        ds.join = or(&self.join, ds.join);
        ds.files = self.files.clone();
        ds.cache_dir = self.cache_dir.as_ref().map(|c| base_dir.join(c));
        ds
    }
}

impl TextSource for HubKeys {
    fn read(&self, base_dir: &Path) -> Result<SourceText, DataError> {
        let ds = self.dataset(base_dir);
        let read = load(&ds).map_err(DataError::read)?;
        let first = read.files.first().map(String::as_str).unwrap_or_default();
        let more = match read.files.len() {
            0 | 1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        let origin = HubOrigin {
            dataset: &ds.dataset,
            config: ds.config.as_deref(),
            split: &ds.split,
            column: &ds.column,
            revision: &read.revision,
            commit: &read.commit,
            files: &read.files,
            join: &ds.join,
            rows: read.rows,
        };
        Ok(SourceText {
            // The `hf://` address `datasets` uses for the first file.
            label: format!("hf://datasets/{}@{}/{first}{more}", ds.dataset, read.commit),
            origin: Origin::new(SOURCE.name, &origin)?,
            text: read.text,
        })
    }

    fn format(&self) -> Option<TextFormat> {
        None
    }

    fn with_split(&self, split: &str) -> Result<Box<dyn TextSource>, DataError> {
        Ok(Box::new(HubKeys {
            split: split.into(),
            ..self.clone()
        }))
    }

    fn keys(&self) -> Result<Keys, DataError> {
        to_keys(self)
    }
}

/// The revision the Hub's parquet converter writes to.
pub const CONVERTED_REVISION: &str = "refs/convert/parquet";

/// A split of a Hub dataset and how its rows become one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubDataset {
    /// Repo id, e.g. `Salesforce/wikitext`.
    pub dataset: String,
    /// The dataset's config (subset), e.g. `wikitext-2-raw-v1`; `None` for single-config datasets.
    pub config: Option<String>,
    pub split: String,
    /// The column holding the text.
    pub column: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Put between rows.
    pub join: String,
    /// Parquet files in the repo (glob patterns, `*`, `?` and `**`), instead of looking them
    /// up by config and split.
    pub files: Option<Vec<String>>,
    /// Instead of the standard HF cache.
    pub cache_dir: Option<PathBuf>,
}

impl HubDataset {
    /// With the defaults the prototype used: column `text`, rows joined by "\n\n", `main`.
    pub fn new(dataset: &str, config: Option<&str>, split: &str) -> HubDataset {
        HubDataset {
            dataset: dataset.to_string(),
            config: config.map(str::to_string),
            split: split.to_string(),
            column: "text".into(),
            revision: "main".into(),
            join: "\n\n".into(),
            files: None,
            cache_dir: None,
        }
    }
}

/// The text of a split and what it was read from.
#[derive(Debug, Clone)]
pub struct HubText {
    pub text: String,
    pub rows: usize,
    /// The revision the files were taken from (the requested one, or [`CONVERTED_REVISION`]).
    pub revision: String,
    /// The commit that revision pointed to.
    pub commit: String,
    /// Paths in the repo, in reading order.
    pub files: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(
        "cannot list the files of dataset `{dataset}` at revision `{revision}` on the Hub ({reason}), \
         and the HF cache `{cache}` holds no copy of them. Check data.dataset and data.revision, your \
         network or HF_ENDPOINT (a token in HF_TOKEN for gated datasets), or download the text and set data.path"
    )]
    List {
        dataset: String,
        revision: String,
        reason: String,
        cache: PathBuf,
    },
    #[error(
        "dataset `{dataset}` has no parquet files for {wanted} at revision `{revision}`{converted}. \
         Parquet files there: {found}. Set data.config and data.split to those of the dataset, or \
         name the files with data.files"
    )]
    NoFiles {
        dataset: String,
        wanted: String,
        revision: String,
        converted: String,
        found: String,
    },
    #[error("data.files names `{file}` of dataset `{dataset}`; only parquet files are read")]
    NotParquet { dataset: String, file: String },
    #[error(
        "cannot fetch `{file}` of dataset `{dataset}` at revision `{revision}` from the Hub: {reason}. \
         Check your network or HF_ENDPOINT, or download the text and set data.path"
    )]
    Fetch {
        dataset: String,
        revision: String,
        file: String,
        reason: String,
    },
    #[error(transparent)]
    Column(#[from] ColumnError),
}

/// Reads the split: finds its parquet files, fetches those not yet cached, joins the column's rows.
pub fn load(ds: &HubDataset) -> Result<HubText, HubError> {
    let hub = Hub::new(ds.cache_dir.as_deref())?;

    // The repo's own parquet files first; the Hub's conversion of the same dataset when the
    // default revision holds none for the split (or cannot be listed at all).
    let converted = || -> Option<(Listing, Found)> {
        if ds.files.is_some() || ds.revision != "main" {
            return None;
        }
        let listing = list(&hub, ds, CONVERTED_REVISION).ok()?;
        let found = select(ds, &listing.files, CONVERTED_REVISION).ok()?;
        Some((listing, found))
    };
    let own = list(&hub, ds, &ds.revision);
    let (listing, found, revision) = match own {
        Ok(listing) => {
            let found = select(ds, &listing.files, &ds.revision)?;
            let has_parquet = listing.files.iter().any(|f| is_parquet(f));
            match found.files.is_empty().then(converted).flatten() {
                // Also when neither has the split but only the conversion has parquet
                // files: those are the ones worth listing in the error.
                Some((c, f)) if !f.files.is_empty() || !has_parquet => {
                    (c, f, CONVERTED_REVISION.to_string())
                }
                _ => (listing, found, ds.revision.clone()),
            }
        }
        Err(e) => match converted() {
            Some((c, f)) => (c, f, CONVERTED_REVISION.to_string()),
            None => return Err(e),
        },
    };
    if found.files.is_empty() {
        return Err(no_files(ds, &listing.files, &revision));
    }
    if found.partial {
        eprintln!(
            "splitbench: the Hub converted only the first part of split `{}` of `{}` to parquet; \
             the text is that part",
            ds.split, ds.dataset
        );
    }

    let snapshot = hub
        .repo_cache(&ds.dataset, RepoType::Dataset)
        .join("snapshots")
        .join(&listing.commit);
    let repo = hub.repo(&ds.dataset, RepoType::Dataset, &revision);
    let mut rows: Vec<String> = Vec::new();
    for file in &found.files {
        // The snapshot of the listed commit first: `datasets` fetches files by commit and
        // may leave no ref behind that hf-hub's own cache lookup would follow.
        let cached = snapshot.join(file);
        let path = if cached.is_file() {
            cached
        } else if listing.offline {
            return Err(HubError::Fetch {
                dataset: ds.dataset.clone(),
                revision: revision.clone(),
                file: file.clone(),
                reason: "the Hub is not reachable and the file is not in the cache".into(),
            });
        } else {
            eprintln!(
                "splitbench: fetching {file} of dataset {} from the Hub",
                ds.dataset
            );
            repo.download(file).map_err(|e| HubError::Fetch {
                dataset: ds.dataset.clone(),
                revision: revision.clone(),
                file: file.clone(),
                reason: e.to_string(),
            })?
        };
        read_column(&path, &ds.column, &mut rows)?;
    }
    Ok(HubText {
        text: rows.join(&ds.join),
        rows: rows.len(),
        revision,
        commit: listing.commit,
        files: found.files,
    })
}

/// The files of the dataset at `revision`, from the Hub or the cache.
fn list(hub: &Hub, ds: &HubDataset, revision: &str) -> Result<Listing, HubError> {
    hub.list(&ds.dataset, RepoType::Dataset, revision)
        .map_err(|reason| HubError::List {
            dataset: ds.dataset.clone(),
            revision: revision.to_string(),
            reason,
            cache: hub.repo_cache(&ds.dataset, RepoType::Dataset),
        })
}

/// The files chosen for the split, and whether they are a partial conversion.
#[derive(Debug, Default, PartialEq)]
struct Found {
    files: Vec<String>,
    partial: bool,
}

fn is_parquet(path: &str) -> bool {
    path.ends_with(".parquet")
}

/// The parquet files of the split among `files`, sorted (shard order).
fn select(ds: &HubDataset, files: &[String], revision: &str) -> Result<Found, HubError> {
    if let Some(patterns) = &ds.files {
        let mut chosen: Vec<String> = files
            .iter()
            .filter(|f| patterns.iter().any(|p| glob_match(p, f)))
            .cloned()
            .collect();
        if let Some(bad) = chosen.iter().find(|f| !is_parquet(f)) {
            return Err(HubError::NotParquet {
                dataset: ds.dataset.clone(),
                file: bad.clone(),
            });
        }
        chosen.sort();
        return Ok(Found {
            files: chosen,
            partial: false,
        });
    }
    let split = ds.split.as_str();
    let prefixes: Vec<String> = match ds.config.as_deref() {
        Some("default") => vec!["default/".into(), "data/".into(), String::new()],
        Some(config) => vec![format!("{config}/")],
        None if revision == CONVERTED_REVISION => vec!["default/".into()],
        None => vec!["data/".into(), String::new()],
    };
    for prefix in prefixes {
        let mut full = Vec::new();
        let mut partial = Vec::new();
        for file in files.iter().filter(|f| is_parquet(f)) {
            let Some(rest) = file.strip_prefix(&prefix) else {
                continue;
            };
            let name = rest.strip_suffix(".parquet").unwrap_or(rest);
            let in_split = match name.split_once('/') {
                // `{split}/0000.parquet`, the converter's layout.
                Some((dir, shard)) if !shard.contains('/') => {
                    if dir == split {
                        true
                    } else if dir.strip_prefix("partial-") == Some(split) {
                        partial.push(file.clone());
                        false
                    } else {
                        false
                    }
                }
                Some(_) => false,
                // `{split}-00000-of-00001.parquet` (push_to_hub), `{split}.parquet`, and the
                // converter's older `{dataset}-{split}.parquet`.
                None => {
                    name == split
                        || name
                            .strip_prefix(split)
                            .is_some_and(|tail| tail.starts_with('-'))
                        || name
                            .strip_suffix(split)
                            .is_some_and(|head| head.ends_with('-'))
                }
            };
            if in_split {
                full.push(file.clone());
            }
        }
        let (mut chosen, partial) = if full.is_empty() {
            (partial, true)
        } else {
            (full, false)
        };
        if !chosen.is_empty() {
            chosen.sort();
            return Ok(Found {
                files: chosen,
                partial,
            });
        }
    }
    Ok(Found::default())
}

fn no_files(ds: &HubDataset, files: &[String], revision: &str) -> HubError {
    let parquet: Vec<&str> = files
        .iter()
        .filter(|f| is_parquet(f))
        .map(String::as_str)
        .collect();
    const SHOWN: usize = 12;
    let found = if parquet.is_empty() {
        "none".to_string()
    } else {
        let mut list = parquet[..parquet.len().min(SHOWN)].join(", ");
        if parquet.len() > SHOWN {
            list.push_str(&format!(" and {} more", parquet.len() - SHOWN));
        }
        list
    };
    let wanted = match (&ds.files, &ds.config) {
        (Some(patterns), _) => format!("data.files = {patterns:?}"),
        (None, Some(config)) => format!("config `{config}`, split `{}`", ds.split),
        (None, None) => format!("split `{}` (no data.config given)", ds.split),
    };
    let converted = if revision == CONVERTED_REVISION {
        " (the Hub's parquet conversion; the repo's own revision `main` had none either)"
    } else {
        ""
    };
    HubError::NoFiles {
        dataset: ds.dataset.clone(),
        wanted,
        revision: revision.to_string(),
        converted: converted.to_string(),
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(files: &[&str]) -> Vec<String> {
        files.iter().map(|f| f.to_string()).collect()
    }

    /// Salesforce/wikitext's main revision.
    const WIKITEXT: &[&str] = &[
        ".gitattributes",
        "README.md",
        "wikitext-103-raw-v1/test-00000-of-00001.parquet",
        "wikitext-103-raw-v1/train-00000-of-00002.parquet",
        "wikitext-103-raw-v1/train-00001-of-00002.parquet",
        "wikitext-2-raw-v1/test-00000-of-00001.parquet",
        "wikitext-2-raw-v1/train-00000-of-00001.parquet",
        "wikitext-2-raw-v1/validation-00000-of-00001.parquet",
        "wikitext-2-v1/test-00000-of-00001.parquet",
    ];

    #[test]
    fn config_and_split_in_the_repo() {
        let mut ds = HubDataset::new("Salesforce/wikitext", Some("wikitext-2-raw-v1"), "test");
        let f = select(&ds, &names(WIKITEXT), "main").unwrap();
        assert_eq!(f.files, ["wikitext-2-raw-v1/test-00000-of-00001.parquet"]);
        assert!(!f.partial);
        ds.config = Some("wikitext-103-raw-v1".into());
        ds.split = "train".into();
        let f = select(&ds, &names(WIKITEXT), "main").unwrap();
        assert_eq!(
            f.files,
            [
                "wikitext-103-raw-v1/train-00000-of-00002.parquet",
                "wikitext-103-raw-v1/train-00001-of-00002.parquet"
            ]
        );
        // No config: nothing at the top or in data/.
        ds.config = None;
        assert!(select(&ds, &names(WIKITEXT), "main")
            .unwrap()
            .files
            .is_empty());
        let err = no_files(&ds, &names(WIKITEXT), "main").to_string();
        assert!(
            err.contains("no data.config given") && err.contains("wikitext-2-raw-v1/test-"),
            "{err}"
        );
    }

    #[test]
    fn single_config_and_converted_layouts() {
        let ds = HubDataset::new("org/one", None, "validation");
        let repo = names(&[
            "data/train-00000-of-00001.parquet",
            "data/validation-00000-of-00002.parquet",
            "data/validation-00001-of-00002.parquet",
            "data/validation_matched-00000-of-00001.parquet",
        ]);
        assert_eq!(
            select(&ds, &repo, "main").unwrap().files,
            [
                "data/validation-00000-of-00002.parquet",
                "data/validation-00001-of-00002.parquet"
            ]
        );
        let converted = names(&[
            "default/test/0000.parquet",
            "default/validation/0001.parquet",
            "default/validation/0000.parquet",
        ]);
        let f = select(&ds, &converted, CONVERTED_REVISION).unwrap();
        assert_eq!(
            f.files,
            [
                "default/validation/0000.parquet",
                "default/validation/0001.parquet"
            ]
        );
        // A large split converted in part.
        let c4 = names(&[
            "en/partial-train/0000.parquet",
            "en/partial-validation/0000.parquet",
            "en/partial-validation/0001.parquet",
        ]);
        let ds = HubDataset::new("allenai/c4", Some("en"), "validation");
        let f = select(&ds, &c4, CONVERTED_REVISION).unwrap();
        assert!(f.partial);
        assert_eq!(f.files.len(), 2);
        // The converter's older layout.
        let old = names(&["penn_treebank/ptb_text_only-test.parquet"]);
        let ds = HubDataset::new("ptb_text_only", Some("penn_treebank"), "test");
        assert_eq!(
            select(&ds, &old, CONVERTED_REVISION).unwrap().files.len(),
            1
        );
    }

    #[test]
    fn files_by_pattern() {
        let mut ds = HubDataset::new("Salesforce/wikitext", None, "test");
        ds.files = Some(vec!["wikitext-103-raw-v1/train-*".into()]);
        assert_eq!(
            select(&ds, &names(WIKITEXT), "main").unwrap().files.len(),
            2
        );
        ds.files = Some(vec!["**/*.md".into()]);
        assert!(matches!(
            select(&ds, &names(WIKITEXT), "main"),
            Err(HubError::NotParquet { .. })
        ));
    }
}
