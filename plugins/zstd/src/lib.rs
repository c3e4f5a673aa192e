//! `zstd`: lossless zstd of the hidden state's bytes, optionally byte-shuffled (bytes of equal
//! significance grouped, which helps on floats) and/or cast to f16 first (then lossy).
//!
//! Wire: one zstd frame. Decoding never allocates more than the shape's byte count: a frame
//! that decompresses to more is an error.

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::{bytes_to_f32, f32_to_bytes},
    export_plugin, params, wire, Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precast {
    #[default]
    None,
    F16,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ZstdParams {
    pub level: i32,
    pub shuffle: bool,
    pub cast: Precast,
}

impl Default for ZstdParams {
    fn default() -> Self {
        ZstdParams {
            level: 3,
            shuffle: false,
            cast: Precast::None,
        }
    }
}

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "zstd".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "zstd compression of the raw bytes, optionally shuffled or cast to f16".into(),
        codecs: vec![CodecInfo::new::<ZstdParams>(
            "zstd",
            "lossless zstd (lossy only with cast = \"f16\")",
            &[
                ("level", "zstd level, 1..=22"),
                ("shuffle", "group bytes by significance before compressing"),
                ("cast", "\"none\" or \"f16\": cast before compressing"),
            ],
        )],
    }
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    match name {
        "zstd" => {
            let p: ZstdParams = params::parse(name, params_json)?;
            if !(1..=22).contains(&p.level) {
                return Err(CodecError::new(format!(
                    "`level` must be in 1..=22, got {}",
                    p.level
                )));
            }
            Ok(Box::new(Zstd { params: p }))
        }
        other => Err(info().unknown_codec(other)),
    }
}

export_plugin!(info, new_codec);

pub struct Zstd {
    pub params: ZstdParams,
}

/// Byte `b` of element `i` goes to `b * n + i`.
fn shuffle(bytes: &[u8], width: usize) -> Vec<u8> {
    let n = bytes.len() / width;
    let mut out = vec![0u8; bytes.len()];
    for (i, element) in bytes.chunks_exact(width).enumerate() {
        for (b, &byte) in element.iter().enumerate() {
            out[b * n + i] = byte;
        }
    }
    out
}

fn unshuffle(bytes: &[u8], width: usize) -> Vec<u8> {
    let n = bytes.len() / width;
    let mut out = vec![0u8; bytes.len()];
    for (i, element) in out.chunks_exact_mut(width).enumerate() {
        for (b, byte) in element.iter_mut().enumerate() {
            *byte = bytes[b * n + i];
        }
    }
    out
}

impl Zstd {
    fn stored_dtype(&self, dtype: DType) -> DType {
        match self.params.cast {
            Precast::None => dtype,
            Precast::F16 => DType::F16,
        }
    }
}

impl Codec for Zstd {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let stored = self.stored_dtype(input.dtype());
        let mut bytes = if stored == input.dtype() {
            input.bytes().to_vec()
        } else {
            f32_to_bytes(&input.to_f32(), stored)
        };
        if self.params.shuffle {
            bytes = shuffle(&bytes, stored.size_in_bytes());
        }
        zstd::bulk::compress(&bytes, self.params.level)
            .map_err(|e| CodecError::new(format!("zstd compression failed: {e}")))
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let stored = self.stored_dtype(dtype);
        let expected = wire::raw_len(shape, stored)?;
        let mut bytes = zstd::bulk::decompress(wire, expected)
            .map_err(|e| CodecError::new(format!("zstd frame is corrupt or too large: {e}")))?;
        if bytes.len() != expected {
            return Err(CodecError::new(format!(
                "zstd frame holds {} bytes, the shape needs {expected}",
                bytes.len()
            )));
        }
        if self.params.shuffle {
            bytes = unshuffle(&bytes, stored.size_in_bytes());
        }
        if stored == dtype {
            Ok(bytes)
        } else {
            Ok(f32_to_bytes(&bytes_to_f32(&bytes, stored), dtype))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_groups_bytes_by_significance() {
        let bytes = [1, 2, 3, 4, 5, 6];
        assert_eq!(shuffle(&bytes, 2), [1, 3, 5, 2, 4, 6]);
        assert_eq!(unshuffle(&shuffle(&bytes, 2), 2), bytes);
    }

    #[test]
    fn lossless_and_compresses_zeros() {
        let mut c = Zstd {
            params: ZstdParams::default(),
        };
        let raw = vec![0u8; 4096 * 4];
        let shape = [1, 4, 1024];
        let wire = c
            .encode(&TensorView::new(DType::F32, &shape, &raw).unwrap())
            .unwrap();
        assert!(wire.len() < 100, "{}", wire.len());
        assert_eq!(c.decode(&wire, &shape, DType::F32).unwrap(), raw);
    }

    #[test]
    fn frame_larger_than_shape_is_refused() {
        let mut c = Zstd {
            params: ZstdParams::default(),
        };
        let raw = vec![7u8; 64];
        let wire = c
            .encode(&TensorView::new(DType::F32, &[1, 1, 16], &raw).unwrap())
            .unwrap();
        assert!(c.decode(&wire, &[1, 1, 8], DType::F32).is_err());
    }
}
