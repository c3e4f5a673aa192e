//! `blockmean`: the prototype's experimental BlockRowColMean. Each sequence of the
//! `[batch, tokens, hidden]` hidden state is tiled into blocks of `token_block` tokens ×
//! `feat_block` channels (the last ones may be smaller); a block travels as its row means (one
//! per token), its column means (one per channel) and its grand mean, and is rebuilt as the
//! additive two-way model `x̂[i][j] = row[i] + col[j] - grand` (the least-squares fit of
//! `a[i] + b[j]` to the block), or with `model = "product"` as the rank-one independence model
//! `x̂[i][j] = row[i] × col[j] / grand` (0 where that is not finite, as for a zero grand mean). The prototype's source is
//! not in this repository; both readings of "row means, column means and grand mean" are here.
//! A block holding a massive activation spreads it over its whole row and column, which is
//! what makes this codec a poor one on real hidden states (docs/codecs.md).
//!
//! `permute` reorders before tiling so that similar rows or columns share a block: `features`
//! sorts the channels by their mean over every token of the tensor (one permutation for the
//! tensor), `tokens` sorts each sequence's tokens by their mean over the channels, `both` does
//! the first then the second. Sorting is ascending and stable (ties keep their order); the
//! permutations travel in the wire.
//!
//! Wire (little-endian):
//! - with `features`/`both`: `hidden` channel indices, bit-packed LSB-first with
//!   ceil(log2(hidden)) bits each (position k holds the channel placed at k);
//! - with `tokens`/`both`: per sequence `tokens` token indices, likewise with ceil(log2(tokens))
//!   bits, all sequences packed in one stream;
//! - then per sequence, per block (token blocks outer, channel blocks inner): its row means,
//!   its column means and its grand mean, in the model dtype.
//!
//! Means are summed in f64 and rounded once; decoding is `row + col - grand` in f32, rounded to
//! the model dtype. Non-finite input is rejected: it would poison a whole block.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::{bytes_to_f32, f32_to_bytes},
    export_plugin, params,
    quant::finite_values,
    wire::{self, WireReader},
    Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permute {
    #[default]
    None,
    Features,
    Tokens,
    Both,
}

impl Permute {
    fn features(self) -> bool {
        matches!(self, Permute::Features | Permute::Both)
    }
    fn tokens(self) -> bool {
        matches!(self, Permute::Tokens | Permute::Both)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    #[default]
    Additive,
    Product,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct BlockMeanParams {
    pub token_block: usize,
    pub feat_block: usize,
    pub permute: Permute,
    pub model: Model,
}

impl Default for BlockMeanParams {
    fn default() -> Self {
        // 8 × 8: 17 means per 64 values, about a quarter of the raw size.
        BlockMeanParams {
            token_block: 8,
            feat_block: 8,
            permute: Permute::None,
            model: Model::Additive,
        }
    }
}

const DOCS: &[(&str, &str)] = &[
    ("token_block", "tokens per block"),
    ("feat_block", "channels per block"),
    (
        "permute",
        "\"none\", \"features\" (channels sorted by mean), \"tokens\" (tokens sorted by mean \
         per sequence) or \"both\"",
    ),
    (
        "model",
        "\"additive\" (row + col - grand) or \"product\" (row × col / grand)",
    ),
];

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "blockmean".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "The prototype's BlockRowColMean: blocks sent as row, column and grand means"
            .into(),
        codecs: vec![CodecInfo::new::<BlockMeanParams>(
            "block-mean",
            "token_block × feat_block blocks as row means + column means - grand mean, in the \
             model dtype; optional permutations by mean",
            DOCS,
        )],
    }
}

/// Largest block side accepted: far above any sequence or hidden size.
const MAX_BLOCK: usize = 1 << 24;

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    if name != "block-mean" {
        return Err(info().unknown_codec(name));
    }
    let p: BlockMeanParams = params::parse(name, params_json)?;
    for (field, v) in [("token_block", p.token_block), ("feat_block", p.feat_block)] {
        if !(1..=MAX_BLOCK).contains(&v) {
            return Err(CodecError::new(format!(
                "`{field}` must be in 1..={MAX_BLOCK}, got {v}"
            )));
        }
    }
    Ok(Box::new(BlockMean { p }))
}

export_plugin!(info, new_codec);

pub struct BlockMean {
    pub p: BlockMeanParams,
}

/// Indices `0..n` sorted ascending by `key` (stable; `total_cmp`, so every order is defined).
fn argsort(key: &[f64]) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..key.len() as u32).collect();
    idx.sort_by(|&a, &b| key[a as usize].total_cmp(&key[b as usize]));
    idx
}

/// Errors unless `indices` is a permutation of `0..indices.len()`.
fn check_permutation(indices: &[u32], what: &str) -> Result<(), CodecError> {
    let n = indices.len();
    let mut seen = vec![false; n];
    for &i in indices {
        match seen.get_mut(i as usize) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(CodecError::new(format!(
                    "the {what} order is not a permutation (index {i} of {n})"
                )))
            }
        }
    }
    Ok(())
}

/// Values of the means section for one `tokens × hidden` sequence.
fn means_per_sequence(tokens: usize, hidden: usize, p: &BlockMeanParams) -> usize {
    let token_blocks = tokens.div_ceil(p.token_block);
    let feat_blocks = hidden.div_ceil(p.feat_block);
    feat_blocks * tokens + token_blocks * hidden + token_blocks * feat_blocks
}

/// The wire's sections for a shape: (feature-permutation bytes, token-permutation bytes, mean
/// count).
fn layout(
    batch: usize,
    tokens: usize,
    hidden: usize,
    p: &BlockMeanParams,
) -> Option<(usize, usize, usize)> {
    let features = if p.permute.features() {
        wire::packed_len(hidden, wire::index_bits(hidden))
    } else {
        0
    };
    let token_perm = if p.permute.tokens() {
        wire::packed_len(batch.checked_mul(tokens)?, wire::index_bits(tokens))
    } else {
        0
    };
    let means = batch.checked_mul(means_per_sequence(tokens, hidden, p))?;
    Some((features, token_perm, means))
}

/// `[batch, tokens, hidden]` of a shape, reading a 2-D shape as one sequence.
fn dims(shape: &[usize]) -> Result<(usize, usize, usize), CodecError> {
    let (rows, hidden) = wire::rows_and_hidden(shape)?;
    let batch = match shape.len() {
        0..=2 => 1,
        _ => splitbench_plugin_api::element_count(&shape[..shape.len() - 2])?,
    };
    Ok((batch, rows.checked_div(batch).unwrap_or(0), hidden))
}

impl Codec for BlockMean {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let values = finite_values(input)?;
        let (_, tokens, hidden) = dims(input.shape())?;
        let p = self.p;
        let mut out = Vec::new();
        let channels: Vec<u32> = if p.permute.features() {
            let mut mean = vec![0f64; hidden];
            for row in values.chunks(hidden.max(1)) {
                for (m, &v) in mean.iter_mut().zip(row) {
                    *m += f64::from(v);
                }
            }
            let perm = argsort(&mean);
            wire::pack_bits(perm.iter().copied(), wire::index_bits(hidden), &mut out);
            perm
        } else {
            (0..hidden as u32).collect()
        };
        let sequence = tokens * hidden;
        let orders: Vec<Vec<u32>> = values
            .par_chunks(sequence.max(1))
            .map(|seq| {
                if p.permute.tokens() {
                    let mean: Vec<f64> = seq
                        .chunks(hidden.max(1))
                        .map(|row| row.iter().map(|&v| f64::from(v)).sum())
                        .collect();
                    argsort(&mean)
                } else {
                    (0..tokens as u32).collect()
                }
            })
            .collect();
        if p.permute.tokens() {
            let bits = wire::index_bits(tokens);
            wire::pack_bits(orders.iter().flatten().copied(), bits, &mut out);
        }
        let means: Vec<f32> = values
            .par_chunks(sequence.max(1))
            .zip(&orders)
            .flat_map_iter(|(seq, order)| sequence_means(seq, hidden, order, &channels, &p))
            .collect();
        out.extend_from_slice(&f32_to_bytes(&means, input.dtype()));
        Ok(out)
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let (batch, tokens, hidden) = dims(shape)?;
        let p = self.p;
        let (feature_bytes, token_bytes, means) = layout(batch, tokens, hidden, &p)
            .ok_or_else(|| CodecError::new("shape overflows usize"))?;
        let mean_bytes = means
            .checked_mul(dtype.size_in_bytes())
            .ok_or_else(|| CodecError::new("shape overflows usize"))?;
        wire::expect_len(wire, feature_bytes + token_bytes + mean_bytes)?;
        let mut reader = WireReader::new(wire);
        let mut channels = Vec::with_capacity(hidden);
        if p.permute.features() {
            let packed = reader.take(feature_bytes)?;
            wire::unpack_bits(packed, hidden, wire::index_bits(hidden), &mut channels)?;
            check_permutation(&channels, "channel")?;
        } else {
            channels.extend(0..hidden as u32);
        }
        let mut orders = Vec::with_capacity(batch * tokens);
        if p.permute.tokens() {
            let packed = reader.take(token_bytes)?;
            wire::unpack_bits(
                packed,
                batch * tokens,
                wire::index_bits(tokens),
                &mut orders,
            )?;
            for (b, order) in orders.chunks(tokens.max(1)).enumerate() {
                check_permutation(order, &format!("token (sequence {b})"))?;
            }
        } else {
            for _ in 0..batch {
                orders.extend(0..tokens as u32);
            }
        }
        let means = bytes_to_f32(reader.take(mean_bytes)?, dtype);
        reader.finish()?;
        let per_sequence = means_per_sequence(tokens, hidden, &p);
        let mut values = vec![0f32; batch * tokens * hidden];
        values
            .par_chunks_mut((tokens * hidden).max(1))
            .zip(means.par_chunks(per_sequence.max(1)))
            .enumerate()
            .for_each(|(b, (seq, means))| {
                let order = &orders[b * tokens..(b + 1) * tokens];
                rebuild_sequence(seq, hidden, order, &channels, means, &p);
            });
        Ok(f32_to_bytes(&values, dtype))
    }
}

/// One sequence's means, block by block (token blocks outer), over the permuted order.
fn sequence_means(
    seq: &[f32],
    hidden: usize,
    order: &[u32],
    channels: &[u32],
    p: &BlockMeanParams,
) -> Vec<f32> {
    let at = |t: u32, c: u32| f64::from(seq[t as usize * hidden + c as usize]);
    let mut out = Vec::with_capacity(means_per_sequence(order.len(), hidden, p));
    for rows in order.chunks(p.token_block) {
        for cols in channels.chunks(p.feat_block) {
            let mut col_sums = vec![0f64; cols.len()];
            let mut grand = 0f64;
            for &t in rows {
                let mut row = 0f64;
                for (s, &c) in col_sums.iter_mut().zip(cols) {
                    let v = at(t, c);
                    row += v;
                    *s += v;
                }
                grand += row;
                out.push((row / cols.len() as f64) as f32);
            }
            out.extend(col_sums.iter().map(|s| (s / rows.len() as f64) as f32));
            out.push((grand / (rows.len() * cols.len()) as f64) as f32);
        }
    }
    out
}

/// Writes the block model's value for every value of one sequence, back in its original order.
fn rebuild_sequence(
    seq: &mut [f32],
    hidden: usize,
    order: &[u32],
    channels: &[u32],
    means: &[f32],
    p: &BlockMeanParams,
) {
    let mut next = 0;
    for rows in order.chunks(p.token_block) {
        for cols in channels.chunks(p.feat_block) {
            let (row_means, rest) = means[next..].split_at(rows.len());
            let (col_means, rest) = rest.split_at(cols.len());
            let grand = rest[0];
            next += rows.len() + cols.len() + 1;
            for (&t, &r) in rows.iter().zip(row_means) {
                for (&c, &m) in cols.iter().zip(col_means) {
                    seq[t as usize * hidden + c as usize] = match p.model {
                        Model::Additive => r + m - grand,
                        // A grand mean near 0 can overflow the quotient: 0 rather than Inf.
                        Model::Product => {
                            Some(r * m / grand).filter(|v| v.is_finite()).unwrap_or(0.0)
                        }
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(params: &str, values: &[f32], shape: [usize; 3]) -> (Vec<u8>, Vec<f32>) {
        let mut c = new_codec("block-mean", params).unwrap();
        let raw = f32_to_bytes(values, DType::F32);
        let view = TensorView::new(DType::F32, &shape, &raw).unwrap();
        let wire = c.encode(&view).unwrap();
        let out = c.decode(&wire, &shape, DType::F32).unwrap();
        (wire, bytes_to_f32(&out, DType::F32))
    }

    #[test]
    fn one_block_by_hand() {
        // [[1, 2], [3, 8]]: rows 1.5, 5.5; cols 2, 5; grand 3.5.
        // x̂ = [[1.5 + 2 - 3.5, 1.5 + 5 - 3.5], [5.5 + 2 - 3.5, 5.5 + 5 - 3.5]] = [[0, 3], [4, 7]].
        let (wire, out) = round(
            r#"{"token_block": 2, "feat_block": 2}"#,
            &[1.0, 2.0, 3.0, 8.0],
            [1, 2, 2],
        );
        assert_eq!(wire.len(), 5 * 4);
        assert_eq!(out, [0.0, 3.0, 4.0, 7.0]);
    }

    #[test]
    fn additive_blocks_are_exact() {
        // x[t][c] = a[t] + b[c] is the model itself: nothing is lost, partial blocks included.
        let (tokens, hidden) = (5, 7);
        let values: Vec<f32> = (0..tokens * hidden)
            .map(|i| (i / hidden) as f32 * 0.5 + ((i % hidden) as f32).powi(2))
            .collect();
        let (_, out) = round(
            r#"{"token_block": 2, "feat_block": 3}"#,
            &values,
            [1, tokens, hidden],
        );
        for (x, y) in values.iter().zip(&out) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }

    #[test]
    fn feature_permutation_groups_the_massive_channel() {
        // Channel 1 is huge; sorted by mean it lands last, in its own block of one.
        let values = [0.1, 900.0, 0.2, -0.1, 0.0, 910.0, 0.3, 0.1];
        let (wire, out) = round(
            r#"{"token_block": 2, "feat_block": 3, "permute": "features"}"#,
            &values,
            [1, 2, 4],
        );
        // 4 channel indices of 2 bits: channel means 0.05, 905, 0.25, 0.0 -> ascending
        // [3, 0, 2, 1] -> 0b01_10_00_11.
        assert_eq!(wire[0], 0b01_10_00_11);
        assert!((out[1] - 900.0).abs() < 1e-3 && (out[5] - 910.0).abs() < 1e-3);
    }

    #[test]
    fn product_model_by_hand() {
        // [[1, 2], [3, 6]] is rank one: rows 1.5, 4.5; cols 2, 4; grand 3;
        // row × col / grand = [[1, 2], [3, 6]] exactly.
        let (_, out) = round(
            r#"{"token_block": 2, "feat_block": 2, "model": "product"}"#,
            &[1.0, 2.0, 3.0, 6.0],
            [1, 2, 2],
        );
        assert_eq!(out, [1.0, 2.0, 3.0, 6.0]);
    }

    #[test]
    fn a_repeated_index_is_refused() {
        let values = [0.0f32, 1.0, 2.0, 3.0];
        let (mut wire, _) = round(r#"{"permute": "tokens"}"#, &values, [1, 4, 1]);
        wire[0] = 0; // indices [0, 0, 0, 0]
        let mut c = new_codec("block-mean", r#"{"permute": "tokens"}"#).unwrap();
        assert!(c.decode(&wire, &[1, 4, 1], DType::F32).is_err());
    }
}
