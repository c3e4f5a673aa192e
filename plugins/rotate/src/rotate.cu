// rotate on the device: the randomized Hadamard rotation into f32 scratch, then quant's
// blockwise kernels (block_kernels), and back. Same f32 operations in the same order as the
// host path's rotate / unrotate, so the wire is the host's byte for byte. One thread block per
// token; kernels take the tensor first, (values, dtype, rows, hidden, ...).

#define ROT_GAMMA 0x9E3779B97F4A7C15ull

__device__ __forceinline__ u64 rot_mix(u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// ±1 of channel c: bit c % 64 of splitmix64's output number c / 64 from `seed` (the
// generator's state before that output is seed + (c / 64 + 1) * gamma).
__device__ __forceinline__ float rot_sign(u64 seed, u32 c) {
    u64 word = rot_mix(seed + ((u64)(c / 64) + 1) * ROT_GAMMA);
    return (word >> (c % 64)) & 1 ? -1.0f : 1.0f;
}

// The host's fwht on each power-of-two block of one token (largest first), the thread block
// sharing the stages: a + b, a - b for every pair at distance h = 1, 2, 4, ..., then × 1/√n.
__device__ void rot_fwht_row(float* v, u32 hidden) {
    u32 start = 0;
    for (int bit = 31; bit >= 0; bit--) {
        u32 n = 1u << bit;
        if ((hidden & n) == 0) continue;
        for (u32 h = 1; h < n; h *= 2) {
            for (u32 p = threadIdx.x; p < n / 2; p += blockDim.x) {
                u32 i = start + (p / h) * 2 * h + p % h;
                float a = v[i], b = v[i + h];
                v[i] = a + b;
                v[i + h] = a - b;
            }
            __syncthreads();
        }
        float norm = 1.0f / sqrtf((float)n);
        for (u32 p = threadIdx.x; p < n; p += blockDim.x) v[start + p] *= norm;
        __syncthreads();
        start += n;
    }
}

// One thread block per token: signs, then the transform, into `rotated` (f32, rows × hidden);
// flag |= 1 on NaN/Inf. Block 0 also writes the seed at wire[0..8].
extern "C" __global__ void rot_forward(const void* x, int dtype, u64 rows, u32 hidden, float* rotated,
                                       u32* flag, u64 seed, u8* wire) {
    u64 row = blockIdx.x;
    if (row >= rows) return;
    float* v = rotated + row * hidden;
    u32 bad = 0;
    for (u32 c = threadIdx.x; c < hidden; c += blockDim.x) {
        float value = sb_load(x, row * hidden + c, dtype);
        if (!sb_is_finite(value)) bad = 1;
        v[c] = value * rot_sign(seed, c);
    }
    if (bad) atomicOr(flag, 1u);
    __syncthreads();
    rot_fwht_row(v, hidden);
    if (row == 0 && threadIdx.x < 8) wire[threadIdx.x] = (u8)(seed >> (8 * threadIdx.x));
}

// One thread block per token: the transform (its own inverse), then the signs from the wire's
// seed, into the output in the model dtype.
extern "C" __global__ void rot_inverse(void* out, int dtype, u64 rows, u32 hidden, float* rotated,
                                       const u8* wire) {
    u64 row = blockIdx.x;
    if (row >= rows) return;
    u64 seed = 0;
    for (int k = 0; k < 8; k++) seed |= (u64)wire[k] << (8 * k);
    float* v = rotated + row * hidden;
    rot_fwht_row(v, hidden);
    for (u32 c = threadIdx.x; c < hidden; c += blockDim.x) {
        sb_store(out, row * hidden + c, dtype, v[c] * rot_sign(seed, c));
    }
}
