// int8-token on the device: per row an f32 scale (absmax / 127), then one i8 per element.

// One warp per row: the row's scale into wire[4 * row]; flag |= 1 on NaN/Inf.
extern "C" __global__ void intq_token_scales(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                             u32* flag) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u32 lane = threadIdx.x & 31;
    if (row >= rows) return;
    float amax = 0.0f;
    u32 bad = 0;
    for (u32 c = lane; c < hidden; c += 32) {
        float v = sb_load(x, row * hidden + c, dtype);
        if (!sb_is_finite(v)) bad = 1;
        amax = fmaxf(amax, fabsf(v));
    }
    amax = sb_warp_max(amax);
    bad = sb_warp_or(bad);
    if (lane != 0) return;
    if (bad) atomicOr(flag, 1u);
    u32 bits = __float_as_uint(amax / 127.0f);
    for (int k = 0; k < 4; k++) wire[4 * row + k] = (u8)(bits >> (8 * k));
}

__device__ __forceinline__ float intq_row_scale(const u8* wire, u64 row) {
    const u8* p = wire + 4 * row;
    return __uint_as_float((u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24));
}

// One thread per element.
extern "C" __global__ void intq_token_encode(const void* x, int dtype, u64 rows, u32 hidden, u8* wire) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    float s = intq_row_scale(wire, i / hidden);
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    float q = sb_clamp(sb_round(sb_load(x, i, dtype) * inv), -127.0f, 127.0f);
    wire[4 * rows + i] = (u8)(signed char)(int)q;
}

extern "C" __global__ void intq_token_decode(const u8* wire, u64 rows, u32 hidden, void* out, int dtype) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    float s = intq_row_scale(wire, i / hidden);
    sb_store(out, i, dtype, (float)(signed char)wire[4 * rows + i] * s);
}
