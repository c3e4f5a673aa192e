//! Where the evaluation text comes from. Each source is a module implementing [`TextSource`]
//! (its keys in `[data]`, reading its text, its origin) and a line in [`SOURCES`]: WikiText-2
//! built into the binary (the default), a Hugging Face Hub dataset, a local file.

pub mod builtin;
mod file;
mod glob;
pub mod hub;
mod parquet_column;
mod wikitext;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::config::{DataSection, LoadedExperiment, TextFormat};
use crate::digest::sha256_hex;

/// A source's keys in `[data]`, or its fields in a record: JSON values by name, in order.
pub type Keys = serde_json::Map<String, serde_json::Value>;

/// Every data source. Without a `source` key, the one whose `named_by` key `[data]` has is
/// meant (the layout before sources were named), and with none the first without one.
const SOURCES: &[SourceKind] = &[builtin::SOURCE, hub::SOURCE, file::SOURCE];

/// A data source as `[data]` names it.
pub struct SourceKind {
    /// Its `source` tag.
    pub name: &'static str,
    /// The key that names it when `source` is not given; `None` for the default source.
    pub named_by: Option<&'static str>,
    /// What it is, for messages.
    pub what: &'static str,
    /// Its keys (without `source`) into the source, checked.
    pub parse: fn(Keys) -> Result<Box<dyn TextSource>, DataError>,
}

/// A place the evaluation text can come from, holding its keys as `[data]` wrote them.
pub trait TextSource: fmt::Debug {
    /// Reads the text; relative paths start at `base_dir` (the config file's folder).
    fn read(&self, base_dir: &Path) -> Result<SourceText, DataError>;
    /// The rule that turned a file into the text; `None` where there was none (rows of a table).
    fn format(&self) -> Option<TextFormat>;
    /// The same source with another split (calibration on `validation` when evaluating on
    /// `test`), or [`DataError::NoSplits`].
    fn with_split(&self, split: &str) -> Result<Box<dyn TextSource>, DataError>;
    /// Its keys, defaults filled in, as records keep them.
    fn keys(&self) -> Result<Keys, DataError>;
}

/// What a source read.
pub struct SourceText {
    pub text: String,
    pub origin: Origin,
    /// One line naming it: a path, `builtin:…`, an `hf://` address.
    pub label: String,
}

/// What the text was read from, recorded with every run: the source's name and its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub kind: String,
    #[serde(flatten)]
    pub fields: Keys,
}

impl Origin {
    pub fn new(kind: &str, fields: &impl Serialize) -> Result<Origin, DataError> {
        Ok(Origin {
            kind: kind.into(),
            fields: to_keys(fields)?,
        })
    }
}

/// The evaluation text.
#[derive(Debug, Clone)]
pub struct Text {
    pub text: String,
    /// sha256 of the text's UTF-8 bytes (what run.json records and resume compares).
    pub sha256: String,
    pub origin: Origin,
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("[data]: {0}")]
    Config(String),
    /// A source's own error (each source has its typed one).
    #[error(transparent)]
    Read(Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "{what} has no splits to take another from; calibration needs its own source: name \
         it explicitly (a file with `path`, or a dataset and its split)"
    )]
    NoSplits { what: String },
    #[error("cannot record the data source: {0}")]
    Record(#[from] serde_json::Error),
}

impl DataError {
    pub fn read(error: impl std::error::Error + Send + Sync + 'static) -> DataError {
        DataError::Read(Box::new(error))
    }
}

/// A value's fields as keys (a record's layout).
fn to_keys(value: &impl Serialize) -> Result<Keys, DataError> {
    match serde_json::to_value(value)? {
        serde_json::Value::Object(keys) => Ok(keys),
        other => Err(DataError::Config(format!("{other} is not a table of keys"))),
    }
}

/// A source's keys read into its type; an unknown key is refused naming the other sources.
fn parse_keys<T: DeserializeOwned>(keys: Keys, what: &str) -> Result<T, DataError> {
    T::deserialize(serde_json::Value::Object(keys)).map_err(|e| {
        let e = e.to_string();
        if !e.starts_with("unknown field") {
            return DataError::Config(format!("{what}: {e}"));
        }
        let others: Vec<String> = SOURCES
            .iter()
            .filter(|s| s.what != what)
            .filter_map(|s| Some(format!("`{}` ({})", s.named_by?, s.what)))
            .collect();
        DataError::Config(format!(
            "{e} for {what}; another source is named by {}, or by `source`",
            others.join(" or ")
        ))
    })
}

/// The text to evaluate on, as the experiment names it.
#[derive(Debug)]
pub struct DataSource {
    kind: &'static SourceKind,
    /// Whether `[data]` named the source with `source` (kept in the record when it did).
    tagged: bool,
    source: Box<dyn TextSource>,
    base_dir: PathBuf,
}

impl fmt::Debug for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl DataSource {
    /// The source of an experiment's `[data]`. Relative paths start at the config file's folder.
    pub fn from_experiment(exp: &LoadedExperiment) -> Result<DataSource, DataError> {
        DataSource::from_section(&exp.experiment.data, &exp.base_dir)
    }

    pub fn from_section(data: &DataSection, base_dir: &Path) -> Result<DataSource, DataError> {
        let mut keys = data.source.written.clone();
        let tag = keys.remove("source");
        let kind = match &tag {
            Some(tag) => SOURCES
                .iter()
                .find(|s| tag.as_str() == Some(s.name))
                .ok_or_else(|| {
                    let names: Vec<&str> = SOURCES.iter().map(|s| s.name).collect();
                    DataError::Config(format!(
                        "source = {tag} is not a data source; the sources are {}",
                        names.join(", ")
                    ))
                })?,
            None => {
                let named: Vec<&SourceKind> = SOURCES
                    .iter()
                    .filter(|s| s.named_by.is_some_and(|key| keys.contains_key(key)))
                    .collect();
                match named.as_slice() {
                    [] => SOURCES
                        .iter()
                        .find(|s| s.named_by.is_none())
                        .ok_or_else(|| {
                            DataError::Config("name the text's source with `source`".into())
                        })?,
                    [one] => *one,
                    several => {
                        let keys: Vec<String> = several
                            .iter()
                            .filter_map(|s| Some(format!("`{}` ({})", s.named_by?, s.what)))
                            .collect();
                        return Err(DataError::Config(format!(
                            "{} name different sources; keep one, not both",
                            keys.join(" and ")
                        )));
                    }
                }
            }
        };
        Ok(DataSource {
            kind,
            tagged: tag.is_some(),
            source: (kind.parse)(keys)?,
            base_dir: base_dir.to_path_buf(),
        })
    }

    /// Reads the text.
    pub fn load(&self) -> Result<Text, DataError> {
        let read = self.source.read(&self.base_dir)?;
        Ok(Text {
            sha256: sha256_hex(read.text.as_bytes()),
            text: read.text,
            origin: read.origin,
            label: read.label,
        })
    }

    pub fn format(&self) -> Option<TextFormat> {
        self.source.format()
    }

    /// The same source with another split.
    pub fn with_split(&self, split: &str) -> Result<DataSource, DataError> {
        Ok(DataSource {
            source: self.source.with_split(split)?,
            base_dir: self.base_dir.clone(),
            ..*self
        })
    }

    /// The keys as records keep them: the layout `[data]` had when it was one flat section
    /// (`path`, `split`, the source's other keys, `format`), so that the config an existing
    /// experiment records, and `resume` compares, stays the same byte for byte.
    pub fn recorded_keys(&self) -> Result<Keys, DataError> {
        let mut keys = self.source.keys()?;
        let mut recorded = Keys::new();
        if self.tagged {
            recorded.insert("source".into(), self.kind.name.into());
        }
        let path = keys.remove("path").unwrap_or_default();
        recorded.insert("path".into(), path);
        let split = keys.remove("split").unwrap_or_else(|| "test".into());
        recorded.insert("split".into(), split);
        let format = keys.remove("format").unwrap_or_else(|| "wikitext".into());
        recorded.extend(keys);
        recorded.insert("format".into(), format);
        Ok(recorded)
    }
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

    /// The `[data]` a record keeps for `data`, as JSON.
    fn recorded(data: &str) -> String {
        serde_json::to_string(&source(data).recorded_keys().unwrap()).unwrap()
    }

    #[test]
    fn records_keep_the_layout_of_the_flat_section() {
        // What records held when `[data]` was one struct: `path` null when unset, `split` and
        // `format` always, the Hub keys only when set and in this order.
        for (data, record) in [
            ("", r#"{"path":null,"split":"test","format":"wikitext"}"#),
            (
                "format = \"text\"\nsplit = \"validation\"",
                r#"{"path":null,"split":"validation","format":"text"}"#,
            ),
            (
                "path = \"a.txt\"",
                r#"{"path":"a.txt","split":"test","format":"wikitext"}"#,
            ),
            (
                "cache_dir = \"c\"\nconfig = \"wikitext-2-raw-v1\"\ndataset = \"Salesforce/wikitext\"",
                r#"{"path":null,"split":"test","dataset":"Salesforce/wikitext","config":"wikitext-2-raw-v1","cache_dir":"c","format":"wikitext"}"#,
            ),
            // Named with `source`, which a record then keeps.
            (
                "source = \"builtin\"",
                r#"{"source":"builtin","path":null,"split":"test","format":"wikitext"}"#,
            ),
        ] {
            assert_eq!(recorded(data), record, "{data}");
        }
        // The experiment serializes to them once they are set, and is read as written still.
        let mut exp = experiment("path = \"a.txt\"").unwrap();
        let data = &mut exp.experiment.data;
        data.source.recorded = Some(source("path = \"a.txt\"").recorded_keys().unwrap());
        let json = serde_json::to_string(&data).unwrap();
        assert_eq!(
            json,
            r#"{"path":"a.txt","split":"test","format":"wikitext","add_special_tokens":true,"first_k_tokens":0}"#
        );
        let toml = toml::to_string(&exp.experiment).unwrap();
        assert!(
            toml.contains("[data]\npath = \"a.txt\"\nsplit = \"test\""),
            "{toml}"
        );
        assert!(DataSource::from_experiment(&exp).is_ok());
    }

    #[test]
    fn no_path_and_no_dataset_is_the_builtin_text() {
        let text = source("").load().unwrap();
        assert_eq!(text.label, "builtin:wikitext-2-raw-v1/test");
        assert_eq!(text.sha256, sha256_hex(text.text.as_bytes()));
        let json = serde_json::to_value(&text.origin).unwrap();
        assert_eq!(json["kind"], "builtin");
        assert_eq!(json["split"], "test");
        assert_eq!(json["raw_sha256"], builtin::Split::Test.raw_sha256());
        // format = "text": the raw file itself, whose sha256 is the published one.
        let raw = source("format = \"text\"").load().unwrap();
        assert_eq!(raw.sha256, builtin::Split::Test.raw_sha256());
        assert_ne!(raw.sha256, text.sha256);
    }

    /// What calibration asks of the evaluation source: the same source on another split, a
    /// typed refusal where there are none; the same text read twice has one sha256.
    #[test]
    fn another_split_of_the_same_source() {
        let test = source("");
        let validation = test.with_split("validation").unwrap();
        let (a, b) = (test.load().unwrap(), validation.load().unwrap());
        assert_eq!(b.label, "builtin:wikitext-2-raw-v1/validation");
        assert_ne!(a.sha256, b.sha256);
        assert_eq!(a.sha256, source("split = \"test\"").load().unwrap().sha256);
        assert!(matches!(test.with_split("train"), Err(DataError::Read(_))));
        let hub = source("dataset = \"x/y\"\nconfig = \"c\"").with_split("validation");
        assert_eq!(
            serde_json::to_string(&hub.unwrap().recorded_keys().unwrap()).unwrap(),
            r#"{"path":null,"split":"validation","dataset":"x/y","config":"c","format":"wikitext"}"#
        );
        let err = source("path = \"a.txt\"")
            .with_split("validation")
            .unwrap_err();
        assert!(matches!(err, DataError::NoSplits { .. }));
        assert!(err.to_string().contains("`a.txt` has no splits"), "{err}");
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
        file.experiment
            .data
            .source
            .written
            .insert("path".into(), shared.display().to_string().into());
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
        // An origin as records keep it: `kind` first, then the source's fields.
        let json = r#"{"kind":"hub","dataset":"x/y","config":null,"split":"test","column":"text","revision":"main","commit":"c","files":["a.parquet"],"join":"\n\n","rows":2}"#;
        let origin: Origin = serde_json::from_str(json).unwrap();
        assert_eq!(origin.kind, "hub");
        assert_eq!(serde_json::to_string(&origin).unwrap(), json);
    }

    #[test]
    fn hub_keys_become_a_hub_dataset() {
        let keys = |data: &str| -> hub::HubKeys {
            let keys = source(data).source.keys().unwrap();
            serde_json::from_value(serde_json::Value::Object(keys)).unwrap()
        };
        let ds = keys(
            "dataset = \"Salesforce/wikitext\"\nconfig = \"wikitext-2-raw-v1\"\nsplit = \"validation\"\n\
             revision = \"v1\"\njoin = \" \"\ncache_dir = \"c\"",
        )
        .dataset(Path::new("/base"));
        assert_eq!(ds.config.as_deref(), Some("wikitext-2-raw-v1"));
        assert_eq!(ds.split, "validation");
        assert_eq!(ds.column, "text");
        assert_eq!(ds.revision, "v1");
        assert_eq!(ds.join, " ");
        assert_eq!(ds.cache_dir.unwrap(), Path::new("/base/c"));
        let ds = keys("dataset = \"ptb_text_only\"\ncolumn = \"sentence\"").dataset(Path::new("."));
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
                "unknown field `config`, expected `split` or `format` for the built-in WikiText-2; \
                 another source is named by `dataset`",
            ),
            ("split = \"train\"", "\"test\" and \"validation\""),
            ("dataset = \"x/y\"\nfiles = []", "`files` is empty"),
            ("dataset = \" \"", "`dataset` is empty"),
            ("path = \"a.txt\"\nsplit = \"test\"", "unknown field `split`"),
            ("source = \"ftp\"", "the sources are builtin, hub, file"),
            ("source = \"file\"", "missing field `path`"),
        ] {
            let err = DataSource::from_experiment(&experiment(data).unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{data}: {err}");
        }
    }
}
