// cast on the device: fp16/bf16 element casts and fp8 (saturating, optionally per-token
// scaled), writing the host path's wire formats. Every kernel takes the tensor first:
// (values, dtype, rows, hidden, wire, ...).

extern "C" __global__ void cast_half_encode(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                            int target) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    if (dtype == target) ((u16*)wire)[i] = ((const u16*)x)[i];
    else sb_store(wire, i, target, sb_load(x, i, dtype));
}

extern "C" __global__ void cast_half_decode(void* out, int dtype, u64 rows, u32 hidden, const u8* wire,
                                            int source) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    if (dtype == source) ((u16*)out)[i] = ((const u16*)wire)[i];
    else sb_store(out, i, dtype, sb_load(wire, i, source));
}

// `limit` is the host path's limit (Fp8::max: 448 for e4m3, 57344 for e5m2, the formats' largest
// finite values), passed in so that both paths saturate at the same value.
__device__ __forceinline__ u8 cast_fp8_encode_value(float v, int kind, float limit) {
    v = sb_is_finite(v) ? sb_clamp(v, -limit, limit) : __int_as_float(0x7fc00000);
    return sb_f64_to_fp8((double)v, kind);
}

// f32 rounded to the model dtype, as a torch op on that dtype rounds its result.
__device__ __forceinline__ float cast_via_dtype(float v, int dtype) {
    if (dtype == SB_F16) return sb_via_f16(v);
    if (dtype == SB_BF16) return sb_bf16_to_f32(sb_f32_to_bf16(v));
    return v;
}

// One warp per row: f32 scale into wire[4 * row]. TorchAO's Float8Tensor.from_hp row scale,
// absmax / limit computed in the model dtype; 1 where that is 0 (Rust: per_token_scale).
extern "C" __global__ void cast_fp8_scales(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                           u32* flag, float limit) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= rows) return;
    float amax = sb_row_absmax(x, dtype, row, hidden, flag);
    float scale = cast_via_dtype(amax / limit, dtype);
    if ((threadIdx.x & 31) == 0) sb_put_f32(wire + 4 * row, scale > 0.0f ? scale : 1.0f);
}

// One thread per element; `scaled` reads the row scales at the start of the wire.
extern "C" __global__ void cast_fp8_encode(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                           int kind, float limit, int scaled) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    float v = sb_load(x, i, dtype);
    if (scaled) {
        wire[4 * rows + i] = cast_fp8_encode_value(v / sb_get_f32(wire + 4 * (i / hidden)), kind, limit);
    } else {
        wire[i] = cast_fp8_encode_value(v, kind, limit);
    }
}

extern "C" __global__ void cast_fp8_decode(void* out, int dtype, u64 rows, u32 hidden, const u8* wire,
                                           int kind, int scaled) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    float v;
    if (scaled) v = sb_fp8_to_f32(wire[4 * rows + i], kind) * sb_get_f32(wire + 4 * (i / hidden));
    else v = sb_fp8_to_f32(wire[i], kind);
    sb_store(out, i, dtype, v);
}
