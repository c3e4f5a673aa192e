//! `splitbench-codec-roundtrip --plugin P --codec C --params JSON --input X.safetensors
//! --output Y.safetensors`: the CLI the host's `splitbench codec-roundtrip` will offer, until it
//! does (scripts/compare_codecs.py drives either).
//!
//! Every tensor of the input (f32, f16 or bf16; 3-D `[batch, tokens, hidden]`, or 2-D / 1-D,
//! read as one batch / one token) goes through a fresh instance of the codec, loaded from the
//! plugin `.so` through the same ABI the host uses: encode, then decode to the input's shape
//! and dtype. The output holds the decoded tensors under the same names, and its metadata key
//! `wire_bytes` a JSON object giving each tensor's wire length; one JSON line per tensor is
//! also printed.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use safetensors::{tensor::TensorView as StView, Dtype, SafeTensors};
use splitbench_plugin_api::{Codec, DType, Plugin, TensorView};

#[derive(Parser)]
struct Args {
    /// The plugin's shared library.
    #[arg(long)]
    plugin: PathBuf,
    #[arg(long)]
    codec: String,
    /// Codec params as a JSON object.
    #[arg(long, default_value = "{}")]
    params: String,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
}

fn dtype_of(d: Dtype) -> Result<DType> {
    Ok(match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        other => bail!("unsupported dtype {other:?} (f32, f16 or bf16)"),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let plugin = Plugin::load(&args.plugin).map_err(|e| anyhow!("{e}"))?;
    let bytes = std::fs::read(&args.input).with_context(|| format!("{}", args.input.display()))?;
    let input = SafeTensors::deserialize(&bytes)?;
    let mut names = input.names();
    names.sort();
    let mut decoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut wire_bytes = serde_json::Map::new();
    for name in names {
        let tensor = input.tensor(name)?;
        let dtype = dtype_of(tensor.dtype()).with_context(|| name.to_string())?;
        let shape: Vec<usize> = match tensor.shape() {
            [b, t, h] => vec![*b, *t, *h],
            [t, h] => vec![1, *t, *h],
            [h] => vec![1, 1, *h],
            other => bail!("{name}: shape {other:?} is not [batch, tokens, hidden]"),
        };
        let mut codec = plugin
            .new_codec(&args.codec, &args.params)
            .map_err(|e| anyhow!("{e}"))?;
        let view = TensorView::new(dtype, &shape, tensor.data()).map_err(|e| anyhow!("{e}"))?;
        let wire = codec
            .encode(&view)
            .map_err(|e| anyhow!("{name}: encode: {e}"))?;
        let out = codec
            .decode(&wire, &shape, dtype)
            .map_err(|e| anyhow!("{name}: decode: {e}"))?;
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
    std::fs::write(&args.output, out).with_context(|| format!("{}", args.output.display()))?;
    Ok(())
}
