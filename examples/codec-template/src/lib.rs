//! Template codec `mulaw`: μ-law companding to 8 bits with one f32 absmax scale per token.
//! Companding spends the 8 bits logarithmically, so small values keep precision next to the
//! massive activations that dominate each token's scale.
//!
//! Wire: per token an f32 scale, then one byte per value (sign bit + 7-bit μ-law magnitude).
//!
//! It also runs on the GPU (`device.rs`, `mulaw.cu`): when the model is on CUDA, splitbench
//! uses the device path, which must write the same bytes as this host path. Transcendental
//! functions differ between a CPU's libm and CUDA in the last bit, so both paths work from the
//! same two tables computed here once: the 127 magnitudes at which the code steps up, and the
//! 128 decoded levels.

mod device;

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::f32_to_bytes,
    device::DeviceCodec,
    export_plugin, params,
    quant::finite_values,
    range::absmax,
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
            &[(
                "mu",
                "companding strength; larger spends more codes near zero",
            )],
        )],
    }
}

fn parse(name: &str, params_json: &str) -> Result<Tables, CodecError> {
    match name {
        "mulaw" => {
            let p: MuLawParams = params::parse(name, params_json)?;
            if !(p.mu.is_finite() && p.mu > 0.0) {
                return Err(CodecError::new("`mu` must be a positive number"));
            }
            Ok(Tables::new(p.mu))
        }
        other => Err(info().unknown_codec(other)),
    }
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    Ok(Box::new(MuLaw {
        tables: parse(name, params_json)?,
    }))
}

/// The device path: `None` would mean "host path only", as for codecs without kernels.
pub fn new_device_codec(
    name: &str,
    params_json: &str,
) -> Result<Option<Box<dyn DeviceCodec>>, CodecError> {
    Ok(Some(Box::new(device::MuLawOnDevice::new(parse(
        name,
        params_json,
    )?))))
}

export_plugin!(info, new_codec, new_device_codec);

/// What host and device paths share: `steps[k]` is the smallest |x| / scale whose magnitude
/// code is above k; `levels[m]` is the decoded |x| / scale of code m.
#[derive(Debug, Clone)]
pub struct Tables {
    steps: [f32; 127],
    levels: [f32; 128],
}

impl Tables {
    fn new(mu: f32) -> Tables {
        let norm = (1.0 + mu).ln();
        let code = |x: f32| ((1.0 + mu * x).ln() / norm * 127.0).round();
        // The code grows with x, and positive floats order as their bits: bisect the bits.
        let steps = std::array::from_fn(|k| {
            let (mut lo, mut hi) = (0u32, 1f32.to_bits() + 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if code(f32::from_bits(mid)) > k as f32 {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            f32::from_bits(lo)
        });
        let levels = std::array::from_fn(|m| ((1.0 + mu).powf(m as f32 / 127.0) - 1.0) / mu);
        Tables { steps, levels }
    }

    fn magnitude(&self, x: f32) -> u8 {
        self.steps.partition_point(|&s| s <= x) as u8
    }
}

pub struct MuLaw {
    tables: Tables,
}

/// Bytes of a token's scale (f32).
const SCALE_LEN: usize = 4;

/// Bytes of the wire for `rows × hidden` values, on either path.
pub(crate) fn wire_len(rows: usize, hidden: usize) -> usize {
    rows * (SCALE_LEN + hidden)
}

impl Codec for MuLaw {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = finite_values(input)?;
        let hidden = input.hidden().max(1);
        let mut out = Vec::with_capacity(wire_len(values.len() / hidden, hidden));
        for row in values.chunks(hidden) {
            let scale = absmax(row);
            out.extend_from_slice(&scale.to_le_bytes());
            for &v in row {
                let x = if scale > 0.0 { (v / scale).abs() } else { 0.0 };
                out.push(self.tables.magnitude(x) | if v < 0.0 { 0x80 } else { 0 });
            }
        }
        Ok(out)
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        wire::expect_len(wire, wire_len(rows, hidden))?;
        let mut reader = WireReader::new(wire);
        let mut values = Vec::with_capacity(rows * hidden);
        for _ in 0..rows {
            let scale = reader.f32()?;
            for &b in reader.take(hidden)? {
                let x = self.tables.levels[usize::from(b & 0x7f)] * scale;
                values.push(if b & 0x80 != 0 { -x } else { x });
            }
        }
        reader.finish()?;
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_reproduce_the_companding_formula() {
        let mu = 255.0f32;
        let tables = Tables::new(mu);
        let norm = (1.0 + mu).ln();
        for i in 0..=100_000 {
            let x = i as f32 / 100_000.0;
            let formula = ((1.0 + mu * x).ln() / norm * 127.0).round() as u8;
            assert_eq!(tables.magnitude(x), formula, "x = {x}");
        }
    }
}
