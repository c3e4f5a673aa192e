//! The author-facing side: what a codec implements and how a plugin describes itself.

use serde::{Deserialize, Serialize};

use crate::abi::{FfiCodecInfo, FfiDType, FfiParamInfo, FfiPluginInfo};

/// Element type of a hidden state. The boundary keeps the model's dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            "bf16" => Ok(DType::BF16),
            other => Err(format!(
                "unknown dtype `{other}` (expected f32, f16 or bf16)"
            )),
        }
    }
}

impl From<DType> for FfiDType {
    fn from(d: DType) -> Self {
        match d {
            DType::F32 => FfiDType::F32,
            DType::F16 => FfiDType::F16,
            DType::BF16 => FfiDType::BF16,
        }
    }
}

impl From<FfiDType> for DType {
    fn from(d: FfiDType) -> Self {
        match d {
            FfiDType::F32 => DType::F32,
            FfiDType::F16 => DType::F16,
            FfiDType::BF16 => DType::BF16,
        }
    }
}

/// A codec's error: a message for the user, crossing the boundary as a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

impl CodecError {
    pub fn new(message: impl Into<String>) -> Self {
        CodecError(message.into())
    }
}

/// Number of elements a shape holds, or an error when it overflows `usize`.
pub fn element_count(shape: &[usize]) -> Result<usize, CodecError> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| CodecError::new(format!("shape {shape:?} overflows usize")))
    })
}

/// A borrowed hidden state: `[batch, tokens, hidden]` values in `dtype`, little-endian.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    dtype: DType,
    shape: &'a [usize],
    bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// Checks that `bytes` holds exactly the elements `shape` names.
    pub fn new(dtype: DType, shape: &'a [usize], bytes: &'a [u8]) -> Result<Self, CodecError> {
        let expected = element_count(shape)?
            .checked_mul(dtype.size_in_bytes())
            .ok_or_else(|| CodecError::new("tensor size overflows usize"))?;
        if bytes.len() != expected {
            return Err(CodecError::new(format!(
                "tensor of shape {shape:?} in {dtype} needs {expected} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(TensorView {
            dtype,
            shape,
            bytes,
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    pub fn len(&self) -> usize {
        self.bytes.len() / self.dtype.size_in_bytes()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// Size of the last dimension: the hidden size, one row per token.
    pub fn hidden(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    /// Values as f32 (exact for every supported dtype).
    pub fn to_f32(&self) -> Vec<f32> {
        crate::convert::bytes_to_f32(self.bytes, self.dtype)
    }
}

/// A codec: one instance per link, so it may keep state between batches.
///
/// Everything the receiver needs (scales, indices, headers) must be inside the wire bytes;
/// the host counts their length. `decode` gets the shape and dtype the receiver knows and
/// must return exactly `elements × dtype size` bytes, or an error for wire bytes it cannot
/// trust. Never allocate more than the shape needs on the strength of a length read from
/// the wire.
pub trait Codec: Send + Sync {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError>;
    fn decode(&mut self, wire: &[u8], shape: &[usize], dtype: DType)
        -> Result<Vec<u8>, CodecError>;
}

impl<C: Codec + ?Sized> Codec for Box<C> {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        (**self).encode(input)
    }
    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        (**self).decode(wire, shape, dtype)
    }
}

/// One parameter of a codec: name, default (JSON) and a one-line description.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamInfo {
    pub name: String,
    pub default: serde_json::Value,
    pub description: String,
}

/// A codec a plugin offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodecInfo {
    pub name: String,
    pub description: String,
    pub params: Vec<ParamInfo>,
}

impl CodecInfo {
    /// A codec whose parameters are the fields of `P`, with `P::default()` as defaults.
    ///
    /// `docs` pairs each field name with its description; a field missing from `docs`, or a
    /// name in `docs` that is no field, is a bug the conformance kit reports.
    pub fn new<P: Serialize + Default>(
        name: &str,
        description: &str,
        docs: &[(&str, &str)],
    ) -> Self {
        let defaults = crate::params::defaults_of::<P>();
        let params = defaults
            .into_iter()
            .map(|(param, default)| ParamInfo {
                description: docs
                    .iter()
                    .find(|(n, _)| *n == param)
                    .map(|(_, d)| d.to_string())
                    .unwrap_or_default(),
                name: param,
                default,
            })
            .collect();
        CodecInfo {
            name: name.to_string(),
            description: description.to_string(),
            params,
        }
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub codecs: Vec<CodecInfo>,
}

impl PluginInfo {
    pub fn codec(&self, name: &str) -> Option<&CodecInfo> {
        self.codecs.iter().find(|c| c.name == name)
    }

    pub fn codec_names(&self) -> Vec<&str> {
        self.codecs.iter().map(|c| c.name.as_str()).collect()
    }

    /// The error a plugin's `new_codec` returns for a name it does not offer.
    pub fn unknown_codec(&self, name: &str) -> CodecError {
        CodecError::new(format!(
            "plugin `{}` has no codec `{name}`; it offers: {}",
            self.name,
            self.codec_names().join(", ")
        ))
    }
}

impl From<&PluginInfo> for FfiPluginInfo {
    fn from(info: &PluginInfo) -> Self {
        FfiPluginInfo {
            name: info.name.as_str().into(),
            version: info.version.as_str().into(),
            description: info.description.as_str().into(),
            codecs: info
                .codecs
                .iter()
                .map(|c| FfiCodecInfo {
                    name: c.name.as_str().into(),
                    description: c.description.as_str().into(),
                    params: c
                        .params
                        .iter()
                        .map(|p| FfiParamInfo {
                            name: p.name.as_str().into(),
                            default_json: p.default.to_string().into(),
                            description: p.description.as_str().into(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<&FfiPluginInfo> for PluginInfo {
    fn from(info: &FfiPluginInfo) -> Self {
        PluginInfo {
            name: info.name.to_string(),
            version: info.version.to_string(),
            description: info.description.to_string(),
            codecs: info
                .codecs
                .iter()
                .map(|c| CodecInfo {
                    name: c.name.to_string(),
                    description: c.description.to_string(),
                    params: c
                        .params
                        .iter()
                        .map(|p| ParamInfo {
                            name: p.name.to_string(),
                            default: serde_json::from_str(p.default_json.as_str()).unwrap_or_else(
                                |_| serde_json::Value::String(p.default_json.to_string()),
                            ),
                            description: p.description.to_string(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}
