// The elementwise steps of a layer, each one pass over memory where candle runs two or more
// kernels: residual add + RMSNorm, RoPE + the heads-first transpose, SiLU(gate) · up. Inputs and
// outputs in `dtype` (the model's), arithmetic in f32 rounded once per output; compiled with
// --fmad=false, so the f32 products and sums round as the CPU path's do.

// sum = x + residual (rounded to dtype), out = sum / rms(sum) · weight, over rows of `dim`;
// residual null: out = x / rms(x) · weight. One warp per row; weight in dtype.
extern "C" __global__ void sb_add_rms_norm(const void* x, const void* residual, void* sum, const void* weight,
                                           void* out, int dtype, u32 rows, u32 dim, float eps) {
    const u32 row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (row >= rows) return;
    const u64 base = (u64)row * dim;
    // The normed values: the rounded sum, read back by the lane that wrote it.
    const void* normed = residual ? sum : x;
    float squares = 0.0f;
    for (u32 c = lane; c < dim; c += 32) {
        float v = sb_load(x, base + c, dtype);
        if (residual) {
            sb_store(sum, base + c, dtype, v + sb_load(residual, base + c, dtype));
            v = sb_load(sum, base + c, dtype);
        }
        squares += v * v;
    }
    const float inv = 1.0f / sqrtf(sb_warp_sum(squares) / (float)dim + eps);
    for (u32 c = lane; c < dim; c += 32) {
        sb_store(out, base + c, dtype, sb_load(normed, base + c, dtype) * inv * sb_load(weight, c, dtype));
    }
}

// x [b, t, heads, d] (as the projection lays it out) to out [b, heads, t, d], the first `rot`
// dimensions of each head rotated by the angles of its position: cos, sin [t, rot / 2] in
// dtype. `interleaved` pairs dimension 2i with 2i + 1, otherwise i with i + rot / 2. One thread
// per output element.
extern "C" __global__ void sb_rope_heads_first(const void* x, const void* cos, const void* sin, void* out,
                                               int dtype, u32 t, u32 heads, u32 d, u32 rot, int interleaved,
                                               u64 total) {
    const u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= total) return;
    const u32 c = (u32)(e % d);
    const u64 ti = e / d;
    const u32 i = (u32)(ti % t);
    const u64 bh = ti / t;
    const u32 head = (u32)(bh % heads);
    const u64 row = bh / heads;
    const u64 src = ((row * t + i) * heads + head) * d;
    if (c >= rot) {
        sb_store(out, e, dtype, sb_load(x, src + c, dtype));
        return;
    }
    const u32 half = rot / 2;
    const u32 p = interleaved ? c / 2 : c % half;
    const u32 a = interleaved ? 2 * p : p, b = interleaved ? 2 * p + 1 : p + half;
    const float xa = sb_load(x, src + a, dtype), xb = sb_load(x, src + b, dtype);
    const float co = sb_load(cos, (u64)i * half + p, dtype), si = sb_load(sin, (u64)i * half + p, dtype);
    sb_store(out, e, dtype, c == a ? xa * co - xb * si : xa * si + xb * co);
}

// out = silu(gate) · up = gate / (1 + exp(-gate)) · up, for n elements.
extern "C" __global__ void sb_silu_mul(const void* gate, const void* up, void* out, int dtype, u64 n) {
    const u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n) return;
    const float g = sb_load(gate, e, dtype);
    sb_store(out, e, dtype, g / (1.0f + expf(-g)) * sb_load(up, e, dtype));
}
