//! `rotate`: rotation before quantization (the QuaRot / SpinQuant idea). Every token's hidden
//! vector is multiplied by a randomized orthonormal Hadamard matrix, `H · diag(signs) / √n`,
//! then quantized with symmetric intN; decoding dequantizes and applies the inverse rotation.
//! The rotation spreads a massive activation over all channels of its Hadamard block, so the
//! other values no longer share a scale with a value 10^4 times their size.
//!
//! The hidden size is cut into power-of-two Hadamard blocks, largest first, following its
//! binary digits (576 = 512 + 64, 5120 = 4096 + 1024); a block of one is the identity. The
//! ±1 signs, one per channel, are the low bits of splitmix64 outputs from `seed`: channel c
//! takes bit (c mod 64) of output (c / 64), 1 meaning −1.
//!
//! Wire (little-endian): the seed (u64), then the rotated values in `quant`'s symmetric
//! blockwise format ([`splitbench_plugin_api::quant`]: f16 absmax scale per block of `block`
//! values along the hidden dimension, or per token with `block = 0`; `bits`-bit codes
//! bit-packed). Non-finite input is rejected: the rotation would spread it over its block.
//!
//! A device path (`device.rs`, `rotate.cu`) writes the same wire with CUDA kernels.

mod device;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::f32_to_bytes,
    device::DeviceCodec,
    export_plugin, params,
    quant::{blocks_wire_len, decode_blocks, encode_blocks, finite_values, BlockParams},
    wire, Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RotateParams {
    pub bits: u32,
    pub block: usize,
    pub seed: u64,
}

impl Default for RotateParams {
    fn default() -> Self {
        // QuaRot's setting: 4-bit, one scale per token.
        RotateParams {
            bits: 4,
            block: 0,
            seed: 0,
        }
    }
}

const DOCS: &[(&str, &str)] = &[
    ("bits", "bits per value, 2..=8"),
    (
        "block",
        "values per f16 scale after the rotation, along hidden; 0 = one scale per token",
    ),
    ("seed", "seed of the random signs, sent in the wire header"),
];

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "rotate".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Randomized Hadamard rotation, then symmetric intN (QuaRot-style)".into(),
        codecs: vec![CodecInfo::new::<RotateParams>(
            "hadamard-intn",
            "randomized Hadamard over hidden (power-of-two blocks), then symmetric intN per \
             token or per block, f16 scales",
            DOCS,
        )],
    }
}

/// The codec for a name and its params, checked.
fn parse(name: &str, params_json: &str) -> Result<Rotate, CodecError> {
    if name != "hadamard-intn" {
        return Err(info().unknown_codec(name));
    }
    let p: RotateParams = params::parse(name, params_json)?;
    if !(2..=8).contains(&p.bits) {
        return Err(CodecError::new(format!(
            "`bits` must be in 2..=8, got {}",
            p.bits
        )));
    }
    if p.block > 1 << 24 {
        return Err(CodecError::new(format!(
            "`block` must be at most {}, got {}",
            1 << 24,
            p.block
        )));
    }
    Ok(Rotate { p })
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    Ok(Box::new(parse(name, params_json)?))
}

pub fn new_device_codec(
    name: &str,
    params_json: &str,
) -> Result<Option<Box<dyn DeviceCodec>>, CodecError> {
    Ok(Some(Box::new(device::RotateOnDevice::new(parse(
        name,
        params_json,
    )?))))
}

export_plugin!(info, new_codec, new_device_codec);

/// splitmix64 (Steele, Lea, Flood 2014): a fixed, documented generator for the signs.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One ±1 per channel.
pub fn signs(seed: u64, hidden: usize) -> Vec<f32> {
    let mut state = seed;
    let mut word = 0;
    (0..hidden)
        .map(|c| {
            if c % 64 == 0 {
                word = splitmix64(&mut state);
            }
            if (word >> (c % 64)) & 1 == 1 {
                -1.0
            } else {
                1.0
            }
        })
        .collect()
}

/// The power-of-two blocks of `hidden`, largest first.
pub fn hadamard_blocks(hidden: usize) -> Vec<usize> {
    (0..usize::BITS)
        .rev()
        .map(|b| 1usize << b)
        .filter(|&p| hidden & p != 0)
        .collect()
}

/// In-place fast Walsh–Hadamard transform (Sylvester order), scaled by 1/√n: orthonormal and
/// its own inverse.
fn fwht(v: &mut [f32]) {
    let n = v.len();
    let mut h = 1;
    while h < n {
        for start in (0..n).step_by(2 * h) {
            for i in start..start + h {
                let (a, b) = (v[i], v[i + h]);
                v[i] = a + b;
                v[i + h] = a - b;
            }
        }
        h *= 2;
    }
    let norm = 1.0 / (n as f32).sqrt();
    v.iter_mut().for_each(|x| *x *= norm);
}

/// Rotates one token: signs, then a Hadamard transform per block.
fn rotate(row: &mut [f32], signs: &[f32], blocks: &[usize]) {
    row.iter_mut().zip(signs).for_each(|(x, s)| *x *= s);
    let mut start = 0;
    for &n in blocks {
        fwht(&mut row[start..start + n]);
        start += n;
    }
}

/// The inverse of [`rotate`]: the transforms (self-inverse), then the signs.
fn unrotate(row: &mut [f32], signs: &[f32], blocks: &[usize]) {
    let mut start = 0;
    for &n in blocks {
        fwht(&mut row[start..start + n]);
        start += n;
    }
    row.iter_mut().zip(signs).for_each(|(x, s)| *x *= s);
}

#[derive(Debug, Clone, Copy)]
pub struct Rotate {
    pub p: RotateParams,
}

/// Bytes of the seed (u64) that starts the wire.
const SEED_LEN: usize = 8;

impl Rotate {
    /// Bytes of the wire for `rows × hidden` values (`hidden` at least 1), on either path.
    pub(crate) fn wire_len(&self, rows: usize, hidden: usize) -> usize {
        SEED_LEN + blocks_wire_len(rows, hidden, self.block_params(hidden), false)
    }

    pub(crate) fn block_params(&self, hidden: usize) -> BlockParams {
        BlockParams {
            bits: self.p.bits,
            block: if self.p.block == 0 {
                hidden.max(1)
            } else {
                self.p.block
            },
        }
    }
}

impl Codec for Rotate {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let mut values = finite_values(input)?;
        let hidden = input.hidden().max(1);
        let (signs, blocks) = (signs(self.p.seed, hidden), hadamard_blocks(hidden));
        values
            .par_chunks_mut(hidden)
            .for_each(|row| rotate(row, &signs, &blocks));
        let mut out = Vec::with_capacity(self.wire_len(values.len() / hidden, hidden));
        out.extend_from_slice(&self.p.seed.to_le_bytes());
        out.extend(encode_blocks(
            &values,
            hidden,
            self.block_params(hidden),
            false,
        ));
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
        let params = self.block_params(hidden);
        wire::expect_len(wire, self.wire_len(rows, hidden))?;
        let (seed, body) = wire.split_at(SEED_LEN);
        let seed = u64::from_le_bytes([
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
        ]);
        let mut values = decode_blocks(body, rows, hidden, params, false)?;
        let (signs, blocks) = (signs(seed, hidden), hadamard_blocks(hidden));
        values
            .par_chunks_mut(hidden)
            .for_each(|row| unrotate(row, &signs, &blocks));
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitbench_plugin_api::convert::bytes_to_f32;

    #[test]
    fn blocks_follow_the_binary_digits() {
        assert_eq!(hadamard_blocks(576), [512, 64]);
        assert_eq!(hadamard_blocks(5120), [4096, 1024]);
        assert_eq!(hadamard_blocks(7), [4, 2, 1]);
        assert_eq!(hadamard_blocks(1024), [1024]);
    }

    #[test]
    fn hadamard_of_four_by_hand() {
        // H4 [1, 0, 0, 0] / 2 = [0.5; 4]; H4 [1, 1, 1, 1] / 2 = [2, 0, 0, 0].
        let mut v = [1.0, 0.0, 0.0, 0.0];
        fwht(&mut v);
        assert_eq!(v, [0.5; 4]);
        let mut v = [1.0; 4];
        fwht(&mut v);
        assert_eq!(v, [2.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn splitmix64_reference_values() {
        // First outputs for seed 0 (the published reference sequence).
        let mut s = 0;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
        let signs = signs(0, 4);
        // 0xE220A8397B1DCDAF ends in binary ...1111: all four channels flip.
        assert_eq!(signs, [-1.0; 4]);
    }

    #[test]
    fn rotation_is_inverted() {
        let hidden = 576;
        let x: Vec<f32> = (0..hidden)
            .map(|i| ((i * 7919) % 113) as f32 - 56.0)
            .collect();
        let (s, b) = (signs(42, hidden), hadamard_blocks(hidden));
        let mut y = x.clone();
        rotate(&mut y, &s, &b);
        let norm = |v: &[f32]| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>();
        assert!((norm(&x) - norm(&y)).abs() / norm(&x) < 1e-5);
        unrotate(&mut y, &s, &b);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn a_massive_value_is_spread_over_its_block() {
        // A spike of 20000 in a 512-block becomes ±20000/√512 ≈ ±883.9 in every channel.
        let mut row = vec![0f32; 512];
        row[5] = 20_000.0;
        rotate(&mut row, &signs(1, 512), &hadamard_blocks(512));
        for v in row {
            assert!((v.abs() - 20_000.0 / 512f32.sqrt()).abs() < 1e-2, "{v}");
        }
    }

    #[test]
    fn round_trip_and_wire_size() {
        let hidden = 576;
        let x: Vec<f32> = (0..2 * hidden)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
            .collect();
        let raw = f32_to_bytes(&x, DType::F32);
        let shape = [1, 2, hidden];
        let view = TensorView::new(DType::F32, &shape, &raw).unwrap();
        let mut c = new_codec("hadamard-intn", r#"{"bits": 8, "seed": 7}"#).unwrap();
        let wire = c.encode(&view).unwrap();
        // seed, one f16 scale per token, one byte per value.
        assert_eq!(wire.len(), 8 + 2 * 2 + 2 * hidden);
        assert_eq!(&wire[..8], &7u64.to_le_bytes());
        let y = bytes_to_f32(&c.decode(&wire, &shape, DType::F32).unwrap(), DType::F32);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 0.05, "{a} vs {b}");
        }
    }
}
