//! `topk`: per token, keep the k values of largest magnitude; the rest become 0.
//!
//! Wire (little-endian): k = clamp(ceil(fraction × hidden), 1, hidden) per token, known to both
//! sides from the shape. First every token's k indices, ascending, bit-packed with
//! ceil(log2(hidden)) bits each (all tokens in one stream, padded to a whole byte), then every
//! kept value as f16. Non-finite input is rejected (NaN has no magnitude order).

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::f32_to_bytes,
    export_plugin, params,
    wire::{self, WireReader},
    Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct TopKParams {
    fraction: f64,
}

impl Default for TopKParams {
    fn default() -> Self {
        TopKParams { fraction: 0.1 }
    }
}

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "topk".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Top-k sparsification per token: bit-packed indices + f16 values".into(),
        codecs: vec![CodecInfo::new::<TopKParams>(
            "topk",
            "keep the largest-magnitude fraction of each token's values",
            &[("fraction", "share of values kept per token, in (0, 1]")],
        )],
    }
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    match name {
        "topk" => {
            let p: TopKParams = params::parse(name, params_json)?;
            if !(p.fraction > 0.0 && p.fraction <= 1.0) {
                return Err(CodecError::new(format!(
                    "`fraction` must be in (0, 1], got {}",
                    p.fraction
                )));
            }
            Ok(Box::new(TopK {
                fraction: p.fraction,
            }))
        }
        other => Err(info().unknown_codec(other)),
    }
}

export_plugin!(info, new_codec);

pub struct TopK {
    pub fraction: f64,
}

impl TopK {
    pub fn k(&self, hidden: usize) -> usize {
        ((self.fraction * hidden as f64).ceil() as usize).clamp(hidden.min(1), hidden)
    }
}

impl Codec for TopK {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = input.to_f32();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(CodecError::new(
                "top-k cannot rank NaN/Inf in the hidden state",
            ));
        }
        let hidden = input.hidden();
        let k = self.k(hidden);
        let bits = wire::index_bits(hidden);
        let mut indices = Vec::with_capacity(values.len() / hidden.max(1) * k);
        let mut order: Vec<u32> = Vec::with_capacity(hidden);
        for row in values.chunks(hidden.max(1)) {
            order.clear();
            order.extend(0..hidden as u32);
            // Largest magnitude first; ties broken by index so encode is deterministic.
            order.select_nth_unstable_by(
                k.saturating_sub(1).min(hidden.saturating_sub(1)),
                |&a, &b| {
                    row[b as usize]
                        .abs()
                        .total_cmp(&row[a as usize].abs())
                        .then(a.cmp(&b))
                },
            );
            let kept = &mut order[..k];
            kept.sort_unstable();
            indices.extend_from_slice(kept);
        }
        let mut out = Vec::with_capacity(wire::packed_len(indices.len(), bits) + indices.len() * 2);
        wire::pack_bits(indices.iter().copied(), bits, &mut out);
        for (row_index, kept) in indices.chunks(k.max(1)).enumerate() {
            let row = &values[row_index * hidden..];
            for &i in kept {
                wire::put_f16(&mut out, row[i as usize]);
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
        let k = self.k(hidden);
        let bits = wire::index_bits(hidden);
        let kept = rows * k;
        wire::expect_len(wire, wire::packed_len(kept, bits) + kept * 2)?;
        let mut reader = WireReader::new(wire);
        let mut indices = Vec::new();
        wire::unpack_bits(
            reader.take(wire::packed_len(kept, bits))?,
            kept,
            bits,
            &mut indices,
        )?;
        let mut values = vec![0f32; rows * hidden];
        for (row_index, row_indices) in indices.chunks(k.max(1)).enumerate() {
            for &i in row_indices {
                let i = i as usize;
                if i >= hidden {
                    return Err(CodecError::new(format!(
                        "wire index {i} is outside hidden size {hidden}"
                    )));
                }
                values[row_index * hidden + i] = reader.f16()?;
            }
        }
        reader.finish()?;
        Ok(f32_to_bytes(&values, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitbench_plugin_api::convert::bytes_to_f32;

    #[test]
    fn keeps_the_largest_by_hand() {
        // hidden 4, fraction 0.5 -> k 2; largest magnitudes are -5 (index 1) and 3 (index 3).
        let mut c = TopK { fraction: 0.5 };
        let raw = f32_to_bytes(&[1.0, -5.0, 0.5, 3.0], DType::F32);
        let shape = [1, 1, 4];
        let wire = c
            .encode(&TensorView::new(DType::F32, &shape, &raw).unwrap())
            .unwrap();
        // 2 indices × 2 bits = 1 byte: 1 | 3 << 2 = 0b1101, then two f16 values.
        assert_eq!(wire.len(), 1 + 4);
        assert_eq!(wire[0], 0b1101);
        let out = bytes_to_f32(&c.decode(&wire, &shape, DType::F32).unwrap(), DType::F32);
        assert_eq!(out, [0.0, -5.0, 0.0, 3.0]);
    }

    #[test]
    fn k_is_at_least_one() {
        assert_eq!(TopK { fraction: 0.001 }.k(576), 1);
        assert_eq!(TopK { fraction: 0.1 }.k(576), 58);
        assert_eq!(TopK { fraction: 1.0 }.k(576), 576);
        assert_eq!(TopK { fraction: 0.5 }.k(0), 0);
    }

    #[test]
    fn out_of_range_index_is_an_error() {
        let mut c = TopK { fraction: 0.5 };
        // hidden 3 -> 2-bit indices; index 3 is out of range.
        let wire = [0b11_11u8, 0, 0, 0, 0];
        assert!(c.decode(&wire, &[1, 1, 3], DType::F32).is_err());
    }
}
