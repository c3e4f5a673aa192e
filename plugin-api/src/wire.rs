//! Building blocks for wire formats: bounds-checked reading and bit packing.
//!
//! A decoder reads untrusted bytes. [`WireReader`] turns every short read into an error,
//! and [`expect_len`] lets a decoder compare the wire length with what the shape implies
//! before allocating anything.

use half::f16;

use crate::{element_count, CodecError, DType};

/// Bytes a tensor of `shape` takes in `dtype`: what `decode` must return.
pub fn raw_len(shape: &[usize], dtype: DType) -> Result<usize, CodecError> {
    element_count(shape)?
        .checked_mul(dtype.size_in_bytes())
        .ok_or_else(|| CodecError::new("tensor size overflows usize"))
}

/// `(rows, hidden)` of a shape: one row per token, `hidden` the last dimension.
pub fn rows_and_hidden(shape: &[usize]) -> Result<(usize, usize), CodecError> {
    match shape.split_last() {
        Some((&hidden, rest)) => Ok((element_count(rest)?, hidden)),
        None => Ok((1, 1)),
    }
}

/// Reads a wire front to back; every read past the end is an error, never a panic.
pub struct WireReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> WireReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        WireReader { bytes, pos: 0 }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                CodecError::new(format!(
                    "wire truncated: needed {n} bytes at offset {}, {} left",
                    self.pos,
                    self.bytes.len() - self.pos
                ))
            })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn f32(&mut self) -> Result<f32, CodecError> {
        Ok(f32::from_bits(self.u32()?))
    }
    pub fn f16(&mut self) -> Result<f32, CodecError> {
        Ok(f16::from_bits(self.u16()?).to_f32())
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Errors unless every byte was consumed: trailing bytes mean the sender and receiver
    /// disagree about the format.
    pub fn finish(self) -> Result<(), CodecError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(CodecError::new(format!(
                "wire has {} unexpected trailing bytes",
                self.remaining()
            )))
        }
    }
}

/// Errors unless `wire` is exactly `expected` bytes long.
pub fn expect_len(wire: &[u8], expected: usize) -> Result<(), CodecError> {
    expect_len_value(wire.len(), expected)
}

/// Errors unless a wire of `len` bytes (one in device memory, say) is exactly `expected`.
pub fn expect_len_value(len: usize, expected: usize) -> Result<(), CodecError> {
    if len == expected {
        Ok(())
    } else {
        Err(CodecError::new(format!(
            "wire is {len} bytes, the shape needs exactly {expected}"
        )))
    }
}

pub fn put_f16(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// Bytes needed for `count` values of `bits` bits each.
pub fn packed_len(count: usize, bits: u32) -> usize {
    (count * bits as usize).div_ceil(8)
}

/// Appends `values` (each < 2^bits, bits in 1..=32) LSB-first, padding the last byte with 0.
pub fn pack_bits(values: impl IntoIterator<Item = u32>, bits: u32, out: &mut Vec<u8>) {
    debug_assert!((1..=32).contains(&bits));
    let mut acc: u64 = 0;
    let mut filled = 0u32;
    for v in values {
        acc |= u64::from(v) << filled;
        filled += bits;
        while filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
}

/// Reads `count` values of `bits` bits packed by [`pack_bits`] from exactly
/// `packed_len(count, bits)` bytes.
pub fn unpack_bits(
    bytes: &[u8],
    count: usize,
    bits: u32,
    out: &mut Vec<u32>,
) -> Result<(), CodecError> {
    expect_len(bytes, packed_len(count, bits))?;
    let mask = if bits == 32 {
        u32::MAX as u64
    } else {
        (1u64 << bits) - 1
    };
    let mut acc: u64 = 0;
    let mut filled = 0u32;
    let mut iter = bytes.iter();
    out.reserve(count);
    for _ in 0..count {
        while filled < bits {
            // Length was checked above, so the iterator cannot run dry here.
            acc |= u64::from(*iter.next().unwrap_or(&0)) << filled;
            filled += 8;
        }
        out.push((acc & mask) as u32);
        acc >>= bits;
        filled -= bits;
    }
    Ok(())
}

/// Bits needed to store an index below `n` (at least 1).
pub fn index_bits(n: usize) -> u32 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_three_bit_values_lsb_first() {
        let mut out = Vec::new();
        pack_bits([1, 2, 7], 3, &mut out);
        // 1 | 2<<3 | 7<<6 = 0b1_1101_0001 -> bytes 0xD1, 0x01
        assert_eq!(out, [0xD1, 0x01]);
        let mut back = Vec::new();
        unpack_bits(&out, 3, 3, &mut back).unwrap();
        assert_eq!(back, [1, 2, 7]);
    }

    #[test]
    fn round_trips_every_width() {
        for bits in 1..=16u32 {
            let values: Vec<u32> = (0..37u32)
                .map(|i| i.wrapping_mul(2654435761u32) & ((1 << bits) - 1))
                .collect();
            let mut out = Vec::new();
            pack_bits(values.iter().copied(), bits, &mut out);
            assert_eq!(out.len(), packed_len(values.len(), bits));
            let mut back = Vec::new();
            unpack_bits(&out, values.len(), bits, &mut back).unwrap();
            assert_eq!(back, values, "bits {bits}");
        }
    }

    #[test]
    fn short_packed_input_is_an_error() {
        let mut back = Vec::new();
        assert!(unpack_bits(&[0xFF], 3, 3, &mut back).is_err());
    }

    #[test]
    fn reader_reports_truncation() {
        let mut r = WireReader::new(&[1, 2, 3]);
        assert_eq!(r.u16().unwrap(), 0x0201);
        assert!(r.u16().is_err());
    }

    #[test]
    fn index_bits_of_hidden_sizes() {
        assert_eq!(index_bits(1), 1);
        assert_eq!(index_bits(2), 1);
        assert_eq!(index_bits(576), 10);
        assert_eq!(index_bits(1024), 10);
        assert_eq!(index_bits(1025), 11);
    }
}
