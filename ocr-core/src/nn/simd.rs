//! Vectorised element-wise math: `exp`, `erf`, GELU and sigmoid written
//! without branches so that loops over them compile to vector code, and a
//! macro that compiles a loop for AVX-512, AVX2 and baseline x86-64 and picks
//! one at run time.
//!
//! The build targets baseline x86-64 (SSE2) so that the binary runs on any
//! x86-64 machine; the matrix products (the `gemm` crate) dispatch at run time
//! in the same way.

/// Defines a function whose body is compiled three times on x86-64
/// (AVX-512, AVX2 + FMA, baseline) with the best version the CPU supports
/// chosen at run time. Elsewhere the body is compiled once.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                if $crate::nn::simd::level() >= 2 {
                    // SAFETY: the CPU reports every feature the function enables.
                    #[allow(unsafe_code)]
                    return unsafe { avx512($($arg),*) };
                }
                if $crate::nn::simd::level() == 1 {
                    // SAFETY: the CPU reports every feature the function enables.
                    #[allow(unsafe_code)]
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// The vector level this CPU supports: 2 for AVX-512, 1 for AVX2 with FMA, 0
/// otherwise. Detected once. `OCR_SIMD=avx2` or `OCR_SIMD=baseline` caps it
/// (to test or compare the narrower code paths on a wider CPU).
#[cfg(target_arch = "x86_64")]
pub fn level() -> u8 {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        let avx512 = avx2
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512bw");
        let detected = match (avx512, avx2) {
            (true, _) => 2,
            (false, true) => 1,
            _ => 0,
        };
        let cap = match std::env::var("OCR_SIMD").as_deref() {
            Ok("avx2") => 1,
            Ok("baseline") => 0,
            _ => 2,
        };
        detected.min(cap)
    })
}

/// `e^x` by range reduction to `2^n · e^r`, |r| ≤ ln 2 / 2, and a degree-6
/// polynomial (Cephes `expf`, relative error about 2e-7). There are no
/// branches, and `n` is rounded by adding 1.5 · 2^23 rather than by `floor`,
/// which baseline x86-64 has no vector instruction for.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2^23
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + SHIFT;
    let n = shifted - SHIFT;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 0.166_666_65)
        * r
        + 0.5)
        * r
        * r
        + r
        + 1.0;
    // The low mantissa bits of `shifted` hold n + 2^22; 2^n has exponent n + 127.
    let bits = shifted
        .to_bits()
        .wrapping_sub(0x4B40_0000)
        .wrapping_add(127)
        << 23;
    p * f32::from_bits(bits)
}

/// The error function, Abramowitz & Stegun 7.1.26 (absolute error below
/// 1.5e-7), without branches.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_72) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// `0.5 · x · (1 + erf(x / √2))`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `x · relu6(x + 3) / 6`.
#[inline(always)]
pub fn hard_swish(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0f32;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (ours, std) = (exp(x), x.exp());
            worst = worst.max(((ours - std) / std).abs());
        }
        assert!(worst < 1e-6, "relative error {worst}");
    }

    #[test]
    fn erf_and_gelu_match_candle() {
        let mut worst = 0f32;
        for i in -1000..=1000 {
            let x = i as f32 / 100.0;
            let reference = candle_core::cpu::erf::erf_f32(x);
            worst = worst.max((erf(x) - reference).abs());
            let g = x * 0.5 * (1.0 + candle_core::cpu::erf::erf_f32(x / std::f32::consts::SQRT_2));
            worst = worst.max((gelu(x) - g).abs() / x.abs().max(1.0));
        }
        assert!(worst < 1e-6, "absolute error {worst}");
    }

    #[test]
    fn sigmoid_matches_std() {
        for i in -2000..=2000 {
            let x = i as f32 / 100.0;
            let reference = 1.0 / (1.0 + (-x).exp());
            assert!((sigmoid(x) - reference).abs() < 1e-6, "{x}");
        }
    }
}
