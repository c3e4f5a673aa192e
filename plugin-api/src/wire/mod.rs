//! Building blocks for wire formats: bounds-checked reading, lengths and bit packing.
//!
//! A decoder reads untrusted bytes. [`WireReader`] turns every short read into an error,
//! and [`expect_len`] lets a decoder compare the wire length with what the shape implies
//! before allocating anything.

mod bits;

pub use bits::{pack_bits, pack_codes, packed_len, read_code, unpack_bits};

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

/// Bits needed to store an index below `n` (at least 1).
pub fn index_bits(n: usize) -> u32 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
