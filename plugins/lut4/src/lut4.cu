// lut4 on the device: bitsandbytes' NF4 / FP4 over the flattened tensor, writing the host
// path's wire (f32 absmax per block, then two codes a byte, the first in the high nibble).
// Kernels take the tensor first, (values, dtype, rows, hidden, ...), as RowArgs passes it; the
// code table, its bucket bounds and sort order come from the host's Table by value.

struct lut4_table {
    float code[16];
    float bounds[15];
    unsigned char order[16];
};

// Below this absmax bitsandbytes clamps the divisor (and a partial block's stored absmax).
#define LUT4_MIN_ABSMAX 1e-38f

// torch.bucketize(s, bounds): the number of bounds strictly below s, through the sort order.
__device__ __forceinline__ u8 lut4_quantize(float s, const lut4_table* t) {
    u32 k = 0;
    while (k < 15 && t->bounds[k] < s) k++;
    return t->order[k];
}

// One warp per block of `block` values: the stored absmax (clamped for a short last block);
// flag |= 1 on NaN/Inf.
extern "C" __global__ void lut4_absmax(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                       u32* flag, u64 block) {
    u64 n = rows * hidden;
    u64 b = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (b >= (n + block - 1) / block) return;
    u32 lane = threadIdx.x & 31;
    u64 start = b * block;
    u64 end = start + block < n ? start + block : n;
    float amax = 0.0f;
    u32 bad = 0;
    for (u64 i = start + lane; i < end; i += 32) {
        float v = sb_load(x, i, dtype);
        if (!sb_is_finite(v)) bad = 1;
        amax = fmaxf(amax, fabsf(v));
    }
    amax = sb_warp_max(amax);
    if (sb_warp_or(bad) && lane == 0) atomicOr(flag, 1u);
    if (lane == 0) sb_put_f32(wire + 4 * b, end - start < block ? fmaxf(amax, LUT4_MIN_ABSMAX) : amax);
}

// Full blocks scale by x * (1 / absmax), the short last block by x / absmax, as bitsandbytes.
__device__ __forceinline__ u8 lut4_code(const void* x, int dtype, u64 i, u64 n, u64 block,
                                        const u8* wire, const lut4_table* t) {
    float c = fmaxf(sb_get_f32(wire + 4 * (i / block)), LUT4_MIN_ABSMAX);
    float v = sb_load(x, i, dtype);
    float s = i >= n / block * block ? v / c : v * (1.0f / c);
    return lut4_quantize(sb_clamp(s, -1.0f, 1.0f), t);
}

// One thread per wire byte: two codes; an odd count ends with the code of 0.0.
extern "C" __global__ void lut4_encode(const void* x, int dtype, u64 rows, u32 hidden, u8* wire,
                                       u64 block, lut4_table t) {
    u64 n = rows * hidden;
    u64 j = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= (n + 1) / 2) return;
    u64 blocks = (n + block - 1) / block;
    u8 hi = lut4_code(x, dtype, 2 * j, n, block, wire, &t);
    u8 lo = 2 * j + 1 < n ? lut4_code(x, dtype, 2 * j + 1, n, block, wire, &t) : lut4_quantize(0.0f, &t);
    wire[4 * blocks + j] = (u8)((hi << 4) | lo);
}

// One thread per value: code[q] * absmax in f32, rounded to the model dtype.
extern "C" __global__ void lut4_decode(void* out, int dtype, u64 rows, u32 hidden, const u8* wire,
                                       u64 block, lut4_table t) {
    u64 n = rows * hidden;
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u64 blocks = (n + block - 1) / block;
    u8 byte = wire[4 * blocks + i / 2];
    u8 q = (i & 1) ? (byte & 15) : (byte >> 4);
    sb_store(out, i, dtype, t.code[q] * sb_get_f32(wire + 4 * (i / block)));
}
