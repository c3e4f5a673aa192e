//! `cast`: narrower floating-point formats — fp16, bf16, fp8 e4m3 and fp8 e5m2 (OCP FP8, as
//! `torch.float8_e4m3fn` / `torch.float8_e5m2`), fp8 optionally with one f32 scale per token.
//!
//! Wire formats (little-endian):
//! - `fp16`, `bf16`: 2 bytes per element.
//! - `fp8-e4m3`, `fp8-e5m2` with `scale = "none"`: 1 byte per element. Finite values beyond
//!   each format's largest finite value saturate to it (448 for e4m3, 57344 for e5m2);
//!   NaN and ±Inf become NaN (plugin-api's `fp8`).
//! - with `scale = "per-token"`: per token an f32 scale, then 1 byte per element holding
//!   value / scale, clamped to the format's largest value and rounded to nearest even. The
//!   scale is TorchAO's `Float8Tensor.from_hp` row-wise scale: absmax / 448 (or 57344)
//!   computed in the model dtype (so rounded to bf16 / f16 for those models) and stored as
//!   f32; decoding is code × scale in f32, then rounded to the model dtype. TorchAO divides an
//!   all-zero row by a zero scale (NaN); here a scale that is 0 becomes 1. Non-finite input is
//!   rejected: it would poison the scale.

mod device;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::{bytes_to_f32, f32_to_bytes, round_to},
    device::DeviceCodec,
    export_plugin,
    fp8::Fp8,
    params,
    range::absmax,
    wire::{self, WireReader},
    Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

#[derive(Debug, Default, Serialize, Deserialize)]
struct NoParams {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    #[default]
    None,
    PerToken,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Fp8Params {
    scale: Scale,
}

const FP8_DOCS: &[(&str, &str)] = &[(
    "scale",
    "\"none\" (saturating cast) or \"per-token\" (f32 absmax scale per token)",
)];

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "cast".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Casts to fp16, bf16, fp8 e4m3 or fp8 e5m2".into(),
        codecs: vec![
            CodecInfo::new::<NoParams>("fp16", "IEEE half precision, 2 bytes per element", &[]),
            CodecInfo::new::<NoParams>("bf16", "bfloat16, 2 bytes per element", &[]),
            CodecInfo::new::<Fp8Params>("fp8-e4m3", "fp8 E4M3, 1 byte per element", FP8_DOCS),
            CodecInfo::new::<Fp8Params>("fp8-e5m2", "fp8 E5M2, 1 byte per element", FP8_DOCS),
        ],
    }
}

/// A codec name and its params, checked.
#[derive(Debug, Clone, Copy)]
enum Variant {
    Half { bf16: bool },
    Eight { format: Fp8, scale: Scale },
}

fn parse(name: &str, params_json: &str) -> Result<Variant, CodecError> {
    match name {
        "fp16" | "bf16" => {
            params::parse::<NoParams>(name, params_json)?;
            Ok(Variant::Half {
                bf16: name == "bf16",
            })
        }
        "fp8-e4m3" | "fp8-e5m2" => {
            let p: Fp8Params = params::parse(name, params_json)?;
            let format = if name == "fp8-e4m3" {
                Fp8::E4M3
            } else {
                Fp8::E5M2
            };
            Ok(Variant::Eight {
                format,
                scale: p.scale,
            })
        }
        other => Err(info().unknown_codec(other)),
    }
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    Ok(match parse(name, params_json)? {
        Variant::Half { bf16 } => Box::new(Half { bf16 }),
        Variant::Eight { format, scale } => Box::new(Eight { format, scale }),
    })
}

pub fn new_device_codec(
    name: &str,
    params_json: &str,
) -> Result<Option<Box<dyn DeviceCodec>>, CodecError> {
    Ok(Some(match parse(name, params_json)? {
        Variant::Half { bf16 } => Box::new(device::HalfOnDevice::new(bf16)),
        Variant::Eight { format, scale } => Box::new(device::EightOnDevice::new(format, scale)),
    }))
}

export_plugin!(info, new_codec, new_device_codec);

/// fp16 or bf16.
pub struct Half {
    pub bf16: bool,
}

impl Codec for Half {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let bytes = input.bytes();
        let target = if self.bf16 { DType::BF16 } else { DType::F16 };
        if input.dtype() == target {
            return Ok(bytes.to_vec());
        }
        Ok(f32_to_bytes(&input.to_f32(), target))
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let elements = splitbench_plugin_api::element_count(shape)?;
        wire::expect_len(wire, elements * 2)?;
        let source = if self.bf16 { DType::BF16 } else { DType::F16 };
        if source == dtype {
            return Ok(wire.to_vec());
        }
        Ok(f32_to_bytes(&bytes_to_f32(wire, source), dtype))
    }
}

/// What per-token scaling says of NaN/Inf input, on either path.
pub(crate) const PER_TOKEN_NON_FINITE: &str =
    "fp8 per-token scaling got NaN/Inf in the hidden state; use scale = \"none\" to carry them";

/// TorchAO's row scale, absmax / max as an op on the model dtype (rounded to it); 1 where
/// that is 0 (an all-zero row, or an f16 row so small the quotient underflows).
pub(crate) fn per_token_scale(absmax: f32, format: Fp8, dtype: DType) -> f32 {
    let scale = round_to(dtype, absmax / format.max());
    if scale > 0.0 {
        scale
    } else {
        1.0
    }
}

/// Bytes of a token's scale (f32) in a per-token scaled fp8 wire.
const TOKEN_SCALE_LEN: usize = 4;

/// Bytes of an fp8 wire for `rows × hidden` values, on either path.
pub(crate) fn eight_wire_len(rows: usize, hidden: usize, scale: Scale) -> usize {
    let scales = match scale {
        Scale::None => 0,
        Scale::PerToken => rows * TOKEN_SCALE_LEN,
    };
    scales + rows * hidden
}

/// fp8, optionally with a per-token scale.
pub struct Eight {
    pub format: Fp8,
    pub scale: Scale,
}

impl Codec for Eight {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = input.to_f32();
        let hidden = input.hidden().max(1);
        let format = self.format;
        match self.scale {
            Scale::None => Ok(values.par_iter().map(|&v| format.encode(v)).collect()),
            Scale::PerToken => {
                if values.par_iter().any(|v| !v.is_finite()) {
                    return Err(CodecError::new(PER_TOKEN_NON_FINITE));
                }
                let rows = values.len() / hidden;
                let dtype = input.dtype();
                let mut out = vec![0u8; eight_wire_len(rows, hidden, self.scale)];
                let (head, body) = out.split_at_mut(rows * TOKEN_SCALE_LEN);
                head.par_chunks_mut(TOKEN_SCALE_LEN)
                    .zip(body.par_chunks_mut(hidden))
                    .zip(values.par_chunks(hidden))
                    .for_each(|((scale_bytes, codes), row)| {
                        let scale = per_token_scale(absmax(row), format, dtype);
                        scale_bytes.copy_from_slice(&scale.to_le_bytes());
                        for (c, &v) in codes.iter_mut().zip(row) {
                            *c = format.encode(v / scale);
                        }
                    });
                Ok(out)
            }
        }
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        let elements = rows * hidden;
        match self.scale {
            Scale::None => {
                wire::expect_len(wire, eight_wire_len(rows, hidden, self.scale))?;
                let format = self.format;
                let values: Vec<f32> = wire.par_iter().map(|&b| format.decode(b)).collect();
                Ok(f32_to_bytes(&values, dtype))
            }
            Scale::PerToken => {
                wire::expect_len(wire, eight_wire_len(rows, hidden, self.scale))?;
                let mut reader = WireReader::new(wire);
                let mut scales = Vec::with_capacity(rows);
                for _ in 0..rows {
                    scales.push(reader.f32()?);
                }
                let body = reader.take(elements)?;
                reader.finish()?;
                let format = self.format;
                let mut values = vec![0f32; elements];
                values
                    .par_chunks_mut(hidden.max(1))
                    .zip(body.par_chunks(hidden.max(1)))
                    .zip(scales)
                    .for_each(|((out, row), scale)| {
                        for (o, &b) in out.iter_mut().zip(row) {
                            *o = format.decode(b) * scale;
                        }
                    });
                Ok(f32_to_bytes(&values, dtype))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    fn round(codec: &mut dyn Codec, values: &[f32]) -> (Vec<u8>, Vec<f32>) {
        let raw = f32_to_bytes(values, DType::F32);
        let shape = [1, 1, values.len()];
        let view = TensorView::new(DType::F32, &shape, &raw).unwrap();
        let wire = codec.encode(&view).unwrap();
        let out = codec.decode(&wire, &shape, DType::F32).unwrap();
        (wire, bytes_to_f32(&out, DType::F32))
    }

    #[test]
    fn fp16_wire_is_half_bits() {
        let (wire, out) = round(&mut Half { bf16: false }, &[1.0, -2.0, 0.1]);
        assert_eq!(&wire[..4], &[0x00, 0x3C, 0x00, 0xC0]);
        assert_eq!(out[..2], [1.0, -2.0]);
        assert_eq!(out[2], f16::from_f32(0.1).to_f32());
    }

    #[test]
    fn bf16_keeps_massive_activation_range() {
        let (wire, out) = round(&mut Half { bf16: true }, &[24_000.0, 1.0]);
        assert_eq!(wire.len(), 4);
        assert_eq!(out, [24_064.0, 1.0]); // bf16 has 8 bits of mantissa: 24000 -> 24064
    }

    #[test]
    fn e4m3_saturates_and_carries_nan() {
        let mut c = Eight {
            format: Fp8::E4M3,
            scale: Scale::None,
        };
        let (wire, out) = round(&mut c, &[1.0, 10_000.0, f32::NAN, 0.5]);
        assert_eq!(wire.len(), 4);
        assert_eq!(out[0], 1.0);
        assert_eq!(out[1], 448.0);
        assert!(out[2].is_nan());
        assert_eq!(out[3], 0.5);
    }

    #[test]
    fn per_token_scale_maps_absmax_to_format_max() {
        let mut c = Eight {
            format: Fp8::E4M3,
            scale: Scale::PerToken,
        };
        let (wire, out) = round(&mut c, &[24_000.0, -12_000.0, 0.0]);
        assert_eq!(wire.len(), 4 + 3);
        let scale = f32::from_le_bytes([wire[0], wire[1], wire[2], wire[3]]);
        assert_eq!(scale, 24_000.0 / 448.0);
        assert_eq!(out, [24_000.0, -12_000.0, 0.0]);
    }

    #[test]
    fn largest_finite_values_are_the_formats() {
        assert_eq!(Fp8::E4M3.max(), 448.0);
        assert_eq!(Fp8::E5M2.max(), 57344.0);
        // Between 416 and 448 values now round to a code instead of clipping at 416.
        let mut c = Eight {
            format: Fp8::E4M3,
            scale: Scale::None,
        };
        let (_, out) = round(&mut c, &[440.0, 430.0, -1e9, 464.0]);
        assert_eq!(out, [448.0, 416.0, -448.0, 448.0]);
        let mut c = Eight {
            format: Fp8::E5M2,
            scale: Scale::None,
        };
        let (_, out) = round(&mut c, &[57_344.0, 60_000.0, 1e9, 53_000.0]);
        assert_eq!(out, [57_344.0, 57_344.0, 57_344.0, 49_152.0]);
    }

    #[test]
    fn per_token_scale_is_rounded_to_the_model_dtype() {
        // 1000 / 448 = 2.2321428.. -> bf16 2.234375 (TorchAO divides in bf16).
        assert_eq!(per_token_scale(1000.0, Fp8::E4M3, DType::BF16), 2.234375);
        assert_eq!(
            per_token_scale(1000.0, Fp8::E4M3, DType::F32),
            1000.0 / 448.0
        );
        assert_eq!(per_token_scale(0.0, Fp8::E4M3, DType::F32), 1.0);
        // f16: 1e-5 / 448 underflows to 0, so the scale falls back to 1.
        assert_eq!(per_token_scale(1e-5, Fp8::E4M3, DType::F16), 1.0);
    }

    #[test]
    fn per_token_rejects_inf() {
        let mut c = Eight {
            format: Fp8::E5M2,
            scale: Scale::PerToken,
        };
        let raw = f32_to_bytes(&[f32::INFINITY], DType::F32);
        let view = TensorView::new(DType::F32, &[1, 1, 1], &raw).unwrap();
        assert!(c.encode(&view).is_err());
    }

    #[test]
    fn unknown_scale_is_named() {
        let err = new_codec("fp8-e4m3", r#"{"scale": "per-block"}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("per-block"), "{err}");
    }
}
