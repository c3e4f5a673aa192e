//! `mx`: microscaling formats. OCP MX v1.0 (`mxfp4`, `mxfp6-e2m3`, `mxfp6-e3m2`, `mxfp8-e4m3`,
//! `mxfp8-e5m2`: blocks of 32 values sharing a power-of-two E8M0 scale) and NVIDIA's `nvfp4`
//! (blocks of 16 E2M1 values sharing an E4M3 scale, under one f32 scale per tensor). Numerics
//! as TorchAO's `torchao.prototype.mx_formats` (`to_mx` with its default FLOOR scale rule,
//! `nvfp4_quantize` with a per-tensor scale), so `scripts/compare_codecs.py` can check them.
//!
//! Blocks run along the hidden dimension within a token; the last block of a token may be
//! shorter (TorchAO requires the hidden size to be a multiple of the block).
//!
//! MX, per block: `e = exponent(absmax) - emax(element)` (the f32 exponent field, so FLOOR of
//! log2), clamped to [-127, 128]; the scale byte is `e + 127`; values are divided by
//! `max(2^e, 2^-126)`, clamped to the element's largest value and rounded to nearest even
//! (subnormals included). Decoding is `element × 2^(byte - 127)` (255: NaN).
//!
//! NVFP4: `t = absmax(tensor) / (448 × 6)` (1 for an all-zero tensor, where TorchAO divides by
//! zero); per block `s = e4m3(clamp((absmax / 6) / t, 2^-6, 448))`; values are multiplied by
//! `(1 / t) / s`, clamped to ±6 and rounded to E2M1. Decoding is `element × (t × s)`.
//!
//! Wire (little-endian): `nvfp4` starts with `t` as f32; then every block's scale byte (E8M0
//! or E4M3), then every element code, bit-packed LSB-first over the whole tensor (4, 6 or 8
//! bits; for 4 bits, the first value in the low nibble, as TorchAO packs). Decoded values are
//! rounded to the model dtype. Non-finite input is rejected: it would poison its block.
//!
//! A device path (`device.rs`, `mx.cu`) writes the same wire with CUDA kernels.

mod device;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::f32_to_bytes,
    device::DeviceCodec,
    export_plugin,
    fp8::Fp8,
    params,
    quant::finite_values,
    range::{absmax, par_absmax},
    wire::{self, WireReader},
    Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

/// A sign-magnitude minifloat with subnormals and no infinities (the MX element types; e4m3
/// as `float8_e4m3fn`, e5m2 treated as saturating, its top exponent only decoded). The 8-bit
/// types convert through plugin-api's `fp8` (the `float8` crate), the 4- and 6-bit ones here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minifloat {
    pub ebits: u32,
    pub mbits: u32,
}

pub const E2M1: Minifloat = Minifloat { ebits: 2, mbits: 1 };
pub const E2M3: Minifloat = Minifloat { ebits: 2, mbits: 3 };
pub const E3M2: Minifloat = Minifloat { ebits: 3, mbits: 2 };
pub const E4M3: Minifloat = Minifloat { ebits: 4, mbits: 3 };
pub const E5M2: Minifloat = Minifloat { ebits: 5, mbits: 2 };

/// 2^e from its bits, exact for e in -149..=127 (the kernels' `mx_pow2`).
fn pow2(e: i32) -> f32 {
    if e >= -126 {
        f32::from_bits(((e + 127) as u32) << 23)
    } else {
        f32::from_bits(1 << (e + 149))
    }
}

impl Minifloat {
    pub fn bits(self) -> u32 {
        1 + self.ebits + self.mbits
    }

    fn bias(self) -> i32 {
        (1 << (self.ebits - 1)) - 1
    }

    /// The largest finite magnitude's code (e4m3: 0x7E, 0x7F is NaN; e5m2: 0x7B, above is
    /// Inf/NaN; the 4- and 6-bit types use every code).
    pub(crate) fn max_code(self) -> u32 {
        match self {
            E4M3 => 0x7E,
            E5M2 => 0x7B,
            _ => (1 << (self.ebits + self.mbits)) - 1,
        }
    }

    /// Largest finite value: 6, 7.5, 28, 448, 57344.
    pub fn max(self) -> f32 {
        self.decode(self.max_code())
    }

    /// `2^emax`, the largest power of two below `max`: the MX spec's emax_elem.
    pub fn emax(self) -> i32 {
        ((self.max_code() >> self.mbits) as i32) - self.bias()
    }

    /// The OCP FP8 type this is, if it is one.
    fn fp8(self) -> Option<Fp8> {
        match self {
            E4M3 => Some(Fp8::E4M3),
            E5M2 => Some(Fp8::E5M2),
            _ => None,
        }
    }

    /// Round to nearest even, saturating at `max`; the sign of zero is kept.
    pub fn encode(self, x: f32) -> u32 {
        if let Some(fp8) = self.fp8() {
            return u32::from(fp8.encode(x));
        }
        let sign = u32::from(x.is_sign_negative()) << (self.ebits + self.mbits);
        let a = x.abs();
        let max = self.max();
        let code = if a >= max {
            self.max_code()
        } else {
            let min_normal_exp = 1 - self.bias();
            let m = self.mbits as i32;
            if a < pow2(min_normal_exp) {
                // Subnormal grid: steps of 2^(min_normal_exp - mbits); reaching 2^mbits steps
                // is the smallest normal's code, so no special case.
                (a / pow2(min_normal_exp - m)).round_ties_even() as u32
            } else {
                let e = ((a.to_bits() >> 23) & 0xFF) as i32 - 127;
                let steps = (a / pow2(e - m)).round_ties_even() as u32;
                // steps in [2^m, 2^(m+1)]; the top carries into the exponent.
                (((e + self.bias()) as u32) << self.mbits) + steps - (1 << self.mbits)
            }
        };
        sign | code.min(self.max_code())
    }

    pub fn decode(self, code: u32) -> f32 {
        if let Some(fp8) = self.fp8() {
            let v = fp8.decode(code as u8);
            // The kernels' NaN (mx.cu), not the crate's payload: a NaN code (never encoded,
            // but a wire may hold one) decodes to the same bytes on both paths.
            return if v.is_nan() { f32::NAN } else { v };
        }
        let sign = if code >> (self.ebits + self.mbits) & 1 == 1 {
            -1.0
        } else {
            1.0
        };
        let magnitude = code & ((1 << (self.ebits + self.mbits)) - 1);
        let exp = (magnitude >> self.mbits) as i32;
        let mant = (magnitude & ((1 << self.mbits) - 1)) as f32;
        let m = self.mbits as i32;
        sign * if exp == 0 {
            mant * pow2(1 - self.bias() - m)
        } else {
            (pow2(m) + mant) * pow2(exp - self.bias() - m)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// OCP MX: E8M0 power-of-two scale per block.
    E8M0,
    /// NVFP4: E4M3 scale per block under an f32 per-tensor scale.
    Nv,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct MxParams {
    pub block: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct NvParams {
    pub block: usize,
}

impl Default for MxParams {
    fn default() -> Self {
        // OCP MX v1.0's block size.
        MxParams { block: 32 }
    }
}

impl Default for NvParams {
    fn default() -> Self {
        // NVFP4's block size.
        NvParams { block: 16 }
    }
}

/// Codec names with their element type and scaling.
const CODECS: [(&str, Minifloat, Scaling, &str); 6] = [
    (
        "mxfp4",
        E2M1,
        Scaling::E8M0,
        "OCP MXFP4: E2M1 values, E8M0 scale per block",
    ),
    (
        "mxfp6-e2m3",
        E2M3,
        Scaling::E8M0,
        "OCP MXFP6: E2M3 values, E8M0 scale per block",
    ),
    (
        "mxfp6-e3m2",
        E3M2,
        Scaling::E8M0,
        "OCP MXFP6: E3M2 values, E8M0 scale per block",
    ),
    (
        "mxfp8-e4m3",
        E4M3,
        Scaling::E8M0,
        "OCP MXFP8: E4M3 values, E8M0 scale per block",
    ),
    (
        "mxfp8-e5m2",
        E5M2,
        Scaling::E8M0,
        "OCP MXFP8: E5M2 values, E8M0 scale per block",
    ),
    (
        "nvfp4",
        E2M1,
        Scaling::Nv,
        "NVIDIA NVFP4: E2M1 values, E4M3 scale per block, f32 scale per tensor",
    ),
];

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "mx".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Microscaling formats: OCP MXFP4/6/8 and NVIDIA NVFP4".into(),
        codecs: CODECS
            .iter()
            .map(|&(name, _, scaling, description)| match scaling {
                Scaling::E8M0 => CodecInfo::new::<MxParams>(
                    name,
                    description,
                    &[("block", "values per scale along hidden (OCP MX: 32)")],
                ),
                Scaling::Nv => CodecInfo::new::<NvParams>(
                    name,
                    description,
                    &[("block", "values per scale along hidden (NVFP4: 16)")],
                ),
            })
            .collect(),
    }
}

/// A codec name and its params, checked: element, scaling, block.
fn parse(name: &str, params_json: &str) -> Result<(Minifloat, Scaling, usize), CodecError> {
    let Some(&(_, element, scaling, _)) = CODECS.iter().find(|c| c.0 == name) else {
        return Err(info().unknown_codec(name));
    };
    let block = match scaling {
        Scaling::E8M0 => params::parse::<MxParams>(name, params_json)?.block,
        Scaling::Nv => params::parse::<NvParams>(name, params_json)?.block,
    };
    if !(1..=1 << 24).contains(&block) {
        return Err(CodecError::new(format!(
            "`block` must be in 1..={}, got {block}",
            1 << 24
        )));
    }
    Ok((element, scaling, block))
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    let (element, scaling, block) = parse(name, params_json)?;
    Ok(Box::new(Mx {
        element,
        scaling,
        block,
    }))
}

pub fn new_device_codec(
    name: &str,
    params_json: &str,
) -> Result<Option<Box<dyn DeviceCodec>>, CodecError> {
    let (element, scaling, block) = parse(name, params_json)?;
    Ok(Some(Box::new(device::MxOnDevice::new(
        element, scaling, block,
    ))))
}

export_plugin!(info, new_codec, new_device_codec);

pub struct Mx {
    pub element: Minifloat,
    pub scaling: Scaling,
    pub block: usize,
}

/// `torch.finfo(torch.float8_e4m3fn).tiny`: NVFP4's smallest block scale.
const E4M3_TINY: f32 = 0.015625;

impl Mx {
    fn header(&self) -> usize {
        match self.scaling {
            Scaling::E8M0 => 0,
            Scaling::Nv => 4,
        }
    }

    pub(crate) fn wire_len(&self, rows: usize, hidden: usize) -> Option<usize> {
        let blocks = rows.checked_mul(hidden.div_ceil(self.block))?;
        let codes = wire::packed_len(rows.checked_mul(hidden)?, self.element.bits());
        self.header().checked_add(blocks)?.checked_add(codes)
    }

    /// MX: one block's scale byte and the f32 divisor its values are scaled by.
    fn e8m0(&self, block: &[f32]) -> (u8, f32) {
        let amax = absmax(block);
        let e = ((amax.to_bits() >> 23) & 0xFF) as i32 - 127 - self.element.emax();
        let biased = (e.clamp(-127, 128) + 127) as u32;
        let scale = f32::from_bits(biased << 23).max(f32::MIN_POSITIVE);
        (biased as u8, scale)
    }
}

impl Codec for Mx {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = finite_values(input)?;
        let hidden = input.hidden().max(1);
        let element = self.element;
        let per_row = hidden.div_ceil(self.block);
        let mut out = Vec::new();
        let tensor_scale = match self.scaling {
            Scaling::E8M0 => 1.0,
            Scaling::Nv => {
                let amax = par_absmax(&values);
                let t = if amax > 0.0 {
                    amax / (Fp8::E4M3.max() * E2M1.max())
                } else {
                    1.0
                };
                out.extend_from_slice(&t.to_le_bytes());
                t
            }
        };
        let mut scales = vec![0u8; values.len().div_ceil(hidden) * per_row];
        let mut codes = vec![0u8; values.len()];
        scales
            .par_chunks_mut(per_row)
            .zip(codes.par_chunks_mut(hidden))
            .zip(values.par_chunks(hidden))
            .for_each(|((scales, codes), row)| {
                for ((s, codes), block) in scales
                    .iter_mut()
                    .zip(codes.chunks_mut(self.block))
                    .zip(row.chunks(self.block))
                {
                    match self.scaling {
                        Scaling::E8M0 => {
                            let (byte, scale) = self.e8m0(block);
                            *s = byte;
                            for (c, &x) in codes.iter_mut().zip(block) {
                                *c = element.encode(x / scale) as u8;
                            }
                        }
                        Scaling::Nv => {
                            let amax = absmax(block);
                            let scaled = (amax / E2M1.max()) / tensor_scale;
                            let byte = E4M3.encode(scaled.clamp(E4M3_TINY, Fp8::E4M3.max()));
                            *s = byte as u8;
                            let recip = (1.0 / tensor_scale) / E4M3.decode(byte);
                            for (c, &x) in codes.iter_mut().zip(block) {
                                let v = (x * recip).clamp(-E2M1.max(), E2M1.max());
                                *c = E2M1.encode(v) as u8;
                            }
                        }
                    }
                }
            });
        out.extend_from_slice(&scales);
        out.extend_from_slice(&wire::pack_codes(&codes, element.bits()));
        Ok(out)
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let (rows, hidden) = wire::rows_and_hidden(shape)?;
        let hidden = hidden.max(1);
        let expected = self
            .wire_len(rows, hidden)
            .ok_or_else(|| CodecError::new("wire size overflows usize"))?;
        wire::expect_len(wire, expected)?;
        let per_row = hidden.div_ceil(self.block);
        let mut reader = WireReader::new(wire);
        let tensor_scale = match self.scaling {
            Scaling::E8M0 => 1.0,
            Scaling::Nv => reader.f32()?,
        };
        let scales = reader.take(rows * per_row)?;
        let bits = self.element.bits();
        let packed = reader.take(wire::packed_len(rows * hidden, bits))?;
        reader.finish()?;
        let mut values = vec![0f32; rows * hidden];
        values
            .par_chunks_mut(hidden)
            .zip(scales.par_chunks(per_row))
            .enumerate()
            .for_each(|(r, (out, scales))| {
                for (b, (out, &byte)) in out.chunks_mut(self.block).zip(scales).enumerate() {
                    let scale = match self.scaling {
                        Scaling::E8M0 if byte == 255 => f32::NAN,
                        Scaling::E8M0 => pow2(i32::from(byte) - 127),
                        Scaling::Nv => tensor_scale * E4M3.decode(u32::from(byte)),
                    };
                    let start = r * hidden + b * self.block;
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = self
                            .element
                            .decode(wire::read_code(packed, start + j, bits))
                            * scale;
                    }
                }
            });
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitbench_plugin_api::convert::bytes_to_f32;

    #[test]
    fn element_ranges() {
        assert_eq!(E2M1.max(), 6.0);
        assert_eq!(E2M3.max(), 7.5);
        assert_eq!(E3M2.max(), 28.0);
        assert_eq!(E4M3.max(), 448.0);
        assert_eq!(E5M2.max(), 57344.0);
        assert_eq!([E2M1.emax(), E2M3.emax(), E3M2.emax()], [2, 2, 4]);
        assert_eq!([E4M3.emax(), E5M2.emax()], [8, 15]);
        let e2m1: Vec<f32> = (0..8).map(|c| E2M1.decode(c)).collect();
        assert_eq!(e2m1, [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
    }

    #[test]
    fn e2m1_rounds_to_nearest_even_and_saturates() {
        // 0.25 ties 0 / 0.5 -> 0; 0.75 ties 0.5 / 1 -> 1 (even mantissa); 2.5 -> 2; 5 -> 4;
        // 5.5 -> 6; 100 -> 6; -0.1 -> -0.
        let cases = [
            (0.25, 0.0),
            (0.75, 1.0),
            (2.5, 2.0),
            (5.0, 4.0),
            (5.5, 6.0),
            (100.0, 6.0),
        ];
        for (x, y) in cases {
            assert_eq!(E2M1.decode(E2M1.encode(x)), y, "{x}");
        }
        assert_eq!(E2M1.encode(-0.1), 0b1000);
    }

    #[test]
    fn fp8_elements_match_a_brute_force_reference() {
        // Nearest-even by exhaustive search over the codes, on values clamped to the range.
        for i in -3000..3000 {
            let x = i as f32 * 0.173 * (1.0 + (i as f32).abs() / 17.0);
            let ours = E4M3.encode(x.clamp(-448.0, 448.0));
            let theirs = float8_e4m3(x.clamp(-448.0, 448.0));
            assert_eq!(ours, theirs, "e4m3 {x}");
            assert_eq!(E4M3.decode(ours), f32_of_e4m3(theirs), "{x}");
        }
        // Reference codes, by hand: 448 = 0x7E, 1 = 0x38, 2^-9 (smallest subnormal) = 0x01.
        assert_eq!(E4M3.encode(448.0), 0x7E);
        assert_eq!(E4M3.encode(1.0), 0x38);
        assert_eq!(E4M3.encode(pow2(-9)), 0x01);
        assert_eq!(E5M2.encode(57344.0), 0x7B);
        assert_eq!(E5M2.encode(1.0), 0x3C);
    }

    /// e4m3 by the textbook definition (bias 7, subnormals below 2^-6), nearest-even by search.
    fn float8_e4m3(x: f32) -> u32 {
        let sign = if x.is_sign_negative() { 0x80 } else { 0 };
        let a = x.abs();
        let mut best = 0u32;
        for c in 0..0x7F {
            let (d, e) = ((f32_of_e4m3(c) - a).abs(), (f32_of_e4m3(best) - a).abs());
            if d < e || (d == e && c % 2 == 0 && best % 2 == 1) {
                best = c;
            }
        }
        sign | best
    }

    fn f32_of_e4m3(c: u32) -> f32 {
        let (e, m) = ((c >> 3) & 0xF, (c & 7) as f32);
        let s = if c & 0x80 != 0 { -1.0 } else { 1.0 };
        if (c & 0x7F) == 0x7F {
            return f32::NAN;
        }
        s * if e == 0 {
            m / 8.0 * pow2(-6)
        } else {
            (1.0 + m / 8.0) * pow2(e as i32 - 7)
        }
    }

    fn round(name: &str, values: &[f32], hidden: usize) -> (Vec<u8>, Vec<f32>) {
        let mut c = new_codec(name, "{}").unwrap();
        let raw = f32_to_bytes(values, DType::F32);
        let shape = [1, values.len() / hidden, hidden];
        let view = TensorView::new(DType::F32, &shape, &raw).unwrap();
        let wire = c.encode(&view).unwrap();
        let out = c.decode(&wire, &shape, DType::F32).unwrap();
        (wire, bytes_to_f32(&out, DType::F32))
    }

    #[test]
    fn mxfp4_block_by_hand() {
        // absmax 24: exponent 4, minus emax 2 -> scale 2^2 = 4, byte 129. Values / 4:
        // [6, -0.75, 0.1, 2.6] -> E2M1 [6, -1 (tie to even), 0, 3] -> codes [7, 0xA, 0, 5].
        let mut v = vec![0f32; 32];
        v[..4].copy_from_slice(&[24.0, -3.0, 0.4, 10.4]);
        let (wire, out) = round("mxfp4", &v, 32);
        assert_eq!(wire.len(), 1 + 16);
        assert_eq!(wire[0], 129);
        assert_eq!(&wire[1..3], &[0xA7, 0x50]);
        assert_eq!(&out[..4], &[24.0, -4.0, 0.0, 12.0]);
    }

    #[test]
    fn nvfp4_by_hand() {
        // One block of 16, absmax 6 -> t = 6 / 2688; block scale (6 / 6) / t = 448 -> e4m3 448.
        // recip = (1 / t) / 448 = 1 (to f32 rounding) -> values as E2M1 directly.
        let mut v = vec![0f32; 16];
        v[..3].copy_from_slice(&[6.0, -1.5, 0.3]);
        let (wire, out) = round("nvfp4", &v, 16);
        assert_eq!(wire.len(), 4 + 1 + 8);
        assert_eq!(
            f32::from_le_bytes([wire[0], wire[1], wire[2], wire[3]]),
            6.0 / 2688.0
        );
        assert_eq!(wire[4], 0x7E);
        assert!((out[0] - 6.0).abs() < 1e-5 && (out[1] + 1.5).abs() < 1e-5);
        assert!((out[2] - 0.5).abs() < 1e-5, "{}", out[2]);
    }

    #[test]
    fn all_zero_blocks() {
        let (wire, out) = round("mxfp8-e4m3", &[0.0; 40], 40);
        assert_eq!(&wire[..2], &[0, 0]);
        assert_eq!(out, [0.0; 40]);
        let (_, out) = round("nvfp4", &[0.0; 16], 16);
        assert_eq!(out, [0.0; 16]);
    }
}
