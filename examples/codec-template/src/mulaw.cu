// mulaw on the device. splitbench's prelude (types, sb_load/sb_store, sb_row_absmax, ...) comes
// first. Wire: per token an f32 scale, then one byte per value, as on the host. Kernels take
// the tensor first, (values, dtype, rows, hidden, ...), as RowArgs passes it.

// One warp per row: the row's absmax scale; flag |= 1 on NaN/Inf.
extern "C" __global__ void mulaw_scales(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                        u32* flag) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= rows) return;
    float amax = sb_row_absmax(x, dtype, row, hidden, flag);
    if ((threadIdx.x & 31) == 0) sb_put_f32(wire + row * (4 + (u64)hidden), amax);
}

__device__ __forceinline__ float mulaw_scale(const u8* wire, u64 row, u32 hidden) {
    return sb_get_f32(wire + row * (4 + (u64)hidden));
}

// The host's tables, passed by value as kernel parameters (no upload, nothing to cache).
struct mulaw_steps { float at[127]; };
struct mulaw_levels { float at[128]; };

// One thread per value: the code is the number of steps at or below |v| / scale.
extern "C" __global__ void mulaw_encode(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                        mulaw_steps steps) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    u64 row = i / hidden;
    float v = sb_load(x, i, dtype);
    float scale = mulaw_scale(wire, row, hidden);
    float m = scale > 0.0f ? fabsf(v / scale) : 0.0f;
    u32 lo = 0, hi = 127;
    while (lo < hi) {
        u32 mid = (lo + hi) / 2;
        if (steps.at[mid] <= m) lo = mid + 1; else hi = mid;
    }
    wire[row * (4 + (u64)hidden) + 4 + i % hidden] = (u8)(lo | (v < 0.0f ? 0x80u : 0u));
}

extern "C" __global__ void mulaw_decode(void* out, int dtype, u64 rows, u32 hidden, const u8* wire,
                                        mulaw_levels levels) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    u64 row = i / hidden;
    u8 b = wire[row * (4 + (u64)hidden) + 4 + i % hidden];
    float x = levels.at[b & 0x7f] * mulaw_scale(wire, row, hidden);
    sb_store(out, i, dtype, (b & 0x80) ? -x : x);
}
