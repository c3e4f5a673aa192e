// mulaw on the device. splitbench's prelude (types, sb_load/sb_store, sb_warp_max, ...) comes
// first. Wire: per token an f32 scale, then one byte per value, as on the host.

// One warp per row: the row's absmax scale; flag |= 1 on NaN/Inf.
extern "C" __global__ void mulaw_scales(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
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
    u32 bits = __float_as_uint(amax);
    u8* p = wire + row * (4 + (u64)hidden);
    for (int k = 0; k < 4; k++) p[k] = (u8)(bits >> (8 * k));
}

__device__ __forceinline__ float mulaw_scale(const u8* wire, u64 row, u32 hidden) {
    const u8* p = wire + row * (4 + (u64)hidden);
    return __uint_as_float((u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24));
}

// One thread per value: the code is the number of steps at or below |v| / scale.
extern "C" __global__ void mulaw_encode(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                        const float* steps) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    u64 row = i / hidden;
    float v = sb_load(x, i, dtype);
    float scale = mulaw_scale(wire, row, hidden);
    float m = scale > 0.0f ? fabsf(v / scale) : 0.0f;
    u32 lo = 0, hi = 127;
    while (lo < hi) {
        u32 mid = (lo + hi) / 2;
        if (steps[mid] <= m) lo = mid + 1; else hi = mid;
    }
    wire[row * (4 + (u64)hidden) + 4 + i % hidden] = (u8)(lo | (v < 0.0f ? 0x80u : 0u));
}

extern "C" __global__ void mulaw_decode(const u8* wire, u64 rows, u32 hidden, const float* levels,
                                        void* out, int dtype) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    u64 row = i / hidden;
    u8 b = wire[row * (4 + (u64)hidden) + 4 + i % hidden];
    float x = levels[b & 0x7f] * mulaw_scale(wire, row, hidden);
    sb_store(out, i, dtype, (b & 0x80) ? -x : x);
}
