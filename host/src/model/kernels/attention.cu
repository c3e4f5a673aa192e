// Causal attention in one pass (flash-attention's online softmax on CUDA cores): the scores
// of a block of queries against one tile of keys at a time, never the [b, heads, t, t] matrix.
// q [b, heads, t, d], k and v [b, kv_heads, t, d], contiguous, in `dtype`; out [b, t, heads, d]
// in `dtype`. Query i of row r sees keys j with lo <= j < min(i + 1, lengths[r]), where
// lo = i + 1 - window when a window is set (window 0: none); a query that sees no key gets 0.
// Scores, softmax and sums are f32, the products fused multiply-adds (written out: kernels are
// compiled with --fmad=false). d <= SB_ATT_MAX_D and d % 4 == 0 (the host checks).
//
// A block of 128 threads (4 warps) takes SB_ATT_BQ = 16 queries of one (row, head), each warp
// 4 of them. Per tile of 32 keys: lane j scores key j against the warp's 4 queries (float4
// reads: the queries' broadcast, its key row padded to 132 floats so the 32 lanes hit distinct
// banks), the warp updates each query's running max and sum, and each lane accumulates 4
// output dimensions (lane, lane + 32, ...) over the tile's 32 keys.
#define SB_ATT_BQ 16
#define SB_ATT_BK 32
#define SB_ATT_MAX_D 128
#define SB_ATT_KS (SB_ATT_MAX_D + 4)

extern "C" __global__ void sb_causal_attention(const void* q, const void* k, const void* v, void* out,
                                               int dtype, u32 heads, u32 kv_heads, u32 t, u32 d,
                                               const u32* lengths, u32 window, float scale) {
    // float4 arrays, so that the float4 reads below are aligned.
    __shared__ float4 qs4[SB_ATT_BQ * SB_ATT_MAX_D / 4];
    __shared__ float4 ks4[SB_ATT_BK * SB_ATT_KS / 4];
    __shared__ float4 vs4[SB_ATT_BK * SB_ATT_MAX_D / 4];
    __shared__ float4 ps4[4 * SB_ATT_BK];
    float* qs = (float*)qs4;
    float* ks = (float*)ks4;
    float* vs = (float*)vs4;
    float* ps = (float*)ps4;
    const u32 tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const u32 blocks_per_head = (t + SB_ATT_BQ - 1) / SB_ATT_BQ;
    const u32 bh = blockIdx.x / blocks_per_head;
    const u32 row = bh / heads, head = bh % heads;
    const u32 kv_head = head / (heads / kv_heads);
    const u32 i0 = (blockIdx.x % blocks_per_head) * SB_ATT_BQ;
    const u32 len = lengths[row];
    const u64 q_base = ((u64)bh * t) * d;
    const u64 kv_base = ((u64)(row * kv_heads + kv_head) * t) * d;

    for (u32 e = tid; e < SB_ATT_BQ * d; e += blockDim.x) {
        u32 i = e / d, c = e % d;
        qs[i * SB_ATT_MAX_D + c] = i0 + i < t ? sb_load(q, q_base + (u64)(i0 + i) * d + c, dtype) * scale : 0.0f;
    }
    const u32 step_rows = blockDim.x / d, step_cols = blockDim.x % d;
    // Keys any query of the block sees: [lo of the first, hi of the last).
    const u32 last = min(i0 + SB_ATT_BQ, t) - 1;
    const u32 keys_lo = window > 0 && i0 + 1 > window ? i0 + 1 - window : 0;
    const u32 keys_hi = min(last + 1, len);

    float m[4], l[4], acc[4][4];
    for (int a = 0; a < 4; a++) {
        m[a] = -SB_INF;
        l[a] = 0.0f;
        for (int b = 0; b < 4; b++) acc[a][b] = 0.0f;
    }
    for (u32 j0 = keys_lo; j0 < keys_hi; j0 += SB_ATT_BK) {
        __syncthreads();
        // The tile is 32 consecutive rows of d: thread tid takes elements tid, tid + 128, ...,
        // whose (row, column) advance by a fixed step, without a division per element.
        for (u32 j = tid / d, c = tid % d; j < SB_ATT_BK; j += step_rows, c += step_cols) {
            if (c >= d) {
                c -= d;
                j++;
                if (j >= SB_ATT_BK) break;
            }
            bool in = j0 + j < keys_hi;
            u64 at = kv_base + (u64)(j0 + j) * d + c;
            ks[j * SB_ATT_KS + c] = in ? sb_load(k, at, dtype) : 0.0f;
            vs[j * SB_ATT_MAX_D + c] = in ? sb_load(v, at, dtype) : 0.0f;
        }
        __syncthreads();
        const u32 j = j0 + lane;
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (u32 c = 0; c < d; c += 4) {
            float4 kc = *(const float4*)&ks[lane * SB_ATT_KS + c];
            for (int a = 0; a < 4; a++) {
                float4 qc = *(const float4*)&qs[(warp * 4 + a) * SB_ATT_MAX_D + c];
                s[a] = fmaf(qc.x, kc.x, s[a]);
                s[a] = fmaf(qc.y, kc.y, s[a]);
                s[a] = fmaf(qc.z, kc.z, s[a]);
                s[a] = fmaf(qc.w, kc.w, s[a]);
            }
        }
        for (int a = 0; a < 4; a++) {
            const u32 i = i0 + warp * 4 + a;
            const u32 lo = window > 0 && i + 1 > window ? i + 1 - window : 0;
            const bool seen = i < t && j >= lo && j < min(i + 1, len);
            const float score = seen ? s[a] : -SB_INF;
            const float m_new = fmaxf(m[a], sb_warp_max(score));
            // Nothing seen yet: no weight, nothing to rescale.
            const float p = seen ? expf(score - m_new) : 0.0f;
            const float rescale = m[a] == -SB_INF ? 0.0f : expf(m[a] - m_new);
            l[a] = l[a] * rescale + sb_warp_sum(p);
            m[a] = m_new;
            for (int b = 0; b < 4; b++) acc[a][b] *= rescale;
            ps[(warp * SB_ATT_BK + lane) * 4 + a] = p;
        }
        __syncthreads();
        for (u32 jj = 0; jj < SB_ATT_BK; jj++) {
            float4 p = *(const float4*)&ps[(warp * SB_ATT_BK + jj) * 4];
            for (int b = 0; b < 4; b++) {
                u32 c = lane + 32 * b;
                float vc = c < d ? vs[jj * SB_ATT_MAX_D + c] : 0.0f;
                acc[0][b] = fmaf(p.x, vc, acc[0][b]);
                acc[1][b] = fmaf(p.y, vc, acc[1][b]);
                acc[2][b] = fmaf(p.z, vc, acc[2][b]);
                acc[3][b] = fmaf(p.w, vc, acc[3][b]);
            }
        }
    }
    for (int a = 0; a < 4; a++) {
        const u32 i = i0 + warp * 4 + a;
        if (i >= t) continue;
        const float inv = l[a] > 0.0f ? 1.0f / l[a] : 0.0f;
        const u64 o = (((u64)row * t + i) * heads + head) * d;
        for (int b = 0; b < 4; b++) {
            u32 c = lane + 32 * b;
            if (c < d) sb_store(out, o + c, dtype, acc[a][b] * inv);
        }
    }
}
