// outlier on the device: the host path's wire, byte for byte. Scratch (u32 words, in the
// wire buffer after the longest payload): [0] NaN/Inf flag, [1] total outliers (value mode)
// or outlier channels (channel mode), then per-row offsets (rows + 1, value mode) or the
// channel bitmask and the ordered channel list (channel mode). Kernels over the hidden state
// take it first: (values, dtype, rows, hidden, ...).

__device__ __forceinline__ void ol_put_u16(u8* p, u16 v) { p[0] = (u8)(v & 0xFF); p[1] = (u8)(v >> 8); }
__device__ __forceinline__ u32 ol_get_count(const u8* p, u32 width) {
    u32 v = (u32)p[0] | ((u32)p[1] << 8);
    if (width == 4) v |= ((u32)p[2] << 16) | ((u32)p[3] << 24);
    return v;
}

// Value mode, one warp per row: the row's outlier count into the wire and offsets[row + 1].
extern "C" __global__ void ol_count_rows(const void* x, int dtype, u64 rows, u32 hidden, float threshold,
                                         u8* wire, u32 width, u32* scratch) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u32 lane = threadIdx.x & 31;
    if (row >= rows) return;
    u32 count = 0, bad = 0;
    for (u32 c = lane; c < hidden; c += 32) {
        float v = sb_load(x, row * hidden + c, dtype);
        if (!sb_is_finite(v)) bad = 1;
        if (fabsf(v) > threshold) count++;
    }
    for (int offset = 16; offset > 0; offset >>= 1) count += __shfl_xor_sync(0xFFFFFFFFu, count, offset);
    bad = sb_warp_or(bad);
    if (lane != 0) return;
    if (bad) atomicOr(&scratch[0], 1u);
    u8* p = wire + row * width;
    for (u32 k = 0; k < width; k++) p[k] = (u8)(count >> (8 * k));
    scratch[2 + row + 1] = count;
}

// Value mode, decode: counts from the wire into offsets[row + 1].
extern "C" __global__ void ol_read_counts(const u8* wire, u64 rows, u32 width, u32* scratch) {
    u64 row = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    scratch[2 + row + 1] = ol_get_count(wire + row * width, width);
}

// One block of 1024 threads: `items[1..=n]` (counts) become inclusive sums, items[0] = 0, and
// the total goes to *total.
extern "C" __global__ void ol_scan(u64 n, u32* items, u32* total) {
    __shared__ u32 partial[1024];
    u32 t = threadIdx.x;
    u64 chunk = (n + 1023) / 1024;
    u64 start = 1 + t * chunk;
    u64 end = start + chunk;
    if (end > n + 1) end = n + 1;
    u32 sum = 0;
    for (u64 i = start; i < end; i++) sum += items[i];
    partial[t] = sum;
    __syncthreads();
    if (t == 0) {
        u32 running = 0;
        for (u32 k = 0; k < 1024; k++) { u32 s = partial[k]; partial[k] = running; running += s; }
        items[0] = 0;
        *total = running;
    }
    __syncthreads();
    u32 running = partial[t];
    for (u64 i = start; i < end; i++) { running += items[i]; items[i] = running; }
}

// Value mode, one warp per row: `what` 0 ORs outlier positions into the zeroed position bits at
// wire + pos_off; `what` 1 writes outlier values as f16 at wire + val_off. Order within a row
// is column order, as on the host.
extern "C" __global__ void ol_scatter(const void* x, int dtype, u64 rows, u32 hidden, float threshold,
                                      u8* wire, u64 pos_off, u64 val_off, u32 bits, const u32* scratch,
                                      int what) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u32 lane = threadIdx.x & 31;
    if (row >= rows) return;
    u32 base = scratch[2 + row];
    u32 seen = 0;
    u32* words = (u32*)wire;
    for (u32 c0 = 0; c0 < hidden; c0 += 32) {
        u32 c = c0 + lane;
        float v = c < hidden ? sb_load(x, row * hidden + c, dtype) : 0.0f;
        bool hit = c < hidden && fabsf(v) > threshold;
        u32 ballot = __ballot_sync(0xFFFFFFFFu, hit);
        if (hit) {
            u64 j = base + seen + __popc(ballot & ((1u << lane) - 1u));
            if (what == 0) {
                u64 bit = pos_off * 8 + j * bits;
                u32 sh = (u32)(bit & 31);
                atomicOr(&words[bit >> 5], c << sh);
                if (sh + bits > 32) atomicOr(&words[(bit >> 5) + 1], c >> (32 - sh));
            } else {
                ol_put_u16(wire + val_off + 2 * j, sb_f32_to_f16(v));
            }
        }
        seen += __popc(ballot);
    }
}

// Value mode, decode, one warp per row: outliers over the dense values already in `out`.
extern "C" __global__ void ol_decode_values(void* out, int dtype, u64 rows, u32 hidden, const u8* wire,
                                            u32 width, u32 bits, const u32* scratch) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u32 lane = threadIdx.x & 31;
    if (row >= rows) return;
    u64 total = scratch[1];
    u64 pos_off = rows * width;
    u64 val_off = pos_off + (total * bits + 7) / 8;
    u32 base = scratch[2 + row], count = scratch[2 + row + 1] - base;
    for (u32 k = lane; k < count; k += 32) {
        u64 j = base + k;
        u32 p = sb_read_bits(wire + pos_off, j * bits, bits);
        const u8* q = wire + val_off + 2 * j;
        if (p < hidden) sb_store(out, row * hidden + p, dtype, sb_f16_to_f32((u16)(q[0] | (q[1] << 8))));
    }
}

// Channel mode, one thread per channel: bit c of the mask (zeroed) when any row exceeds.
extern "C" __global__ void ol_channel_mask(const void* x, int dtype, u64 rows, u32 hidden, float threshold,
                                           u32* scratch) {
    u32 c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= hidden) return;
    u32* mask = scratch + 2;
    bool hit = false, bad = false;
    for (u64 r = 0; r < rows; r++) {
        float v = sb_load(x, r * hidden + c, dtype);
        if (!sb_is_finite(v)) bad = true;
        if (fabsf(v) > threshold) hit = true;
    }
    if (bad) atomicOr(&scratch[0], 1u);
    if (hit) atomicOr(&mask[c >> 5], 1u << (c & 31));
}

// Channel mode, one block of 1024 threads: the set mask bits as an ordered channel list, and
// their count in scratch[1].
extern "C" __global__ void ol_channel_list(u32 hidden, u32* scratch) {
    __shared__ u32 partial[1024];
    const u32* mask = scratch + 2;
    u32* list = scratch + 2 + (hidden + 31) / 32;
    u32 t = threadIdx.x;
    u32 chunk = (hidden + 1023) / 1024;
    u32 start = t * chunk, end = min(start + chunk, hidden);
    u32 count = 0;
    for (u32 c = start; c < end; c++) count += (mask[c >> 5] >> (c & 31)) & 1u;
    partial[t] = count;
    __syncthreads();
    if (t == 0) {
        u32 running = 0;
        for (u32 k = 0; k < 1024; k++) { u32 s = partial[k]; partial[k] = running; running += s; }
        scratch[1] = running;
    }
    __syncthreads();
    u32 at = partial[t];
    for (u32 c = start; c < end; c++)
        if ((mask[c >> 5] >> (c & 31)) & 1u) list[at++] = c;
}

// Channel mode: the u32 count and the bit-packed channel list, one thread per byte of it.
extern "C" __global__ void ol_channel_header(u8* wire, u32 hidden, u32 count, u32 bits, const u32* scratch) {
    u64 byte = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    u64 packed_len = ((u64)count * bits + 7) / 8;
    const u32* list = scratch + 2 + (hidden + 31) / 32;
    if (byte < 4) wire[byte] = (u8)(count >> (8 * byte));
    if (byte >= packed_len) return;
    u8 out;
#define OL_CHANNEL_AT(i) list[(i)]
    SB_PACKED_BYTE(out, byte, (u64)bits, (u64)count, OL_CHANNEL_AT);
#undef OL_CHANNEL_AT
    wire[4 + byte] = out;
}

// Channel mode: per token the f16 values of the outlier channels, one thread per value.
extern "C" __global__ void ol_channel_values(const void* x, int dtype, u64 rows, u32 hidden, u32 count,
                                             u8* wire, u64 val_off, const u32* scratch) {
    u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= rows * count) return;
    const u32* list = scratch + 2 + (hidden + 31) / 32;
    u64 row = e / count;
    float v = sb_load(x, row * hidden + list[e % count], dtype);
    ol_put_u16(wire + val_off + 2 * e, sb_f32_to_f16(v));
}

// Channel mode, decode, one warp per row: outlier channels over the dense values in `out`.
extern "C" __global__ void ol_channel_decode(void* out, int dtype, u64 rows, u32 hidden, const u8* wire,
                                             u32 bits) {
    u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u32 lane = threadIdx.x & 31;
    if (row >= rows) return;
    u32 count = ol_get_count(wire, 4);
    if (count > hidden) return;
    u64 val_off = 4 + ((u64)count * bits + 7) / 8;
    for (u32 k = lane; k < count; k += 32) {
        u32 c = sb_read_bits(wire + 4, (u64)k * bits, bits);
        const u8* q = wire + val_off + 2 * (row * count + k);
        if (c < hidden) sb_store(out, row * hidden + c, dtype, sb_f16_to_f32((u16)(q[0] | (q[1] << 8))));
    }
}
