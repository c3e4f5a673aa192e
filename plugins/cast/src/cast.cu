// cast on the device: fp16/bf16 element casts and fp8 (saturating, optionally per-token
// scaled), writing the host path's wire formats.

extern "C" __global__ void cast_half_encode(const void* x, int dtype, u64 n, u8* wire, int target) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (dtype == target) ((u16*)wire)[i] = ((const u16*)x)[i];
    else sb_store(wire, i, target, sb_load(x, i, dtype));
}

extern "C" __global__ void cast_half_decode(const u8* wire, u64 n, int source, void* out, int dtype) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (dtype == source) ((u16*)out)[i] = ((const u16*)wire)[i];
    else sb_store(out, i, dtype, sb_load(wire, i, source));
}

__device__ __forceinline__ float cast_fp8_max(int kind) { return kind == SB_E4M3 ? 448.0f : 57344.0f; }

__device__ __forceinline__ u8 cast_fp8_encode_value(float v, int kind) {
    float m = cast_fp8_max(kind);
    v = sb_is_finite(v) ? sb_clamp(v, -m, m) : __int_as_float(0x7fc00000);
    return sb_f64_to_fp8((double)v, kind);
}

__device__ __forceinline__ float cast_row_scale(const u8* wire, u64 row) {
    const u8* p = wire + 4 * row;
    return __uint_as_float((u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24));
}

// One warp per row: f32 scale (absmax / format max, 1 for an all-zero row) into wire[4 * row].
extern "C" __global__ void cast_fp8_scales(const void* x, int dtype, u64 rows, u32 hidden, int kind,
                                           u8* wire, u32* flag) {
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
    float scale = amax > 0.0f ? amax / cast_fp8_max(kind) : 1.0f;
    u32 bits = __float_as_uint(scale);
    for (int k = 0; k < 4; k++) wire[4 * row + k] = (u8)(bits >> (8 * k));
}

// One thread per element; `scaled` reads the row scales at the start of the wire.
extern "C" __global__ void cast_fp8_encode(const void* x, int dtype, u64 rows, u32 hidden, int kind,
                                           int scaled, u8* wire) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    float v = sb_load(x, i, dtype);
    if (scaled) {
        wire[4 * rows + i] = cast_fp8_encode_value(v / cast_row_scale(wire, i / hidden), kind);
    } else {
        wire[i] = cast_fp8_encode_value(v, kind);
    }
}

extern "C" __global__ void cast_fp8_decode(const u8* wire, u64 rows, u32 hidden, int kind, int scaled,
                                           void* out, int dtype) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    float v;
    if (scaled) v = sb_fp8_to_f32(wire[4 * rows + i], kind) * cast_row_scale(wire, i / hidden);
    else v = sb_fp8_to_f32(wire[i], kind);
    sb_store(out, i, dtype, v);
}
