//! Experiment TOML: what to run, read strictly (unknown keys and wrong types are errors that
//! name the file, the line and what was expected).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::TextFormat;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read experiment file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("in `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("--set {assignment}: {message}")]
    Override { assignment: String, message: String },
    #[error("in `{path}`: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub model: ModelSection,
    #[serde(default)]
    pub data: DataSection,
    #[serde(default)]
    pub eval: EvalSection,
    #[serde(default)]
    pub plan: PlanSection,
    #[serde(default = "default_codecs")]
    pub codec: Vec<CodecSpec>,
    #[serde(default)]
    pub output: OutputSection,
    #[serde(default)]
    pub links: LinksSection,
}

/// What a link between nodes is modelled as, for the wire-time estimates.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinksSection {
    /// A named profile: `datacenter` (1 Gbit/s, 5 ms) or `broadband` (100 Mbit/s, 30 ms).
    pub profile: Option<String>,
    /// Overrides the profile's bandwidth, Mbit/s.
    pub bandwidth_mbps: Option<f64>,
    /// Overrides the profile's one-way latency, ms.
    pub latency_ms: Option<f64>,
}

/// A link model: bandwidth and latency.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkModel {
    pub profile: String,
    pub bandwidth_mbps: f64,
    pub latency_ms: f64,
}

pub const LINK_PROFILES: [(&str, f64, f64, &str); 2] = [
    (
        "datacenter",
        1000.0,
        5.0,
        "nodes in one datacenter: 1 Gbit/s, 5 ms",
    ),
    (
        "broadband",
        100.0,
        30.0,
        "volunteer nodes on home broadband: 100 Mbit/s, 30 ms",
    ),
];

impl LinksSection {
    pub fn model(&self) -> Result<LinkModel, String> {
        let name = self.profile.clone().unwrap_or_else(|| "datacenter".into());
        let (_, bw, lat, _) = LINK_PROFILES.iter().find(|p| p.0 == name).ok_or_else(|| {
            format!(
                "unknown links.profile `{name}`; known: {}",
                LINK_PROFILES
                    .iter()
                    .map(|p| p.0)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let model = LinkModel {
            profile: name,
            bandwidth_mbps: self.bandwidth_mbps.unwrap_or(*bw),
            latency_ms: self.latency_ms.unwrap_or(*lat),
        };
        if !(model.bandwidth_mbps > 0.0 && model.latency_ms >= 0.0) {
            return Err("links.bandwidth_mbps must be > 0 and links.latency_ms ≥ 0".into());
        }
        Ok(model)
    }
}

fn default_codecs() -> Vec<CodecSpec> {
    vec![CodecSpec::none()]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A local folder with config.json, tokenizer.json and safetensors.
    pub path: Option<PathBuf>,
    /// A Hub repo id, fetched through hf-hub.
    pub id: Option<String>,
    /// A GGUF file: a local path, or with `id` the file's name in that Hub repo.
    pub gguf: Option<PathBuf>,
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Defaults to the standard HF cache (HF_HOME), so models already downloaded are reused.
    pub cache_dir: Option<PathBuf>,
    #[serde(default = "default_dtype")]
    pub dtype: String,
    #[serde(default = "default_device")]
    pub device: String,
    /// Safetensors: `dense` (default) keeps the checkpoint's matrices; `q8_0`, `q4_0`, `q4k`,
    /// `q6k` quantize them at load. GGUF: `native` (default) keeps them quantized,
    /// `dequantize` turns them into `dtype`.
    pub weights: Option<String>,
}

fn default_revision() -> String {
    "main".into()
}
fn default_dtype() -> String {
    "f32".into()
}
fn default_device() -> String {
    "cpu".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A `wiki.*.raw` file (format wikitext) or any text file (format text). When absent,
    /// `$SPLITBENCH_WIKITEXT_DIR/wiki.<split>.raw`.
    pub path: Option<PathBuf>,
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default = "default_format")]
    pub format: TextFormat,
    #[serde(default = "default_true")]
    pub add_special_tokens: bool,
    /// Keep the first K tokens; 0 keeps all.
    #[serde(default)]
    pub first_k_tokens: usize,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            path: None,
            split: default_split(),
            format: default_format(),
            add_special_tokens: true,
            first_k_tokens: 0,
        }
    }
}

fn default_split() -> String {
    "test".into()
}
fn default_format() -> TextFormat {
    TextFormat::Wikitext
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    #[serde(default = "default_stride")]
    pub stride: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// What NaN/Inf in a decoded hidden state (that the sent one did not have) does: `fail`
    /// marks the codec failed, `report` only counts them in the record.
    #[serde(default)]
    pub nonfinite: NonFinitePolicy,
    /// On a GPU, copy every device-path wire to the host, decode it with the host path too,
    /// and count wires and decoded states that differ (`--verify-wire`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify_wire: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonFinitePolicy {
    #[default]
    Fail,
    Report,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            max_length: default_max_length(),
            stride: default_stride(),
            batch_size: default_batch_size(),
            nonfinite: NonFinitePolicy::default(),
            verify_wire: false,
        }
    }
}

fn default_max_length() -> usize {
    2048
}
fn default_stride() -> usize {
    512
}
fn default_batch_size() -> usize {
    2
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSection {
    /// The prototype's split over this many nodes (default 4).
    pub nodes: Option<usize>,
    /// Node of each layer, explicitly.
    pub layer_to_node: Option<Vec<usize>>,
    /// With `layer_to_node`: where embedding and head run (default: node of the first layer).
    pub embed_node: Option<usize>,
    pub head_node: Option<usize>,
    /// A pipeline cut after these layers.
    pub split_after: Option<Vec<usize>>,
}

/// One codec to evaluate: built-in `none`, or a plugin's codec with params.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CodecSpec {
    /// `none` (the only built-in); leave out when `plugin` is given.
    pub name: Option<String>,
    /// A path to a plugin `.so` (relative to the config file) or a plugin name on the search path.
    pub plugin: Option<String>,
    pub codec: Option<String>,
    #[serde(default)]
    pub params: toml::Table,
    /// Name in reports; defaults to the codec and its params.
    pub label: Option<String>,
    /// Per-link overrides, keyed by full link name (`layer:7:node0->node1`) or `layer:7`.
    #[serde(default)]
    pub links: BTreeMap<String, CodecSpec>,
    /// Where the codec runs when the model is on a GPU: `auto` (its device path when the
    /// plugin has one), `host` (always host memory), `device` (fail without a device path).
    #[serde(default, skip_serializing_if = "CodecPath::is_auto")]
    pub path: CodecPath,
}

/// Which implementation of a codec a link uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecPath {
    #[default]
    Auto,
    Host,
    Device,
}

impl CodecPath {
    pub fn is_auto(&self) -> bool {
        *self == CodecPath::Auto
    }
}

impl CodecSpec {
    pub fn none() -> CodecSpec {
        CodecSpec {
            name: Some("none".into()),
            plugin: None,
            codec: None,
            params: toml::Table::new(),
            label: None,
            links: BTreeMap::new(),
            path: CodecPath::Auto,
        }
    }

    pub fn is_none(&self) -> bool {
        self.plugin.is_none() && self.name.as_deref() == Some("none")
    }

    pub fn params_json(&self) -> String {
        serde_json::to_string(&self.params).unwrap_or_else(|_| "{}".into())
    }

    /// A short name for tables: the label, or codec and params.
    pub fn display_name(&self) -> String {
        if let Some(label) = &self.label {
            return label.clone();
        }
        if self.is_none() {
            return "none".into();
        }
        let codec = self.codec.clone().unwrap_or_default();
        if self.params.is_empty() {
            codec
        } else {
            let params: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{codec}({})", params.join(","))
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    #[serde(default = "default_output_dir")]
    pub dir: PathBuf,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            dir: default_output_dir(),
        }
    }
}

fn default_output_dir() -> PathBuf {
    "runs".into()
}

/// An experiment and the folder its relative paths are resolved from.
#[derive(Debug, Clone)]
pub struct LoadedExperiment {
    pub path: PathBuf,
    pub base_dir: PathBuf,
    pub experiment: Experiment,
}

impl LoadedExperiment {
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Appends "did you mean `x`?" to serde's unknown-field message when one expected name is close.
fn suggest_closest(message: &str) -> String {
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let closest = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (strsim::levenshtein(unknown, name), name))
        .min();
    match closest {
        Some((distance, name)) if distance <= 3.max(unknown.len() / 3) => {
            format!("{message}\ndid you mean `{name}`?")
        }
        _ => message.to_string(),
    }
}

/// Parses `value` as a TOML value; bare words become strings.
fn parse_value(value: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()))
}

/// Applies `section.key=value` to a parsed document.
fn apply_override(doc: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Override {
        assignment: assignment.to_string(),
        message,
    };
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| err("expected section.key=value".into()))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    let [section, field] = parts.as_slice() else {
        return Err(err(
            "the key must be section.key, e.g. eval.batch_size".into()
        ));
    };
    let table = doc
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(table) = table else {
        return Err(err(format!("`{section}` is not a section")));
    };
    table.insert(field.to_string(), parse_value(value.trim()));
    Ok(())
}

pub fn load(path: &Path, overrides: &[String]) -> Result<LoadedExperiment, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message: suggest_closest(&message),
    };
    // Parse the file as written first, so its errors carry line numbers.
    let mut experiment: Experiment =
        toml::from_str(&text).map_err(|e| parse_err(e.to_string().trim_end().to_string()))?;
    if !overrides.is_empty() {
        let mut doc: toml::Table =
            toml::from_str(&text).map_err(|e| parse_err(e.to_string().trim_end().to_string()))?;
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        experiment = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Override {
                assignment: overrides.join(" "),
                message: e.to_string().trim_end().to_string(),
            })?;
    }
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let loaded = LoadedExperiment {
        path: path.to_path_buf(),
        base_dir,
        experiment,
    };
    validate(&loaded)?;
    Ok(loaded)
}

fn validate(loaded: &LoadedExperiment) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: loaded.path.clone(),
        message,
    };
    let e = &loaded.experiment;
    match (&e.model.path, &e.model.id, &e.model.gguf) {
        (None, None, None) => {
            return Err(invalid(
                "[model] needs `path` (a local folder), `id` (a Hub repo) or `gguf` (a GGUF file)"
                    .into(),
            ))
        }
        (Some(_), Some(_), _) => {
            return Err(invalid("[model] takes `path` or `id`, not both".into()))
        }
        (Some(_), None, Some(_)) => {
            return Err(invalid(
                "[model] takes `path` (a safetensors folder) or `gguf`, not both".into(),
            ))
        }
        _ => {}
    }
    if e.eval.max_length == 0 {
        return Err(invalid("eval.max_length must be at least 1".into()));
    }
    if e.eval.stride == 0 || e.eval.stride > e.eval.max_length {
        return Err(invalid(format!(
            "eval.stride = {} must be between 1 and eval.max_length ({}); stride = max_length gives disjoint windows",
            e.eval.stride, e.eval.max_length
        )));
    }
    if e.eval.batch_size == 0 {
        return Err(invalid("eval.batch_size must be at least 1".into()));
    }
    let plan_forms = [
        e.plan.nodes.is_some(),
        e.plan.layer_to_node.is_some(),
        e.plan.split_after.is_some(),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if plan_forms > 1 {
        return Err(invalid(
            "[plan] takes one of `nodes`, `layer_to_node` or `split_after`".into(),
        ));
    }
    e.links.model().map_err(&invalid)?;
    for spec in &e.codec {
        validate_codec(spec).map_err(&invalid)?;
        for (link, over) in &spec.links {
            validate_codec(over).map_err(|m| invalid(format!("codec.links.\"{link}\": {m}")))?;
        }
    }
    Ok(())
}

fn validate_codec(spec: &CodecSpec) -> Result<(), String> {
    match (&spec.name, &spec.plugin, &spec.codec) {
        (Some(name), None, None) if name == "none" => Ok(()),
        (Some(name), None, None) => Err(format!(
            "unknown built-in codec `{name}`; the only built-in is `none`; for others give `plugin` and `codec`"
        )),
        (None, Some(_), Some(_)) => Ok(()),
        (None, Some(_), None) => Err("a [[codec]] with `plugin` also needs `codec`".into()),
        _ => Err("a [[codec]] needs either name = \"none\" or `plugin` and `codec`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("x.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "splitbench-config-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn minimal_gets_prototype_defaults() {
        let d = tmp();
        let e = load(&write(&d, "[model]\npath = \"m\"\n"), &[]).unwrap();
        assert_eq!(e.experiment.eval.max_length, 2048);
        assert_eq!(e.experiment.eval.stride, 512);
        assert_eq!(e.experiment.eval.batch_size, 2);
        assert!(e.experiment.codec[0].is_none());
        assert_eq!(e.resolve(Path::new("m")), d.join("m"));
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let d = tmp();
        let err = load(
            &write(&d, "[model]\npath = \"m\"\n\n[eval]\nbatch_sise = 2\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 5") && err.contains("did you mean `batch_size`?"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_line() {
        let d = tmp();
        let err = load(
            &write(&d, "[model]\npath = \"m\"\n[eval]\nstride = \"big\"\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 4") && err.contains("expected usize"),
            "{err}"
        );
    }

    #[test]
    fn overrides_apply() {
        let d = tmp();
        let e = load(
            &write(&d, "[model]\npath = \"m\"\n"),
            &["eval.batch_size=4".into(), "model.dtype=bf16".into()],
        )
        .unwrap();
        assert_eq!(e.experiment.eval.batch_size, 4);
        assert_eq!(e.experiment.model.dtype, "bf16");
    }

    #[test]
    fn stride_checks() {
        let d = tmp();
        for bad in ["stride = 0", "stride = 4096"] {
            let err = load(
                &write(&d, &format!("[model]\npath = \"m\"\n[eval]\n{bad}\n")),
                &[],
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("eval.stride"), "{err}");
        }
    }

    #[test]
    fn codec_specs() {
        let d = tmp();
        let e = load(
            &write(
                &d,
                "[model]\npath = \"m\"\n[[codec]]\nname = \"none\"\n[[codec]]\nplugin = \"intq\"\ncodec = \"intn-block\"\nparams = { bits = 4 }\n",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(e.experiment.codec.len(), 2);
        assert_eq!(e.experiment.codec[1].params_json(), r#"{"bits":4}"#);
        assert_eq!(e.experiment.codec[1].display_name(), "intn-block(bits=4)");
        let err = load(
            &write(&d, "[model]\npath = \"m\"\n[[codec]]\nname = \"fp16\"\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("only built-in is `none`"), "{err}");
    }
}
