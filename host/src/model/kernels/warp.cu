// Warp collectives the model's kernels share (the prelude has max, min and or).
__device__ __forceinline__ float sb_warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
    return v;
}
