//! Template codec `mulaw`: μ-law companding to 8 bits with one f32 absmax scale per token.
//! Companding spends the 8 bits logarithmically, so small values keep precision next to the
//! massive activations that dominate each token's scale.
//!
//! Wire: per token an f32 scale, then one byte per value (sign bit + 7-bit μ-law magnitude).

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::f32_to_bytes,
    export_plugin, params,
    quant::{absmax, finite_values},
    wire::{self, WireReader},
    Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct MuLawParams {
    mu: f32,
}

impl Default for MuLawParams {
    fn default() -> Self {
        MuLawParams { mu: 255.0 }
    }
}

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "mulaw".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "μ-law companding to 8 bits per value".into(),
        codecs: vec![CodecInfo::new::<MuLawParams>(
            "mulaw",
            "8-bit μ-law with a per-token absmax scale",
            &[("mu", "companding strength; larger spends more codes near zero")],
        )],
    }
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    match name {
        "mulaw" => {
            let p: MuLawParams = params::parse(name, params_json)?;
            if !(p.mu.is_finite() && p.mu > 0.0) {
                return Err(CodecError::new("`mu` must be a positive number"));
            }
            Ok(Box::new(MuLaw { mu: p.mu }))
        }
        other => Err(info().unknown_codec(other)),
    }
}

export_plugin!(info, new_codec);

pub struct MuLaw {
    mu: f32,
}

impl Codec for MuLaw {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = finite_values(input)?;
        let hidden = input.hidden().max(1);
        let mut out = Vec::with_capacity(values.len() + values.len() / hidden * 4);
        let norm = (1.0 + self.mu).ln();
        for row in values.chunks(hidden) {
            let scale = absmax(row);
            out.extend_from_slice(&scale.to_le_bytes());
            for &v in row {
                let x = if scale > 0.0 { (v / scale).abs() } else { 0.0 };
                let magnitude = ((1.0 + self.mu * x).ln() / norm * 127.0).round() as u8;
                out.push(magnitude | if v < 0.0 { 0x80 } else { 0 });
            }
        }
        Ok(out)
    }

    fn decode(&mut self, wire: &[u8], shape: &[usize], dtype: DType) -> Result<Vec<u8>, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        wire::expect_len(wire, rows * (4 + hidden))?;
        let mut reader = WireReader::new(wire);
        let mut values = Vec::with_capacity(rows * hidden);
        for _ in 0..rows {
            let scale = reader.f32()?;
            for &b in reader.take(hidden)? {
                let y = f32::from(b & 0x7f) / 127.0;
                let x = ((1.0 + self.mu).powf(y) - 1.0) / self.mu * scale;
                values.push(if b & 0x80 != 0 { -x } else { x });
            }
        }
        reader.finish()?;
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conforms() {
        splitbench_plugin_api::testkit::assert_conformance(|| super::new_codec("mulaw", "{}"));
    }
}
