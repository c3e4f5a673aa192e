//! One weight source for every family (candle-nn's `VarBuilder` idea): a tensor is asked for
//! by its Hugging Face name with the shape the config implies; safetensors answers by that
//! name, GGUF by llama.cpp's. The shape is checked on fetch and an error names the file's own
//! tensor.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::config::ModelConfig;
use super::linear::Linear;
use super::ModelError;

type Result<T> = std::result::Result<T, ModelError>;

/// What a tensor is, so a random source (`synth-model`) draws it as a real one is spread; the
/// files ignore it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Token embedding rows: uniform in ±1.
    Embedding,
    /// A projection with `fan_in` inputs: uniform in ±1/√fan_in.
    Matrix { fan_in: usize },
    /// The LM head: uniform in ±0.1.
    Head,
    /// A norm's scale, 1 ± 0.1 (or ± 0.1 for Gemma's `1 + w` form).
    Norm { offset: f32 },
    /// Uniform in ±0.1.
    Bias,
}

impl Init {
    /// `(scale, offset)` of a uniform draw `offset + scale · U(-1, 1)`.
    pub fn range(self) -> (f32, f32) {
        match self {
            Init::Embedding => (1.0, 0.0),
            Init::Matrix { fan_in } => (1.0 / (fan_in as f32).sqrt(), 0.0),
            Init::Head | Init::Bias => (0.1, 0.0),
            Init::Norm { offset } => (0.1, offset),
        }
    }
}

/// Whether a projection has a bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    No,
    Yes,
}

impl From<bool> for Bias {
    fn from(b: bool) -> Self {
        if b {
            Bias::Yes
        } else {
            Bias::No
        }
    }
}

/// Tensors by Hugging Face name.
pub trait WeightSource {
    /// Whether the file holds the tensor.
    fn contains(&self, name: &str) -> bool;
    /// A dense tensor of exactly `shape`, in the model's dtype on its device.
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor>;
    /// The weight `[out, inp]` of `prefix.weight` split by rows into `parts` (their sizes sum
    /// to `out`), each a matrix the source may hold quantized, with `prefix.bias` split alike.
    fn linears(
        &mut self,
        prefix: &str,
        parts: &[usize],
        inp: usize,
        bias: Bias,
    ) -> Result<Vec<Linear>>;
    /// The config the shapes come from, for error messages.
    fn config(&self) -> &ModelConfig;

    /// The LM head tied to the embedding (GGUF: its own, possibly quantized, copy).
    fn tied_head(&mut self, embed: &Tensor) -> Result<Linear> {
        Ok(Linear::tied(embed))
    }

    /// `prefix.weight` `[out, inp]` (and `prefix.bias` `[out]`).
    fn linear(&mut self, prefix: &str, out: usize, inp: usize, bias: Bias) -> Result<Linear> {
        let mut parts = self.linears(prefix, &[out], inp, bias)?;
        parts
            .pop()
            .ok_or_else(|| ModelError::Invalid(format!("no weight for `{prefix}`")))
    }
}

/// A tensor of the wrong shape: the config and the weights disagree.
pub fn shape_mismatch(
    config: &ModelConfig,
    name: &str,
    got: &[usize],
    want: &[usize],
) -> ModelError {
    ModelError::Invalid(format!(
        "weight `{name}` has shape {got:?}, but the model's config (hidden_size {}, \
         intermediate_size {}, {} heads of {}, {} KV heads, vocab_size {}) implies {want:?}: the \
         config and the weights come from different models, or the file is damaged",
        config.hidden_size,
        config.intermediate_size,
        config.num_attention_heads,
        config.head_dim(),
        config.kv_heads(),
        config.vocab_size,
    ))
}

/// Weight storage chosen at load for the projection matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projections {
    Dense,
    Quantize(GgmlDType),
}

/// Memory-mapped safetensors, whose names are Hugging Face's.
pub struct SafetensorsWeights {
    st: MmapedSafetensors,
    config: ModelConfig,
    dtype: DType,
    device: Device,
    projections: Projections,
    /// Projections left dense because their input size is not a multiple of the block size.
    pub kept_dense: Vec<String>,
}

impl SafetensorsWeights {
    pub fn new(
        st: MmapedSafetensors,
        config: ModelConfig,
        dtype: DType,
        device: Device,
        projections: Projections,
    ) -> Self {
        SafetensorsWeights {
            st,
            config,
            dtype,
            device,
            projections,
            kept_dense: Vec::new(),
        }
    }

    fn load(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let view = self.st.get(name).map_err(|_| {
            ModelError::Invalid(format!(
                "the weights have no tensor `{name}`, which a {} model of this config needs: \
                 the config and the weights come from different models",
                self.config.model_type
            ))
        })?;
        if view.shape() != shape {
            return Err(shape_mismatch(&self.config, name, view.shape(), shape));
        }
        let t = self.st.load(name, &self.device).map_err(|e| {
            ModelError::Invalid(format!("checkpoint tensor `{name}` cannot be loaded: {e}"))
        })?;
        Ok(t.to_dtype(self.dtype)?)
    }

    fn matrix(&mut self, name: String, w: Tensor) -> Result<QMatMul> {
        Ok(match self.projections {
            Projections::Dense => QMatMul::Tensor(w),
            Projections::Quantize(q) if w.dim(1)? % q.block_size() == 0 => {
                QMatMul::from_qtensor(QTensor::quantize(&w.to_dtype(DType::F32)?, q)?)?
            }
            Projections::Quantize(_) => {
                self.kept_dense.push(name);
                QMatMul::Tensor(w)
            }
        })
    }
}

/// A fused weight `[out, inp]` (and bias `[out]`) as the consecutive row blocks `parts`.
pub fn split_rows(
    w: Tensor,
    b: Option<Tensor>,
    parts: &[usize],
) -> Result<Vec<(Tensor, Option<Tensor>)>> {
    if parts.len() == 1 {
        return Ok(vec![(w, b)]);
    }
    let mut start = 0;
    let mut out = Vec::with_capacity(parts.len());
    for &n in parts {
        let b = b
            .as_ref()
            .map(|b| b.narrow(0, start, n)?.contiguous())
            .transpose()?;
        out.push((w.narrow(0, start, n)?.contiguous()?, b));
        start += n;
    }
    Ok(out)
}

impl WeightSource for SafetensorsWeights {
    fn contains(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }

    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Tensor> {
        self.load(name, shape)
    }

    fn linears(
        &mut self,
        prefix: &str,
        parts: &[usize],
        inp: usize,
        bias: Bias,
    ) -> Result<Vec<Linear>> {
        let out: usize = parts.iter().sum();
        let name = format!("{prefix}.weight");
        let w = self.load(&name, &[out, inp])?;
        let b = match bias {
            Bias::Yes => Some(self.load(&format!("{prefix}.bias"), &[out])?),
            Bias::No => None,
        };
        split_rows(w, b, parts)?
            .into_iter()
            .map(|(w, b)| Ok(Linear::new(self.matrix(name.clone(), w)?, b)))
            .collect()
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rows_by_hand() {
        let w = Tensor::arange(0f32, 8., &Device::Cpu)
            .unwrap()
            .reshape((4, 2))
            .unwrap();
        let b = Tensor::new(&[10f32, 11., 12., 13.], &Device::Cpu).unwrap();
        let parts = split_rows(w, Some(b), &[1, 3]).unwrap();
        assert_eq!(parts[0].0.to_vec2::<f32>().unwrap(), [[0., 1.]]);
        assert_eq!(
            parts[1].0.to_vec2::<f32>().unwrap(),
            [[2., 3.], [4., 5.], [6., 7.]]
        );
        let bias = |i: usize| parts[i].1.as_ref().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!((bias(0), bias(1)), (vec![10.], vec![11., 12., 13.]));
    }
}
