//! `splitbench codec-roundtrip`: real tensors (hidden states saved as safetensors) through one
//! codec, for codec authors and for comparing a codec with a reference library.
//!
//! Every tensor of the input (f32, f16 or bf16; `[batch, tokens, hidden]`, or `[tokens,
//! hidden]` / `[hidden]`, read as one batch / one token) goes through a fresh instance of the
//! codec, loaded through the same ABI a run uses: encode, then decode to the input's shape and
//! dtype. The output holds the decoded tensors under the same names, and its metadata key
//! `wire_bytes` a JSON object giving each tensor's wire length; one JSON line per tensor is
//! also printed.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use safetensors::{tensor::TensorView as StView, Dtype, SafeTensors};
use splitbench_plugin_api::{Codec, DType, Plugin, TensorView};

use crate::link::PluginSearch;

pub struct RoundtripArgs<'a> {
    pub plugin: &'a str,
    pub codec: &'a str,
    pub params: &'a str,
    pub input: &'a Path,
    pub output: &'a Path,
}

fn dtype_of(name: &str, d: Dtype) -> Result<DType> {
    Ok(match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        other => bail!("tensor `{name}` is {other:?}; codecs take f32, f16 or bf16 hidden states"),
    })
}

/// `[batch, tokens, hidden]` of a tensor's shape.
fn hidden_shape(name: &str, shape: &[usize]) -> Result<[usize; 3]> {
    Ok(match *shape {
        [b, t, h] => [b, t, h],
        [t, h] => [1, t, h],
        [h] => [1, 1, h],
        _ => bail!("tensor `{name}` has shape {shape:?}; expected [batch, tokens, hidden]"),
    })
}

pub fn codec_roundtrip(search: &PluginSearch, args: &RoundtripArgs<'_>) -> Result<()> {
    let path = search.resolve(args.plugin, Path::new("."))?;
    let plugin = Plugin::load(&path)?;
    // Unknown codecs and bad params fail here, with the plugin's message, before any reading.
    plugin.new_codec(args.codec, args.params)?;
    let bytes = std::fs::read(args.input)
        .with_context(|| format!("cannot read `{}`", args.input.display()))?;
    let input = SafeTensors::deserialize(&bytes).map_err(|e| {
        anyhow!(
            "`{}` is not a safetensors file ({e}); save the hidden states with safetensors",
            args.input.display()
        )
    })?;
    let mut names = input.names();
    names.sort();
    let mut decoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut wire_bytes = serde_json::Map::new();
    for name in names {
        let tensor = input.tensor(name)?;
        let dtype = dtype_of(name, tensor.dtype())?;
        let shape = hidden_shape(name, tensor.shape())?;
        let mut codec = plugin.new_codec(args.codec, args.params)?;
        let view = TensorView::new(dtype, &shape, tensor.data()).map_err(|e| anyhow!("{e}"))?;
        let wire = codec
            .encode(&view)
            .map_err(|e| anyhow!("`{}` could not encode tensor `{name}`: {e}", args.codec))?;
        let out = codec
            .decode(&wire, &shape, dtype)
            .map_err(|e| anyhow!("`{}` could not decode tensor `{name}`: {e}", args.codec))?;
        println!(
            "{}",
            serde_json::json!({
                "tensor": name,
                "shape": shape,
                "dtype": dtype.as_str(),
                "raw_bytes": tensor.data().len(),
                "wire_bytes": wire.len(),
            })
        );
        wire_bytes.insert(name.to_string(), wire.len().into());
        decoded.push((
            name.to_string(),
            tensor.dtype(),
            tensor.shape().to_vec(),
            out,
        ));
    }
    let views = decoded
        .iter()
        .map(|(name, dtype, shape, data)| {
            Ok((name.as_str(), StView::new(*dtype, shape.clone(), data)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([(
        "wire_bytes".to_string(),
        serde_json::Value::Object(wire_bytes).to_string(),
    )]);
    let out = safetensors::serialize(views, Some(metadata))?;
    std::fs::write(args.output, out)
        .with_context(|| format!("cannot write `{}`", args.output.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_read_as_batch_tokens_hidden() {
        assert_eq!(hidden_shape("h", &[2, 3, 4]).unwrap(), [2, 3, 4]);
        assert_eq!(hidden_shape("h", &[3, 4]).unwrap(), [1, 3, 4]);
        assert_eq!(hidden_shape("h", &[4]).unwrap(), [1, 1, 4]);
        let err = hidden_shape("h", &[1, 2, 3, 4]).unwrap_err().to_string();
        assert!(err.contains("`h`") && err.contains("[1, 2, 3, 4]"), "{err}");
        assert!(dtype_of("h", Dtype::I64).is_err());
    }
}
