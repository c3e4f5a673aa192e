// mx on the device: OCP MX (E8M0 scale per block) and NVFP4 (E4M3 scale per block under an f32
// tensor scale), writing the host path's wire. Kernels take the tensor first, (values, dtype,
// rows, hidden, ...), as RowArgs passes it. Element types are passed as (ebits, mbits,
// max_code); `scaling` is 0 for E8M0, 1 for NVFP4, whose wire starts with the f32 tensor scale.

#define MX_E8M0 0
#define MX_NV 1

// 2^e, exact for e in -149..=127 (the Rust side's pow2).
__device__ __forceinline__ float mx_pow2(int e) {
    return e >= -126 ? __uint_as_float((u32)(e + 127) << 23) : __uint_as_float(1u << (e + 149));
}

__device__ float mx_decode(u32 code, int ebits, int mbits) {
    float sign = (code >> (ebits + mbits)) & 1u ? -1.0f : 1.0f;
    u32 magnitude = code & ((1u << (ebits + mbits)) - 1u);
    if (ebits == 4 && mbits == 3 && magnitude == 0x7Fu) return __uint_as_float(0x7FC00000u);
    int exp = (int)(magnitude >> mbits);
    float mant = (float)(magnitude & ((1u << mbits) - 1u));
    int bias = (1 << (ebits - 1)) - 1;
    if (ebits == 5 && exp == 31) return mant == 0.0f ? sign * SB_INF : __uint_as_float(0x7FC00000u);
    if (exp == 0) return sign * (mant * mx_pow2(1 - bias - mbits));
    return sign * ((mx_pow2(mbits) + mant) * mx_pow2(exp - bias - mbits));
}

// Round to nearest even, saturating at the largest finite value; the sign of zero is kept.
__device__ u32 mx_encode(float x, int ebits, int mbits, u32 max_code) {
    u32 sign = (__float_as_uint(x) >> 31) << (ebits + mbits);
    float a = fabsf(x);
    int bias = (1 << (ebits - 1)) - 1;
    u32 code;
    if (a >= mx_decode(max_code, ebits, mbits)) {
        code = max_code;
    } else if (a < mx_pow2(1 - bias)) {
        code = (u32)rintf(a / mx_pow2(1 - bias - mbits));
    } else {
        int e = (int)((__float_as_uint(a) >> 23) & 0xFFu) - 127;
        u32 steps = (u32)rintf(a / mx_pow2(e - mbits));
        code = ((u32)(e + bias) << mbits) + steps - (1u << mbits);
    }
    return sign | (code < max_code ? code : max_code);
}

#define MX_E4M3_MAX 448.0f
#define MX_E4M3_TINY 0.015625f
#define MX_E2M1_MAX 6.0f

// NVFP4, one warp per row: the row's absmax into scratch (flag |= 1 on NaN/Inf).
extern "C" __global__ void mx_row_absmax(const void* x, int dtype, u64 rows, u32 hidden, float* row_max,
                                         u32* flag) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= rows) return;
    float amax = sb_row_absmax(x, dtype, row, hidden, flag);
    if ((threadIdx.x & 31) == 0) row_max[row] = amax;
}

// NVFP4, one warp: the tensor scale absmax / (448 * 6) (1 for an all-zero tensor) into wire[0..4].
extern "C" __global__ void mx_tensor_scale(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                           const float* row_max) {
    if (blockIdx.x != 0 || threadIdx.x >= 32) return;
    float amax = 0.0f;
    for (u64 r = threadIdx.x; r < rows; r += 32) amax = fmaxf(amax, row_max[r]);
    amax = sb_warp_max(amax);
    if (threadIdx.x == 0) sb_put_f32(wire, amax > 0.0f ? amax / (MX_E4M3_MAX * MX_E2M1_MAX) : 1.0f);
}

// One warp per block: the block's scale byte at wire[header + block]; flag |= 1 on NaN/Inf.
extern "C" __global__ void mx_scales(const void* x, int dtype, u64 rows, u32 hidden, u8* wire, u32* flag,
                                     u32 block, int ebits, int mbits, u32 max_code, int scaling) {
    u64 per_row = (hidden + block - 1) / block;
    u64 b = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (b >= rows * per_row) return;
    u32 lane = threadIdx.x & 31;
    u64 row = b / per_row;
    u32 start = (u32)(b % per_row) * block;
    u32 end = start + block < hidden ? start + block : hidden;
    float amax = 0.0f;
    u32 bad = 0;
    for (u32 c = start + lane; c < end; c += 32) {
        float v = sb_load(x, row * hidden + c, dtype);
        if (!sb_is_finite(v)) bad = 1;
        amax = fmaxf(amax, fabsf(v));
    }
    amax = sb_warp_max(amax);
    if (sb_warp_or(bad) && lane == 0) atomicOr(flag, 1u);
    if (lane != 0) return;
    u32 header = scaling == MX_NV ? 4 : 0;
    u8 byte;
    if (scaling == MX_E8M0) {
        int bias = (1 << (ebits - 1)) - 1;
        int emax = (int)(max_code >> mbits) - bias;
        int e = (int)((__float_as_uint(amax) >> 23) & 0xFFu) - 127 - emax;
        e = e < -127 ? -127 : (e > 128 ? 128 : e);
        byte = (u8)(e + 127);
    } else {
        float scaled = (amax / MX_E2M1_MAX) / sb_get_f32(wire);
        byte = (u8)mx_encode(sb_clamp(scaled, MX_E4M3_TINY, MX_E4M3_MAX), 4, 3, 0x7Eu);
    }
    wire[header + b] = byte;
}

struct mx_args {
    const void* x;
    int dtype;
    u32 hidden;
    const u8* wire;
    u64 per_row;
    u32 block;
    int ebits, mbits;
    u32 max_code;
    int scaling;
};

// Code of value i, with its block's scale from the wire.
__device__ __forceinline__ u32 mx_value_code(const mx_args* a, u64 i) {
    u64 row = i / a->hidden;
    u64 b = row * a->per_row + (i % a->hidden) / a->block;
    float v = sb_load(a->x, i, a->dtype);
    if (a->scaling == MX_E8M0) {
        u8 byte = a->wire[b];
        float scale = fmaxf(__uint_as_float((u32)byte << 23), 1.17549435e-38f);
        return mx_encode(v / scale, a->ebits, a->mbits, a->max_code);
    }
    float t = sb_get_f32(a->wire);
    float recip = (1.0f / t) / mx_decode(a->wire[4 + b], 4, 3);
    return mx_encode(sb_clamp(v * recip, -MX_E2M1_MAX, MX_E2M1_MAX), 2, 1, 7u);
}

// One thread per byte of the codes section, which starts after the header and the scales.
extern "C" __global__ void mx_encode_bytes(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                           u32 block, int ebits, int mbits, u32 max_code, int scaling) {
    u64 n = rows * hidden;
    u32 bits = 1 + ebits + mbits;
    u64 byte = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (byte >= (n * bits + 7) / 8) return;
    mx_args a = {x, dtype, hidden, wire, (hidden + block - 1) / block, block, ebits, mbits, max_code, scaling};
    u64 codes_at = (scaling == MX_NV ? 4 : 0) + rows * a.per_row;
#define MX_CODE(i) mx_value_code(&a, (i))
    u8 out;
    SB_PACKED_BYTE(out, byte, bits, n, MX_CODE);
#undef MX_CODE
    wire[codes_at + byte] = out;
}

// One thread per value: element × scale in f32, rounded to the model dtype.
extern "C" __global__ void mx_decode_values(void* out, int dtype, u64 rows, u32 hidden, const u8* wire,
                                            u32 block, int ebits, int mbits, int scaling) {
    u64 n = rows * hidden;
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 bits = 1 + ebits + mbits;
    u64 per_row = (hidden + block - 1) / block;
    u64 header = scaling == MX_NV ? 4 : 0;
    u64 b = (i / hidden) * per_row + (i % hidden) / block;
    u8 byte = wire[header + b];
    float scale;
    if (scaling == MX_E8M0) scale = byte == 255 ? __uint_as_float(0x7FC00000u) : mx_pow2((int)byte - 127);
    else scale = sb_get_f32(wire) * mx_decode(byte, 4, 3);
    u32 code = sb_read_bits(wire + header + rows * per_row, i * bits, bits);
    sb_store(out, i, dtype, mx_decode(code, ebits, mbits) * scale);
}
