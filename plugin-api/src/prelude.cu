// splitbench device-codec prelude: types, element loads and stores that round exactly as the
// host path's `half` conversions do, fp8 conversions ported from the `float8` crate (itself a
// port of cuda_fp8.hpp's host code), warp reductions and bit packing in the wire's LSB-first
// order. Prepended to every KernelSet's source; compiled with --fmad=false. Under SB_EMULATE
// (testkit's CPU emulation, emulator/kernels.h) the two PTX conversions become software ones.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#define SB_INF __int_as_float(0x7f800000)

// Element types, numbered as the ABI's FfiDType.
#define SB_F32 0
#define SB_F16 1
#define SB_BF16 2

__device__ __forceinline__ float sb_f16_to_f32(u16 h) {
    if ((h & 0x7C00u) == 0x7C00u && (h & 0x03FFu) != 0) {
        // NaN: keep the payload as `half` does.
        return __uint_as_float(((u32)(h & 0x8000u) << 16) | 0x7FC00000u | ((u32)(h & 0x03FFu) << 13));
    }
#ifdef SB_EMULATE
    return sb_emu_f16_to_f32(h);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

__device__ __forceinline__ u16 sb_f32_to_f16(float f) {
    u32 x = __float_as_uint(f);
    if ((x & 0x7F800000u) == 0x7F800000u && (x & 0x007FFFFFu) != 0) {
        return (u16)(((x & 0x80000000u) >> 16) | 0x7C00u | 0x0200u | ((x & 0x007FFFFFu) >> 13));
    }
#ifdef SB_EMULATE
    return sb_emu_f32_to_f16(f);
#else
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}

__device__ __forceinline__ float sb_bf16_to_f32(u16 b) { return __uint_as_float(((u32)b) << 16); }

__device__ __forceinline__ u16 sb_f32_to_bf16(float f) {
    u32 x = __float_as_uint(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (u16)((x >> 16) | 0x0040u);
    const u32 round_bit = 0x00008000u;
    if ((x & round_bit) != 0 && (x & (3u * round_bit - 1u)) != 0) return (u16)((x >> 16) + 1u);
    return (u16)(x >> 16);
}

__device__ __forceinline__ float sb_load(const void* base, u64 i, int dtype) {
    if (dtype == SB_F32) return ((const float*)base)[i];
    u16 bits = ((const u16*)base)[i];
    return dtype == SB_F16 ? sb_f16_to_f32(bits) : sb_bf16_to_f32(bits);
}

__device__ __forceinline__ void sb_store(void* base, u64 i, int dtype, float v) {
    if (dtype == SB_F32) { ((float*)base)[i] = v; return; }
    ((u16*)base)[i] = dtype == SB_F16 ? sb_f32_to_f16(v) : sb_f32_to_bf16(v);
}

// f32 rounded through f16, as the receiver of an f16 scale sees it.
__device__ __forceinline__ float sb_via_f16(float v) { return sb_f16_to_f32(sb_f32_to_f16(v)); }

__device__ __forceinline__ bool sb_is_finite(float v) {
    return (__float_as_uint(v) & 0x7F800000u) != 0x7F800000u;
}

// Rust's f32::round: half away from zero.
__device__ __forceinline__ float sb_round(float v) { return roundf(v); }

__device__ __forceinline__ float sb_clamp(float v, float lo, float hi) { return fminf(fmaxf(v, lo), hi); }

// fp8 kinds.
#define SB_E4M3 0
#define SB_E5M2 1

// f64 -> fp8, saturating finite values; the float8 crate's convert_to_fp8 with SatFinite.
__device__ u8 sb_f64_to_fp8(double x, int kind) {
    u64 xbits = (u64)__double_as_longlong(x);
    u8 maxnorm, mantissa_mask; u32 exp_bias; u64 significand_bits, mindenorm_o2, overflow_threshold, minnorm;
    if (kind == SB_E4M3) {
        maxnorm = 0x7E; mantissa_mask = 0x7; exp_bias = 7; significand_bits = 4;
        mindenorm_o2 = 0x3F50000000000000ull; overflow_threshold = 0x407D000000000000ull;
        minnorm = 0x3F90000000000000ull;
    } else {
        maxnorm = 0x7B; mantissa_mask = 0x3; exp_bias = 15; significand_bits = 3;
        mindenorm_o2 = 0x3EE0000000000000ull; overflow_threshold = 0x40EE000000000000ull - 1;
        minnorm = 0x3F10000000000000ull;
    }
    const u64 dp_inf_bits = 0x7FF0000000000000ull;
    u64 half_ulp = 1ull << (53 - significand_bits - 1);
    u8 sign = (u8)((xbits >> 63) << 7);
    u8 exp = (u8)((u16)((u16)((xbits >> 52) & 0x7FF) - 1023u + exp_bias));
    u8 mantissa = (u8)((xbits >> (53 - significand_bits)) & mantissa_mask);
    u64 absx = xbits & 0x7FFFFFFFFFFFFFFFull;
    u8 res;
    if (absx <= mindenorm_o2) {
        res = 0;
    } else if (absx > dp_inf_bits) {
        res = kind == SB_E4M3 ? 0x7F : (u8)(0x7E | mantissa);
    } else if (absx > overflow_threshold) {
        res = maxnorm;
    } else if (absx >= minnorm) {
        res = (u8)((exp << (significand_bits - 1)) | mantissa);
        u64 round = xbits & ((half_ulp << 1) - 1);
        if (round > half_ulp || (round == half_ulp && (mantissa & 1) != 0)) res = (u8)(res + 1);
    } else {
        u8 shift = (u8)(1 - exp);
        u8 m = (u8)(mantissa | (1u << (significand_bits - 1)));
        res = (u8)(m >> shift);
        u64 round = (xbits | (1ull << 52)) & ((half_ulp << (shift + 1)) - 1);
        if (round > (half_ulp << shift) || (round == (half_ulp << shift) && (res & 1) != 0)) res = (u8)(res + 1);
    }
    return (u8)(res | sign);
}

// fp8 -> f16 bits; the float8 crate's convert_fp8_to_fp16.
__device__ u16 sb_fp8_to_f16_bits(u8 x, int kind) {
    u16 ur = (u16)((u16)x << 8);
    if (kind == SB_E5M2) {
        if ((ur & 0x7FFF) > 0x7C00) ur = 0x7FFF;
        return ur;
    }
    u16 sign = ur & 0x8000;
    u16 exponent = (u16)(((ur & 0x7800) >> 1) + 0x2000);
    u16 mantissa = (u16)((ur & 0x0700) >> 1);
    if ((x & 0x7F) == 0x7F) return 0x7FFF;
    if (exponent == 0x2000) {
        if (mantissa != 0) {
            mantissa = (u16)(mantissa << 1);
            while ((mantissa & 0x0400) == 0) {
                mantissa = (u16)(mantissa << 1);
                exponent = (u16)(exponent - 0x0400);
            }
            mantissa &= 0x03FF;
        } else {
            exponent = 0;
        }
    }
    return (u16)(sign | exponent | mantissa);
}

__device__ __forceinline__ float sb_fp8_to_f32(u8 x, int kind) { return sb_f16_to_f32(sb_fp8_to_f16_bits(x, kind)); }

// Largest magnitude over a row, one warp per row (lane-strided, then butterfly). max is exact,
// so the order does not change the result.
__device__ __forceinline__ float sb_warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, offset));
    return v;
}
__device__ __forceinline__ float sb_warp_min(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fminf(v, __shfl_xor_sync(0xFFFFFFFFu, v, offset));
    return v;
}
__device__ __forceinline__ u32 sb_warp_or(u32 v) {
    for (int offset = 16; offset > 0; offset >>= 1) v |= __shfl_xor_sync(0xFFFFFFFFu, v, offset);
    return v;
}

// Collective over one warp (every lane calls it for the same row): the row's largest |value|,
// to every lane; *flag |= 1 when the row holds NaN/Inf.
__device__ __forceinline__ float sb_row_absmax(const void* x, int dtype, u64 row, u32 hidden, u32* flag) {
    u32 lane = threadIdx.x & 31;
    float amax = 0.0f;
    u32 bad = 0;
    for (u32 c = lane; c < hidden; c += 32) {
        float v = sb_load(x, row * hidden + c, dtype);
        if (!sb_is_finite(v)) bad = 1;
        amax = fmaxf(amax, fabsf(v));
    }
    amax = sb_warp_max(amax);
    if (sb_warp_or(bad) && lane == 0) atomicOr(flag, 1u);
    return amax;
}

// Little-endian f32 at any byte address (wire fields need not be aligned).
__device__ __forceinline__ void sb_put_f32(u8* p, float v) {
    u32 bits = __float_as_uint(v);
    for (int k = 0; k < 4; k++) p[k] = (u8)(bits >> (8 * k));
}
__device__ __forceinline__ float sb_get_f32(const u8* p) {
    return __uint_as_float((u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24));
}

// Bits [bit, bit + bits) of an LSB-first packed stream (bits <= 24).
__device__ __forceinline__ u32 sb_read_bits(const u8* packed, u64 bit, u32 bits) {
    u64 byte = bit >> 3;
    u32 shift = (u32)(bit & 7);
    u32 word = 0;
    u32 needed = (shift + bits + 7) >> 3;
    for (u32 k = 0; k < needed; k++) word |= (u32)packed[byte + k] << (8 * k);
    return (word >> shift) & ((1u << bits) - 1u);
}

// Byte `byte` of an LSB-first packed stream of `count` codes of `bits` bits; `code(i)` gives
// code i. One thread per output byte, so no atomics.
#define SB_PACKED_BYTE(result, byte, bits, count, code)                                       \
    do {                                                                                     \
        u64 first_bit_ = (u64)(byte) * 8;                                                    \
        u64 first_ = first_bit_ / (bits);                                                    \
        u64 last_ = (first_bit_ + 7) / (bits);                                               \
        u32 acc_ = 0;                                                                        \
        for (u64 i_ = first_; i_ <= last_ && i_ < (count); i_++) {                           \
            u64 at_ = i_ * (bits);                                                           \
            u32 c_ = (code(i_));                                                             \
            if (at_ >= first_bit_) acc_ |= c_ << (u32)(at_ - first_bit_);                    \
            else acc_ |= c_ >> (u32)(first_bit_ - at_);                                      \
        }                                                                                    \
        (result) = (u8)(acc_ & 0xFFu);                                                       \
    } while (0)
