// CPU emulation of the CUDA C subset device codecs use, for testkit::assert_device_matches_host:
// the emulated driver (driver.c) compiles a module's source with this header in front, as C++.
// Blocks run one after another; each block's threads run as OS threads, warps in lockstep at
// every shuffle and ballot, the block at every __syncthreads. "Device" pointers are host ones.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define SB_EMULATE 1
#define __global__
#define __device__
#define __forceinline__ inline
// Blocks run one at a time, so one static array serves as each block's shared memory.
#define __shared__ static

struct alignas(16) float4 {
    float x, y, z, w;
};
struct sb_emu_dim3 {
    unsigned x, y, z;
};
static thread_local sb_emu_dim3 threadIdx, blockIdx;
static sb_emu_dim3 blockDim, gridDim;

struct sb_emu_warp {
    std::barrier<> step{32};
    uint64_t slot[32];
};
static sb_emu_warp* sb_emu_warps;
static std::barrier<>* sb_emu_block;
static thread_local unsigned sb_emu_lane, sb_emu_warp_index;

#define __syncthreads() sb_emu_block->arrive_and_wait()

template <class T>
static T __shfl_xor_sync(unsigned, T v, int offset) {
    sb_emu_warp& w = sb_emu_warps[sb_emu_warp_index];
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    w.slot[sb_emu_lane] = bits;
    w.step.arrive_and_wait();
    bits = w.slot[sb_emu_lane ^ (unsigned)offset];
    w.step.arrive_and_wait();
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}

static unsigned __ballot_sync(unsigned, bool predicate) {
    sb_emu_warp& w = sb_emu_warps[sb_emu_warp_index];
    w.slot[sb_emu_lane] = predicate;
    w.step.arrive_and_wait();
    unsigned ballot = 0;
    for (unsigned lane = 0; lane < 32; lane++) ballot |= (unsigned)(w.slot[lane] != 0) << lane;
    w.step.arrive_and_wait();
    return ballot;
}

static unsigned atomicOr(unsigned* address, unsigned value) {
    return __atomic_fetch_or(address, value, __ATOMIC_SEQ_CST);
}
static int __popc(unsigned v) { return __builtin_popcount(v); }
template <class T>
static T min(T a, T b) { return a < b ? a : b; }
static unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
static float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
static float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static long long __double_as_longlong(double d) { long long l; std::memcpy(&l, &d, 8); return l; }

// IEEE binary16 <-> binary32, round to nearest even: the `half` crate's software conversions,
// which the PTX cvt instructions match on finite values.
static float sb_emu_f16_to_f32(unsigned short h) {
    unsigned sign = (unsigned)(h & 0x8000u) << 16, exp = h & 0x7C00u, man = h & 0x03FFu;
    if ((h & 0x7FFFu) == 0) return __uint_as_float(sign);
    if (exp == 0x7C00u) return __uint_as_float(sign | 0x7F800000u | (man ? 0x00400000u | (man << 13) : 0));
    if (exp == 0) return std::ldexp((float)man, -24) * (sign ? -1.0f : 1.0f);
    return __uint_as_float(sign | ((((exp >> 10) - 15 + 127)) << 23) | (man << 13));
}

static unsigned short sb_emu_f32_to_f16(float value) {
    unsigned x = __float_as_uint(value);
    unsigned sign = x & 0x80000000u, exp = x & 0x7F800000u, man = x & 0x007FFFFFu;
    if (exp == 0x7F800000u) {
        unsigned nan_bit = man == 0 ? 0 : 0x0200u;
        return (unsigned short)((sign >> 16) | 0x7C00u | nan_bit | (man >> 13));
    }
    unsigned half_sign = sign >> 16;
    int half_exp = (int)(exp >> 23) - 127 + 15;
    if (half_exp >= 0x1F) return (unsigned short)(half_sign | 0x7C00u);
    if (half_exp <= 0) {
        if (14 - half_exp > 24) return (unsigned short)half_sign;
        unsigned m = man | 0x00800000u;
        unsigned half_man = m >> (14 - half_exp);
        unsigned round_bit = 1u << (13 - half_exp);
        if ((m & round_bit) != 0 && (m & (3 * round_bit - 1)) != 0) half_man++;
        return (unsigned short)(half_sign | half_man);
    }
    unsigned bits = half_sign | ((unsigned)half_exp << 10) | (man >> 13);
    unsigned round_bit = 0x00001000u;
    if ((man & round_bit) != 0 && (man & (3 * round_bit - 1)) != 0) bits++;
    return (unsigned short)bits;
}

template <class... A, std::size_t... I>
static void sb_emu_call(void (*kernel)(A...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<A>*>(params[I])...);
}

// Runs `kernel` over `grid` blocks of `block` threads (block a multiple of 32).
template <class... A>
static void sb_emu_launch(void (*kernel)(A...), unsigned grid, unsigned block, void** params) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned b = 0; b < grid; b++) {
        std::vector<sb_emu_warp> warps(block / 32);
        std::barrier<> whole(block);
        sb_emu_warps = warps.data();
        sb_emu_block = &whole;
        std::vector<std::thread> threads;
        threads.reserve(block);
        for (unsigned t = 0; t < block; t++) {
            threads.emplace_back([=] {
                threadIdx = {t, 0, 0};
                blockIdx = {b, 0, 0};
                sb_emu_lane = t % 32;
                sb_emu_warp_index = t / 32;
                sb_emu_call(kernel, params, std::index_sequence_for<A...>{});
            });
        }
        for (auto& thread : threads) thread.join();
    }
}
