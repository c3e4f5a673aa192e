//! `entropy = "rans"`: the integer codes entropy-coded with `constriction`'s rANS coder
//! (`DefaultAnsCoder`: 32-bit words, 64-bit state) under a static categorical model of the
//! tensor's own code histogram. The wire length is the real coded length, model included, so
//! it shows how far below the packed size the codes' information is.
//!
//! Section layout (little-endian): the model, one 24-bit fixed-point probability (3 bytes) per
//! symbol `0..2^bits`, summing to 2^24, each at least 1 so that every code stays encodable;
//! then the number of words (u32) and the coder's compressed u32 words. The count is what
//! catches a shortened stream: an rANS decoder fed a stream missing its last words still
//! produces symbols and may even end in its empty state.

use constriction::stream::{
    model::DefaultContiguousCategoricalEntropyModel, stack::DefaultAnsCoder, Decode,
};
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::CodecError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entropy {
    #[default]
    None,
    Rans,
}

/// constriction's default model precision: probabilities are multiples of 2^-24.
const PRECISION: u32 = 24;

/// Bytes of the model for `bits`-bit codes.
pub fn model_len(bits: u32) -> usize {
    3 << bits
}

/// Fixed-point probabilities summing to 2^24, each ≥ 1, proportional to `counts`: 1 plus the
/// floor of the count's share of what is left, the rounding remainder going to the most
/// frequent symbol (the first of equals).
pub fn fixed_point(counts: &[u64]) -> Vec<u32> {
    let total = counts.iter().sum::<u64>().max(1);
    let budget = (1u64 << PRECISION) - counts.len() as u64;
    let mut p: Vec<u32> = counts
        .iter()
        .map(|&c| (1 + u128::from(c) * u128::from(budget) / u128::from(total)) as u32)
        .collect();
    let sum: u64 = p.iter().map(|&x| u64::from(x)).sum();
    let mut top = 0;
    for (i, &c) in counts.iter().enumerate() {
        if c > counts[top] {
            top = i;
        }
    }
    p[top] += ((1u64 << PRECISION) - sum) as u32;
    p
}

fn model(probabilities: &[u32]) -> Result<DefaultContiguousCategoricalEntropyModel, CodecError> {
    DefaultContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(
        probabilities,
        false,
    )
    .map_err(|()| CodecError::new("entropy model in the wire is not a distribution"))
}

/// The model and rANS words for `codes` (each < 2^bits).
pub fn compress(codes: &[u8], bits: u32) -> Result<Vec<u8>, CodecError> {
    let mut counts = vec![0u64; 1 << bits];
    for &c in codes {
        counts[usize::from(c)] += 1;
    }
    let probabilities = fixed_point(&counts);
    let mut out = Vec::with_capacity(model_len(bits) + codes.len() / 2);
    for p in &probabilities {
        out.extend_from_slice(&p.to_le_bytes()[..3]);
    }
    if codes.is_empty() {
        out.extend_from_slice(&0u32.to_le_bytes());
        return Ok(out);
    }
    let model = model(&probabilities)?;
    let mut coder = DefaultAnsCoder::new();
    coder
        .encode_iid_symbols_reverse(codes.iter().map(|&c| usize::from(c)), model.as_view())
        .map_err(|e| CodecError::new(format!("rANS encoding failed: {e:?}")))?;
    let words = coder
        .into_compressed()
        .map_err(|e| CodecError::new(format!("rANS encoding failed: {e:?}")))?;
    let count = u32::try_from(words.len())
        .map_err(|_| CodecError::new("rANS stream longer than 2^32 words"))?;
    out.extend_from_slice(&count.to_le_bytes());
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Ok(out)
}

/// `n` codes from a section written by [`compress`]; errors on a malformed model, a ragged
/// word stream, or words left over after `n` codes (a stream that is not this one).
pub fn decompress(section: &[u8], n: usize, bits: u32) -> Result<Vec<u8>, CodecError> {
    let (head, body) = section
        .split_at_checked(model_len(bits))
        .ok_or_else(|| CodecError::new("wire truncated inside the entropy model"))?;
    let probabilities: Vec<u32> = head
        .chunks_exact(3)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
        .collect();
    let model = model(&probabilities)?;
    let (count, body) = body
        .split_at_checked(4)
        .ok_or_else(|| CodecError::new("wire truncated before the rANS word count"))?;
    let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
    if body.len() / 4 != count || body.len() % 4 != 0 {
        return Err(CodecError::new(format!(
            "rANS stream of {} bytes, its header says {count} words",
            body.len()
        )));
    }
    if n == 0 {
        return match count {
            0 => Ok(Vec::new()),
            _ => Err(CodecError::new("rANS words for a tensor without values")),
        };
    }
    let words: Vec<u32> = body
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut coder = DefaultAnsCoder::from_compressed(words)
        .map_err(|_| CodecError::new("rANS stream has no valid initial state"))?;
    let mut codes = Vec::with_capacity(n);
    for symbol in coder.decode_iid_symbols(n, model.as_view()) {
        let symbol = symbol.map_err(|e| CodecError::new(format!("rANS decoding: {e:?}")))?;
        // The model has 2^bits symbols, so every symbol fits the code width.
        codes.push(symbol as u8);
    }
    if !coder.is_empty() {
        return Err(CodecError::new(
            "rANS stream has data left after the last value",
        ));
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_by_hand() {
        // 4 symbols, counts [2, 0, 1, 1]: budget 2^24 - 4; shares 1 + [budget / 2, 0,
        // budget / 4, budget / 4]; the remainder goes to symbol 0.
        let p = fixed_point(&[2, 0, 1, 1]);
        assert_eq!(p[1], 1);
        assert_eq!(p[2], 1 + ((1 << 24) - 4) / 4);
        assert_eq!(p.iter().map(|&x| u64::from(x)).sum::<u64>(), 1 << 24);
    }

    #[test]
    fn round_trip_and_skewed_codes_compress() {
        // Mostly code 7 of 16: far below 4 bits per value.
        let codes: Vec<u8> = (0..4096u32)
            .map(|i| if i % 17 == 0 { (i % 16) as u8 } else { 7 })
            .collect();
        let section = compress(&codes, 4).unwrap();
        assert!(
            section.len() < model_len(4) + codes.len() / 4,
            "{}",
            section.len()
        );
        assert_eq!(decompress(&section, codes.len(), 4).unwrap(), codes);
    }

    #[test]
    fn a_shortened_stream_is_refused() {
        let codes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 13) as u8).collect();
        let section = compress(&codes, 4).unwrap();
        assert!(decompress(&section[..section.len() - 4], codes.len(), 4).is_err());
        assert!(decompress(&section[..section.len() - 1], codes.len(), 4).is_err());
    }
}
