//! The experiment TOML's schema: every section and value as a type, so a wrong value is a
//! parse error with the file and line like any other.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// The decode phase, run after the perplexity sweep when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSection>,
    /// The text calibrated codecs are fitted on; defaults apply when a codec needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationSection>,
}

/// `[calibration]`: the text whose hidden states calibrated codecs are fitted to, never the
/// evaluation text: the `[data]` source with another split, or a file of its own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSection {
    /// The split of the `[data]` source to fit on.
    #[serde(default = "default_calibration_split")]
    pub split: String,
    /// A text file to fit on instead (format as `data.format`); relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// How many tokens of it, from its start, in windows of `eval.max_length`.
    #[serde(default = "default_calibration_tokens")]
    pub tokens: usize,
}

impl Default for CalibrationSection {
    fn default() -> Self {
        CalibrationSection {
            split: default_calibration_split(),
            path: None,
            tokens: default_calibration_tokens(),
        }
    }
}

fn default_calibration_split() -> String {
    "validation".into()
}
fn default_calibration_tokens() -> usize {
    65536
}

/// `[generate]`: greedy continuations of prompts from the evaluation text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenerateSection {
    /// N prompts, spread evenly over the evaluated tokens.
    #[serde(default = "default_prompts")]
    pub prompts: usize,
    /// P tokens each.
    #[serde(default = "default_prompt_tokens")]
    pub prompt_tokens: usize,
    /// G tokens generated after each (argmax, ties to the lowest id).
    #[serde(default = "default_new_tokens")]
    pub new_tokens: usize,
}

fn default_prompts() -> usize {
    4
}
fn default_prompt_tokens() -> usize {
    64
}
fn default_new_tokens() -> usize {
    32
}

/// What a link between nodes is modelled as, for the wire-time estimates.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinksSection {
    /// A named profile (default `datacenter`).
    pub profile: Option<LinkProfile>,
    /// Overrides the profile's bandwidth, Mbit/s.
    pub bandwidth_mbps: Option<f64>,
    /// Overrides the profile's one-way latency, ms.
    pub latency_ms: Option<f64>,
}

/// The named link profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkProfile {
    /// Nodes in one datacenter: 1 Gbit/s, 5 ms.
    #[default]
    Datacenter,
    /// Volunteer nodes on home broadband: 100 Mbit/s, 30 ms.
    Broadband,
}

impl LinkProfile {
    /// Bandwidth (Mbit/s) and one-way latency (ms).
    pub fn figures(self) -> (f64, f64) {
        match self {
            LinkProfile::Datacenter => (1000.0, 5.0),
            LinkProfile::Broadband => (100.0, 30.0),
        }
    }
}

/// A link model: bandwidth and latency.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkModel {
    pub profile: LinkProfile,
    pub bandwidth_mbps: f64,
    pub latency_ms: f64,
}

impl LinksSection {
    pub fn model(&self) -> Result<LinkModel, String> {
        let profile = self.profile.unwrap_or_default();
        let (bandwidth, latency) = profile.figures();
        let model = LinkModel {
            profile,
            bandwidth_mbps: self.bandwidth_mbps.unwrap_or(bandwidth),
            latency_ms: self.latency_ms.unwrap_or(latency),
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
    #[serde(default)]
    pub dtype: ModelDtype,
    #[serde(default)]
    pub device: DeviceSpec,
    /// Safetensors: `dense` (default) keeps the checkpoint's matrices; `q8_0`, `q4_0`, `q4k`,
    /// `q6k` quantize them at load. GGUF: `native` (default) keeps them quantized,
    /// `dequantize` turns them into `dtype`.
    pub weights: Option<Weights>,
}

/// `model.dtype`: what the forward pass computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelDtype {
    #[default]
    F32,
    F16,
    Bf16,
}

impl ModelDtype {
    pub fn candle(self) -> candle_core::DType {
        match self {
            ModelDtype::F32 => candle_core::DType::F32,
            ModelDtype::F16 => candle_core::DType::F16,
            ModelDtype::Bf16 => candle_core::DType::BF16,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModelDtype::F32 => "f32",
            ModelDtype::F16 => "f16",
            ModelDtype::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for ModelDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `model.weights`: how the projection matrices are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weights {
    /// Safetensors: the checkpoint's matrices as they are.
    Dense,
    /// Safetensors: quantized at load to a GGML block format.
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "q4_0")]
    Q4_0,
    Q4k,
    Q6k,
    /// GGUF: the file's quantized matrices as they are.
    Native,
    /// GGUF: the file's matrices turned into `model.dtype`.
    Dequantize,
}

impl Weights {
    pub fn as_str(self) -> &'static str {
        match self {
            Weights::Dense => "dense",
            Weights::Q8_0 => "q8_0",
            Weights::Q4_0 => "q4_0",
            Weights::Q4k => "q4k",
            Weights::Q6k => "q6k",
            Weights::Native => "native",
            Weights::Dequantize => "dequantize",
        }
    }

    /// Whether this applies to GGUF files (`native`, `dequantize`) rather than safetensors.
    pub fn is_for_gguf(self) -> bool {
        matches!(self, Weights::Native | Weights::Dequantize)
    }
}

/// `model.device`: where the forward pass runs. Written as `"cpu"`, `"auto"` or `"cuda:N"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// CUDA when this build has it and a GPU answers, the CPU otherwise.
    Auto,
    Cuda(usize),
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "auto" => Ok(DeviceSpec::Auto),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Ok(DeviceSpec::Cuda(ordinal)),
                _ => Err(format!(
                    "device `{other}` is not understood; use \"cpu\", \"auto\" or \"cuda:N\" \
                     (N = the GPU's index, as nvidia-smi lists it)"
                )),
            },
        }
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

fn default_revision() -> String {
    "main".into()
}

/// `[data]`: where the text comes from, and how it becomes tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataSection {
    /// The source's keys; every key not named below is one (an unknown key is refused by the
    /// source, which knows its keys).
    #[serde(flatten)]
    pub source: SourceKeys,
    #[serde(default = "default_true")]
    pub add_special_tokens: bool,
    /// Keep the first K tokens; 0 keeps all.
    #[serde(default)]
    pub first_k_tokens: usize,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            source: SourceKeys::default(),
            add_special_tokens: true,
            first_k_tokens: 0,
        }
    }
}

/// The keys of `[data]` that say where the text comes from (`source`, `path`, `dataset`,
/// `split`, …). Each data source declares and checks its own (`setup/data/`); the config only
/// carries them, so that a new source needs no change here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceKeys {
    /// As `[data]` wrote them: what the source reads.
    pub written: serde_json::Map<String, serde_json::Value>,
    /// Once the source has read them, the form records keep (its defaults filled in); what
    /// the experiment serializes to when set.
    pub recorded: Option<serde_json::Map<String, serde_json::Value>>,
}

impl<'de> Deserialize<'de> for SourceKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SourceKeys {
            written: Deserialize::deserialize(deserializer)?,
            recorded: None,
        })
    }
}

impl Serialize for SourceKeys {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let keys = self.recorded.as_ref().unwrap_or(&self.written);
        // An unset key is null in records (`"path": null`) and left out of TOML, which has no
        // null: both are what serializing `None` gives.
        let mut map = serializer.serialize_map(Some(keys.len()))?;
        for (key, value) in keys {
            match value {
                serde_json::Value::Null => map.serialize_entry(key, &None::<()>)?,
                value => map.serialize_entry(key, value)?,
            }
        }
        map.end()
    }
}

/// How a raw file becomes the evaluation text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextFormat {
    /// `wiki.*.raw`: rows are the file's lines, joined as the Hub dataset's rows are.
    #[default]
    Wikitext,
    /// The file as it is.
    Text,
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
    /// Each node's device, one per node (`"cpu"`, `"cuda:N"`; several nodes may share one);
    /// default: every node on `model.device`. Left out of records when unset, so runs from
    /// before the key resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceSpec>>,
}

impl PlanSection {
    /// How many nodes the plan has, from the section alone (before the model is loaded).
    pub fn node_count(&self) -> usize {
        match (&self.layer_to_node, &self.split_after) {
            (Some(assign), _) => {
                assign
                    .iter()
                    .chain(&self.embed_node)
                    .chain(&self.head_node)
                    .copied()
                    .max()
                    .unwrap_or(0)
                    + 1
            }
            (None, Some(cuts)) => cuts.len() + 1,
            (None, None) => self.nodes.unwrap_or(4),
        }
    }
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
