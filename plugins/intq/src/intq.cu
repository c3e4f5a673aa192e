// int8-token on the device: per row an f32 scale (absmax / 127), then one i8 per element.

// One warp per row: the row's scale into wire[4 * row]; flag |= 1 on NaN/Inf.
extern "C" __global__ void intq_token_scales(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                             u32* flag) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= rows) return;
    float amax = sb_row_absmax(x, dtype, row, hidden, flag);
    if ((threadIdx.x & 31) == 0) sb_put_f32(wire + 4 * row, amax / 127.0f);
}

// One thread per element.
extern "C" __global__ void intq_token_encode(const void* x, int dtype, u64 rows, u32 hidden, u8* wire) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    float s = sb_get_f32(wire + 4 * (i / hidden));
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    float q = sb_clamp(sb_round(sb_load(x, i, dtype) * inv), -127.0f, 127.0f);
    wire[4 * rows + i] = (u8)(signed char)(int)q;
}

extern "C" __global__ void intq_token_decode(void* out, int dtype, u64 rows, u32 hidden, const u8* wire) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * hidden) return;
    float s = sb_get_f32(wire + 4 * (i / hidden));
    sb_store(out, i, dtype, (float)(signed char)wire[4 * rows + i] * s);
}
