//! OCP FP8 (`torch.float8_e4m3fn`, `torch.float8_e5m2`) through the `float8` crate, which
//! ports cuda_fp8.hpp's host conversions: round to nearest even, subnormals included. The
//! CUDA prelude's `sb_f64_to_fp8` / `sb_fp8_to_f32` port the same code, so host and device
//! paths agree bit for bit.

use float8::{F8E4M3, F8E5M2};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fp8 {
    E4M3,
    E5M2,
}

impl Fp8 {
    /// The largest finite value: 448 (code 0x7E; 0x7F is NaN) for e4m3, 57344 (0x7B; 0x7C is
    /// Inf) for e5m2. Not the crate's `MAX` constants: those are one code lower (416, 49152).
    pub fn max(self) -> f32 {
        match self {
            Fp8::E4M3 => F8E4M3::from_bits(0x7E).to_f32(),
            Fp8::E5M2 => F8E5M2::from_bits(0x7B).to_f32(),
        }
    }

    /// The code of `v`: finite values beyond [`Fp8::max`] saturate to it (as TorchAO's
    /// saturated casts do), NaN and ±Inf become NaN.
    pub fn encode(self, v: f32) -> u8 {
        let v = if v.is_finite() {
            v.clamp(-self.max(), self.max())
        } else {
            f32::NAN
        };
        match self {
            Fp8::E4M3 => F8E4M3::from_f32(v).to_bits(),
            Fp8::E5M2 => F8E5M2::from_f32(v).to_bits(),
        }
    }

    /// The value of code `b`; NaN codes decode to the crate's canonical NaN.
    pub fn decode(self, b: u8) -> f32 {
        match self {
            Fp8::E4M3 => F8E4M3::from_bits(b).to_f32(),
            Fp8::E5M2 => F8E5M2::from_bits(b).to_f32(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_finite_values() {
        assert_eq!(Fp8::E4M3.max(), 448.0);
        assert_eq!(Fp8::E5M2.max(), 57344.0);
    }

    #[test]
    fn codes_by_hand() {
        // e4m3, bias 7: 1.0 = 0_0111_000; 448 = 0_1111_110; 2^-9 (smallest subnormal) = 0x01.
        assert_eq!(Fp8::E4M3.encode(1.0), 0x38);
        assert_eq!(Fp8::E4M3.encode(448.0), 0x7E);
        assert_eq!(Fp8::E4M3.encode(2f32.powi(-9)), 0x01);
        assert_eq!(Fp8::E4M3.encode(-0.0), 0x80);
        // e5m2, bias 15: 1.0 = 0_01111_00; 57344 = 0_11110_11.
        assert_eq!(Fp8::E5M2.encode(1.0), 0x3C);
        assert_eq!(Fp8::E5M2.encode(57344.0), 0x7B);
        assert_eq!(Fp8::E4M3.decode(0x38), 1.0);
        assert_eq!(Fp8::E5M2.decode(0x7C), f32::INFINITY);
    }

    #[test]
    fn rounds_to_nearest_even() {
        // e4m3 near 1 steps by 1/8: 1 + 1/16 ties to 1 (even mantissa 000), 1 + 3/16 to
        // 1 + 1/4 (mantissa 010); below 2^-6 the subnormal steps are 2^-9: 2^-10 ties to 0.
        assert_eq!(Fp8::E4M3.decode(Fp8::E4M3.encode(1.0625)), 1.0);
        assert_eq!(Fp8::E4M3.decode(Fp8::E4M3.encode(1.1875)), 1.25);
        assert_eq!(Fp8::E4M3.encode(2f32.powi(-10)), 0x00);
        assert_eq!(Fp8::E4M3.encode(3.0 * 2f32.powi(-10)), 0x02);
    }

    #[test]
    fn saturates_finite_values_and_carries_nan() {
        assert_eq!(Fp8::E4M3.decode(Fp8::E4M3.encode(1e9)), 448.0);
        assert_eq!(Fp8::E4M3.decode(Fp8::E4M3.encode(-1e9)), -448.0);
        // Between 416 (the crate's MAX) and 448 values round instead of clipping at 416.
        assert_eq!(Fp8::E4M3.decode(Fp8::E4M3.encode(440.0)), 448.0);
        assert_eq!(Fp8::E5M2.decode(Fp8::E5M2.encode(60_000.0)), 57344.0);
        for format in [Fp8::E4M3, Fp8::E5M2] {
            assert!(format.decode(format.encode(f32::NAN)).is_nan());
            assert!(format.decode(format.encode(f32::INFINITY)).is_nan());
        }
    }
}
