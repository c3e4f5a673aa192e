//! Bit packing of n-bit codes, LSB-first: the first code in the lowest bits of the first byte,
//! the last byte padded with zero bits. Every packed section of a wire uses this order (the
//! CUDA prelude's packing writes the same bytes).

use rayon::prelude::*;

use super::expect_len;
use crate::CodecError;

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

/// Codes stored one per byte (each < 2^bits, bits in 1..=8), packed as [`pack_bits`] packs
/// them, in parallel: every 8 codes fill exactly `bits` bytes, so chunks of a multiple of 8
/// codes pack independently and concatenate to the serial result.
pub fn pack_codes(codes: &[u8], bits: u32) -> Vec<u8> {
    const CHUNK: usize = 8 * 4096;
    let parts: Vec<Vec<u8>> = codes
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut out = Vec::with_capacity(packed_len(chunk.len(), bits));
            pack_bits(chunk.iter().map(|&c| u32::from(c)), bits, &mut out);
            out
        })
        .collect();
    parts.concat()
}

/// Code `i` of a stream packed with `bits` bits per code (bits in 1..=8, so a code spans at
/// most two bytes), read in place: decoders that fill rows in parallel index codes directly
/// instead of unpacking the whole stream first. `packed` must hold
/// `packed_len(i + 1, bits)` bytes (callers check the wire length against the shape first).
pub fn read_code(packed: &[u8], i: usize, bits: u32) -> u32 {
    let bit = i * bits as usize;
    let byte = bit / 8;
    let lo = u32::from(packed[byte]);
    let hi = packed.get(byte + 1).copied().map_or(0, u32::from);
    ((lo | hi << 8) >> (bit % 8)) & ((1 << bits) - 1)
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
    fn pack_codes_writes_the_serial_packing() {
        // More than one parallel chunk, and a length that is not a multiple of 8.
        let codes: Vec<u8> = (0..70_003u32)
            .map(|i| (i.wrapping_mul(40503) >> 3) as u8)
            .collect();
        for bits in 1..=8u32 {
            let masked: Vec<u8> = codes
                .iter()
                .map(|&c| c & ((1u16 << bits) - 1) as u8)
                .collect();
            let mut serial = Vec::new();
            pack_bits(masked.iter().map(|&c| u32::from(c)), bits, &mut serial);
            assert_eq!(pack_codes(&masked, bits), serial, "bits {bits}");
        }
    }

    #[test]
    fn read_code_by_hand() {
        // 3-bit codes [1, 2, 7] pack to 0xD1, 0x01 (see above); the third straddles the bytes.
        let packed = [0xD1, 0x01];
        let codes: Vec<u32> = (0..3).map(|i| read_code(&packed, i, 3)).collect();
        assert_eq!(codes, [1, 2, 7]);
        // 4-bit: the first code in the low nibble.
        assert_eq!(
            [read_code(&[0xA7], 0, 4), read_code(&[0xA7], 1, 4)],
            [0x7, 0xA]
        );
        // 8-bit codes are whole bytes, the last one with no byte after it.
        assert_eq!(read_code(&[0x12, 0xFE], 1, 8), 0xFE);
    }
}
