// Blockwise intN on the device: the wire format of quant.rs, byte for byte. Every kernel takes
// the tensor first: (values, dtype, rows, hidden, ...).
// `header` points at the first f16 scale; codes follow all scales (and, asymmetric, all minima).
// Values are zeroed before quantization when |v| > zero_above or their channel's bit is set in
// zero_mask (the outlier family's dense remainder); pass +inf and a null mask for neither.

__device__ __forceinline__ float sb_block_value(const void* x, int dtype, u64 i, u32 hidden,
                                                float zero_above, const u32* zero_mask) {
    float v = sb_load(x, i, dtype);
    u32 col = (u32)(i % hidden);
    if (fabsf(v) > zero_above) return 0.0f;
    if (zero_mask != 0 && (zero_mask[col >> 5] >> (col & 31)) & 1u) return 0.0f;
    return v;
}

__device__ __forceinline__ void sb_put_u16(u8* p, u16 v) { p[0] = (u8)(v & 0xFF); p[1] = (u8)(v >> 8); }
__device__ __forceinline__ u16 sb_get_u16(const u8* p) { return (u16)(p[0] | ((u16)p[1] << 8)); }

// One warp per block: scales (and minima) into the header; flag |= 1 on NaN/Inf.
extern "C" __global__ void sb_block_scales(const void* x, int dtype, u64 rows, u32 hidden, u32 block,
                                           u32 bits, int asym, float zero_above, const u32* zero_mask,
                                           u8* header, u32* flag) {
    u64 warp = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u32 lane = threadIdx.x & 31;
    u64 per_row = (hidden + block - 1) / block;
    u64 blocks = rows * per_row;
    if (warp >= blocks) return;
    u64 row = warp / per_row;
    u32 start = (u32)(warp % per_row) * block;
    u32 end = min(start + block, hidden);
    float amax = 0.0f, lo = SB_INF, hi = -SB_INF;
    u32 bad = 0;
    for (u32 c = start + lane; c < end; c += 32) {
        u64 i = row * hidden + c;
        float raw = sb_load(x, i, dtype);
        if (!sb_is_finite(raw)) bad = 1;
        float v = sb_block_value(x, dtype, i, hidden, zero_above, zero_mask);
        amax = fmaxf(amax, fabsf(v));
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    amax = sb_warp_max(amax);
    lo = sb_warp_min(lo);
    hi = sb_warp_max(hi);
    bad = sb_warp_or(bad);
    if (lane != 0) return;
    if (bad) atomicOr(flag, 1u);
    if (asym) {
        float levels = (float)((1u << bits) - 1u);
        float mn = sb_via_f16(lo);
        sb_put_u16(header + 2 * warp, sb_f32_to_f16((hi - mn) / levels));
        sb_put_u16(header + 2 * blocks + 2 * warp, sb_f32_to_f16(mn));
    } else {
        float qmax = (float)((1 << (bits - 1)) - 1);
        sb_put_u16(header + 2 * warp, sb_f32_to_f16(amax / qmax));
    }
}

__device__ __forceinline__ u32 sb_block_code(const void* x, int dtype, u64 i, u32 hidden, u32 block,
                                             u32 bits, int asym, float zero_above, const u32* zero_mask,
                                             const u8* header, u64 blocks) {
    u64 per_row = (hidden + block - 1) / block;
    u64 b = (i / hidden) * per_row + (i % hidden) / block;
    float v = sb_block_value(x, dtype, i, hidden, zero_above, zero_mask);
    float scale = sb_f16_to_f32(sb_get_u16(header + 2 * b));
    float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    if (asym) {
        float levels = (float)((1u << bits) - 1u);
        float mn = sb_f16_to_f32(sb_get_u16(header + 2 * blocks + 2 * b));
        return (u32)sb_clamp(sb_round((v - mn) * inv), 0.0f, levels);
    }
    int qmax = (1 << (bits - 1)) - 1;
    return (u32)((int)sb_clamp(sb_round(v * inv), (float)-qmax, (float)qmax) + qmax);
}

// One thread per packed byte of the codes.
extern "C" __global__ void sb_block_pack(const void* x, int dtype, u64 rows, u32 hidden, u32 block,
                                         u32 bits, int asym, float zero_above, const u32* zero_mask,
                                         u8* header, u64 packed_len) {
    u64 byte = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (byte >= packed_len) return;
    u64 blocks = rows * ((hidden + block - 1) / block);
    u8* codes = header + (asym ? 4 : 2) * blocks;
    u64 count = rows * hidden;
    u8 out;
#define SB_CODE_AT(i) sb_block_code(x, dtype, (i), hidden, block, bits, asym, zero_above, zero_mask, header, blocks)
    SB_PACKED_BYTE(out, byte, (u64)bits, count, SB_CODE_AT);
#undef SB_CODE_AT
    codes[byte] = out;
}

// One thread per value.
extern "C" __global__ void sb_block_decode(void* out, int dtype, u64 rows, u32 hidden, u32 block, u32 bits,
                                           int asym, const u8* header) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    u64 per_row = (hidden + block - 1) / block;
    u64 blocks = rows * per_row;
    u64 b = (i / hidden) * per_row + (i % hidden) / block;
    const u8* codes = header + (asym ? 4 : 2) * blocks;
    u32 q = sb_read_bits(codes, i * bits, bits);
    float scale = sb_f16_to_f32(sb_get_u16(header + 2 * b));
    float v;
    if (asym) {
        float mn = sb_f16_to_f32(sb_get_u16(header + 2 * blocks + 2 * b));
        v = mn + (float)q * scale;
    } else {
        int qmax = (1 << (bits - 1)) - 1;
        v = (float)((int)q - qmax) * scale;
    }
    sb_store(out, i, dtype, v);
}
