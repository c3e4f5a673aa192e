//! Row maths on f32 slices, compiled for AVX-512 and AVX2 and chosen at run time.
//!
//! `exp` is Cephes' `expf` (Cody–Waite reduction, degree-6 polynomial, within 2 ulp of libm),
//! written so the compiler vectorizes it; sums and maxima keep 16 partial lanes for the same
//! reason.

const LANES: usize = 16;

/// The vector instructions the kernels run with on this CPU: gemm's matmuls (built with its
/// `x86-v4` feature, so AVX-512 where the CPU has it) and the functions of `vectorized!`
/// choose by the same test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorIsa {
    Avx512,
    Avx2Fma,
    Baseline,
}

impl VectorIsa {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return VectorIsa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return VectorIsa::Avx2Fma;
            }
        }
        VectorIsa::Baseline
    }
}

impl std::fmt::Display for VectorIsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VectorIsa::Avx512 => "AVX-512",
            VectorIsa::Avx2Fma => "AVX2+FMA",
            VectorIsa::Baseline => "no AVX2 (scalar/SSE kernels)",
        })
    }
}

/// A function compiled three times (AVX-512, AVX2+FMA, baseline x86-64) and chosen at run
/// time by `VectorIsa::detect`. No fast-math: every version computes the same IEEE operations
/// in the same order, so results do not depend on the CPU.
macro_rules! vectorized {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),*) -> $ret:ty $body:block) => {
        $(#[$m])* $vis fn $name($($a: $t),*) -> $ret {
            #[inline(always)]
            fn body($($a: $t),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($a: $t),*) -> $ret { body($($a),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($a: $t),*) -> $ret { body($($a),*) }
                match $crate::model::cpu::VectorIsa::detect() {
                    // SAFETY: the CPU has AVX-512F.
                    $crate::model::cpu::VectorIsa::Avx512 => return unsafe { avx512($($a),*) },
                    // SAFETY: the CPU has AVX2 and FMA.
                    $crate::model::cpu::VectorIsa::Avx2Fma => return unsafe { avx2($($a),*) },
                    $crate::model::cpu::VectorIsa::Baseline => {}
                }
            }
            body($($a),*)
        }
    };
}
pub(super) use vectorized;

#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 × 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LOW: f32 = -87.0;
    let xc = x.clamp(LOW, 88.0);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * 0.693_359_4;
    let r = r + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let bits = (t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23;
    let e = y * f32::from_bits(bits as u32);
    if x < LOW {
        0.0
    } else {
        e
    }
}

/// `out[r] = Σᵢ x[r·n + i]·w[i]` for the `out.len()` (at most 8) rows of `x`, n = `w.len()`:
/// each chunk of `w` is loaded once for every row. Fused multiply-adds in 16 partial sums,
/// added in lane order at the end, on every CPU (the same result everywhere).
pub fn dots(x: &[f32], w: &[f32], out: &mut [f32]) {
    assert!(
        out.len() <= 8 && x.len() >= out.len() * w.len(),
        "dots: {} rows of {} values do not fit x's {}",
        out.len(),
        w.len(),
        x.len()
    );
    #[cfg(target_arch = "x86_64")]
    if VectorIsa::detect() == VectorIsa::Avx512 {
        // SAFETY: the CPU has AVX-512F, and x holds out.len() rows of w.len() values.
        unsafe {
            match out.len() {
                1 => avx512_dots::<1>(x, w, out),
                2 => avx512_dots::<2>(x, w, out),
                3 => avx512_dots::<3>(x, w, out),
                4 => avx512_dots::<4>(x, w, out),
                5 => avx512_dots::<5>(x, w, out),
                6 => avx512_dots::<6>(x, w, out),
                7 => avx512_dots::<7>(x, w, out),
                _ => avx512_dots::<8>(x, w, out),
            }
        }
        return;
    }
    portable_dots(x, w, out)
}

/// `dots` for `R` rows, each row's 16 partial sums in one register (the compiler keeps
/// arrays of them on the stack, a store and a load per multiply-add).
///
/// # Safety
/// The CPU must have AVX-512F, and `x` at least `R · w.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_dots<const R: usize>(x: &[f32], w: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };
    let n = w.len();
    let full = n - n % LANES;
    let mut acc = [_mm512_setzero_ps(); R];
    for at in (0..full).step_by(LANES) {
        // SAFETY: at + 16 ≤ n, and row r's chunk lies within x's R · n values.
        unsafe {
            let wc = _mm512_loadu_ps(w.as_ptr().add(at));
            for (r, acc) in acc.iter_mut().enumerate() {
                let xc = _mm512_loadu_ps(x.as_ptr().add(r * n + at));
                *acc = _mm512_fmadd_ps(xc, wc, *acc);
            }
        }
    }
    for (r, o) in out.iter_mut().enumerate().take(R) {
        let mut lanes = [0f32; LANES];
        // SAFETY: lanes holds 16 values.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc[r]) };
        let tail: f32 = (full..n).map(|i| x[r * n + i] * w[i]).sum();
        *o = lanes.iter().sum::<f32>() + tail;
    }
}

vectorized! {
    /// `dots` where the CPU has no AVX-512.
    fn portable_dots(x: &[f32], w: &[f32], out: &mut [f32]) -> () {
        let n = w.len();
        let mut acc = [[0f32; LANES]; 8];
        let rows = out.len().min(8);
        let full = n - n % LANES;
        for at in (0..full).step_by(LANES) {
            let wc = &w[at..at + LANES];
            for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                let xc = &x[r * n + at..r * n + at + LANES];
                for ((s, &a), &b) in acc.iter_mut().zip(xc).zip(wc) {
                    *s = a.mul_add(b, *s);
                }
            }
        }
        for (r, o) in out.iter_mut().enumerate().take(rows) {
            let tail: f32 = (full..n).map(|i| x[r * n + i] * w[i]).sum();
            *o = acc[r].iter().sum::<f32>() + tail;
        }
    }
}

vectorized! {
    /// The largest value of a row (−∞ for an empty one).
    pub fn max(xs: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; LANES];
        let mut chunks = xs.chunks_exact(LANES);
        for c in &mut chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a = a.max(x);
            }
        }
        let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        acc.iter().fold(tail, |m, &a| m.max(a))
    }
}

vectorized! {
    /// Replaces each `x` by `exp(scale·x − shift)` and returns their sum: a softmax numerator.
    pub fn scaled_exp_sum(xs: &mut [f32], scale: f32, shift: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = xs.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (a, x) in acc.iter_mut().zip(c) {
                *x = exp(*x * scale - shift);
                *a += *x;
            }
        }
        let mut tail = 0f32;
        for x in chunks.into_remainder() {
            *x = exp(*x * scale - shift);
            tail += *x;
        }
        acc.iter().sum::<f32>() + tail
    }
}

vectorized! {
    /// `Σ exp(x − shift)`, reading only.
    fn shifted_exp_sum(xs: &[f32], shift: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = xs.chunks_exact(LANES);
        for c in &mut chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a += exp(x - shift);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&x| exp(x - shift)).sum();
        acc.iter().sum::<f32>() + tail
    }
}

vectorized! {
    /// KL(base ‖ codec) of two rows of logits whose log-sum-exps are given:
    /// `Σ p_base · (log p_base − log p_codec)`.
    pub fn kl_divergence(base: &[f32], base_lse: f32, codec: &[f32], codec_lse: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = base.chunks_exact(LANES).zip(codec.chunks_exact(LANES));
        for (b, c) in &mut chunks {
            for ((a, &b), &c) in acc.iter_mut().zip(b).zip(c) {
                let (lb, lc) = (b - base_lse, c - codec_lse);
                *a += exp(lb) * (lb - lc);
            }
        }
        let done = base.len() / LANES * LANES;
        let mut tail = 0f32;
        for (&b, &c) in base[done..].iter().zip(&codec[done..]) {
            let (lb, lc) = (b - base_lse, c - codec_lse);
            tail += exp(lb) * (lb - lc);
        }
        acc.iter().sum::<f32>() + tail
    }
}

/// What a log-softmax row reduces to: its maximum, where it is, and `log Σ exp`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowStats {
    pub max: f32,
    pub argmax: usize,
    pub log_sum_exp: f32,
}

/// Max, argmax (first of equals) and log-sum-exp of a row of logits, without writing to it.
pub fn log_softmax_stats(xs: &[f32]) -> RowStats {
    let max = max(xs);
    let argmax = xs.iter().position(|&x| x == max).unwrap_or(0);
    RowStats {
        max,
        argmax,
        log_sum_exp: max + shifted_exp_sum(xs, max).ln(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three rows of 19 values (one 16-lane chunk and a tail of 3) by hand, and the kernel the
    /// CPU runs bit-identical to the portable one.
    #[test]
    fn dots_by_hand_and_the_same_on_every_cpu() {
        let w: Vec<f32> = (0..19).map(|i| if i < 16 { 1.0 } else { 2.0 }).collect();
        let mut x = vec![0f32; 3 * 19];
        x[..19].fill(1.0); // 16 + 3·2 = 22
        x[19 + 17] = 0.5; // a tail value alone: 1
        x[2 * 19 + 3] = -4.0; // a chunk value alone: −4
        let mut out = [0f32; 3];
        dots(&x, &w, &mut out);
        assert_eq!(out, [22.0, 1.0, -4.0]);
        let x: Vec<f32> = (0..8 * 700)
            .map(|i| ((i * 37 % 101) as f32).sin())
            .collect();
        let w: Vec<f32> = (0..700).map(|i| ((i * 53 % 97) as f32).cos()).collect();
        for rows in 1..=8 {
            let (mut ours, mut portable) = ([0f32; 8], [0f32; 8]);
            dots(&x, &w, &mut ours[..rows]);
            portable_dots(&x, &w, &mut portable[..rows]);
            assert_eq!(ours, portable, "{rows} rows");
        }
    }

    #[test]
    fn the_kernels_use_what_the_cpu_has() {
        // The dispatch agrees with the CPU's own report (/proc/cpuinfo's flags on Linux).
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let has = |f: &str| flags.split_whitespace().any(|w| w == f);
        if flags.is_empty() {
            return; // not Linux: nothing independent to compare with
        }
        let want = if has("avx512f") {
            VectorIsa::Avx512
        } else if has("avx2") && has("fma") {
            VectorIsa::Avx2Fma
        } else {
            VectorIsa::Baseline
        };
        assert_eq!(VectorIsa::detect(), want);
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_over_the_range_softmax_uses() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, libm) = (exp(x), x.exp());
            let ulp = (libm.to_bits() as i64 - ours.to_bits() as i64).abs() as f64;
            worst = worst.max(ulp);
            x += 0.000_7;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
    }

    #[test]
    fn softmax_numerator_and_sum_by_hand() {
        // exp(2·[0, ln 2 / 2, ln 3 / 2] − ln 4) = [1/4, 2/4, 3/4], sum 3/2; 19 values cross the lanes.
        let mut xs = vec![0.0, 2f32.ln() / 2.0, 3f32.ln() / 2.0];
        let sum = scaled_exp_sum(&mut xs, 2.0, 4f32.ln());
        for (x, want) in xs.iter().zip([0.25, 0.5, 0.75]) {
            assert!((x - want).abs() < 1e-6, "{x} vs {want}");
        }
        assert!((sum - 1.5).abs() < 1e-6);
        let mut ones = vec![0f32; 19];
        assert!((scaled_exp_sum(&mut ones, 1.0, 0.0) - 19.0).abs() < 1e-5);
    }

    #[test]
    fn row_stats_by_hand() {
        // log(e^1 + e^3 + e^3) = 3 + log(2 + e^-2); the first of two maxima wins.
        let mut xs = vec![1.0f32, 3.0, 3.0];
        xs.extend(std::iter::repeat_n(-1000.0, 30));
        let s = log_softmax_stats(&xs);
        assert_eq!((s.max, s.argmax), (3.0, 1));
        let want = 3.0 + (2.0 + (-2f32).exp()).ln();
        assert!((s.log_sum_exp - want).abs() < 1e-6, "{}", s.log_sum_exp);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn kl_divergence_by_hand() {
        // p = (1/2, 1/2), q = (1/4, 3/4) as log-probabilities (log-sum-exp 0), padded by
        // 20 impossible tokens to cross the lanes: KL = ½ ln 2 + ½ ln(2/3) = ½ ln(4/3).
        let mut p = vec![0.5f32.ln(), 0.5f32.ln()];
        let mut q = vec![0.25f32.ln(), 0.75f32.ln()];
        p.extend(std::iter::repeat_n(-200.0, 20));
        q.extend(std::iter::repeat_n(-200.0, 20));
        let kl = kl_divergence(&p, 0.0, &q, 0.0);
        assert!((kl - 0.5 * (4.0f32 / 3.0).ln()).abs() < 1e-6, "{kl}");
        // Shifting a row's logits and its log-sum-exp together changes nothing.
        let shifted: Vec<f32> = q.iter().map(|x| x + 5.0).collect();
        assert!((kl_divergence(&p, 0.0, &shifted, 5.0) - kl).abs() < 1e-6);
        assert_eq!(kl_divergence(&p, 0.0, &p, 0.0), 0.0);
    }
}
