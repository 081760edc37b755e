//! The runtime's own kernels against naive reference loops: every
//! convolution path (depthwise with and without a fixed-size fast path,
//! strided, asymmetric padding, 1×1, direct (any other), grouped; tiles and thread
//! splits crossed), the fused bias, activations and residual, the
//! transposed convolution, the strided matrix product and the vectorised
//! math.

#![allow(clippy::unwrap_used)] // test helpers: a failure should panic with the value

use ocr_core::nn::kernels::{
    Activation, Conv2d, ConvTranspose2d, PackedRight, Residual, sgemm, sgemm_strided,
};
use ocr_core::nn::simd;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 7919 + seed * 104_729) % 2000) as f32 / 1000.0 - 1.0)
        .collect()
}

/// The textbook convolution: every output a sum over its window.
fn naive_conv(conv: &Conv2d, x: &[f32], n: usize, h: usize, w: usize) -> (Vec<f32>, usize, usize) {
    let (kh, kw) = conv.kernel;
    let (sh, sw) = conv.stride;
    let oh = (h + conv.pads[0] + conv.pads[2] - kh) / sh + 1;
    let ow = (w + conv.pads[1] + conv.pads[3] - kw) / sw + 1;
    let cin_g = conv.in_channels / conv.groups;
    let cout_g = conv.out_channels / conv.groups;
    let mut out = vec![0f32; n * conv.out_channels * oh * ow];
    for img in 0..n {
        for co in 0..conv.out_channels {
            let g = co / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = conv.bias[co] as f64;
                    for ci in 0..cin_g {
                        let c = g * cin_g + ci;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * sh + ky) as isize - conv.pads[0] as isize;
                                let ix = (ox * sw + kx) as isize - conv.pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((img * conv.in_channels + c) * h + iy as usize) * w
                                    + ix as usize];
                                let wv = conv.weight[((co * cin_g + ci) * kh + ky) * kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[((img * conv.out_channels + co) * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
    }
    (out, oh, ow)
}

fn reference_activation(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
        Activation::Gelu => {
            let x = x as f64;
            (0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2))) as f32
        }
        Activation::Sigmoid => (1.0 / (1.0 + (-x as f64).exp())) as f32,
    }
}

/// erf in f64 by its Taylor series (|x| ≤ 3) or the asymptotic tail.
fn erf64(x: f64) -> f64 {
    if x.abs() > 3.0 {
        return x.signum() * (1.0 - (-x * x).exp() / (x.abs() * std::f64::consts::PI.sqrt()));
    }
    let (mut term, mut sum, mut k) = (x, x, 0.0);
    while term.abs() > 1e-17 {
        k += 1.0;
        term *= -x * x / k;
        sum += term / (2.0 * k + 1.0);
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

struct Case {
    n: usize,
    c_in: usize,
    c_out: usize,
    hw: (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    pads: [usize; 4],
    groups: usize,
}

fn conv_for(case: &Case, activation: Activation) -> Conv2d {
    let (kh, kw) = case.kernel;
    let per = case.c_in / case.groups * kh * kw;
    Conv2d {
        out_channels: case.c_out,
        in_channels: case.c_in,
        kernel: case.kernel,
        stride: case.stride,
        pads: case.pads,
        groups: case.groups,
        weight: values(case.c_out * per, 3)
            .into_iter()
            .map(|v| v / (per as f32).sqrt())
            .collect(),
        bias: values(case.c_out, 5),
        activation,
        residual: Residual::default(),
        packed: Default::default(),
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs a case with every activation and both residual orders.
fn check(case: Case) {
    let (h, w) = case.hw;
    let x = values(case.n * case.c_in * h * w, 1);
    for activation in [
        Activation::None,
        Activation::Relu,
        Activation::HardSwish,
        Activation::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        Activation::Gelu,
        Activation::Sigmoid,
    ] {
        let mut conv = conv_for(&case, activation);
        let (linear, oh, ow) = naive_conv(&conv, &x, case.n, h, w);
        let expected: Vec<f32> = linear
            .iter()
            .map(|&v| reference_activation(activation, v))
            .collect();
        let (got, goh, gow) = conv.forward(&x, case.n, h, w).unwrap();
        assert_eq!((goh, gow), (oh, ow));
        let d = max_diff(&got, &expected);
        assert!(
            d < 1e-4,
            "{:?} k{:?} s{:?} g{} {activation:?}: max diff {d}",
            case.hw,
            case.kernel,
            case.stride,
            case.groups
        );
        let residual = values(got.len(), 11);
        for order in [Residual::BeforeActivation, Residual::AfterActivation] {
            conv.residual = order;
            let expected: Vec<f32> = linear
                .iter()
                .zip(&residual)
                .map(|(&v, &r)| match order {
                    Residual::BeforeActivation => reference_activation(activation, v + r),
                    Residual::AfterActivation => reference_activation(activation, v) + r,
                })
                .collect();
            let (got, _, _) = conv
                .forward_with_residual(&x, case.n, h, w, Some(&residual))
                .unwrap();
            let d = max_diff(&got, &expected);
            assert!(d < 1e-4, "{order:?} {activation:?}: max diff {d}");
        }
        assert!(
            conv.forward_with_residual(&x, case.n, h, w, Some(&residual[1..]))
                .is_none(),
            "a residual of the wrong size is refused"
        );
    }
}

#[test]
fn depthwise_fixed_sizes_match_reference() {
    for (kernel, pads) in [
        ((3, 3), [1; 4]),
        ((5, 5), [2; 4]),
        ((7, 7), [3; 4]),
        ((1, 7), [0, 3, 0, 3]),
        ((3, 3), [0, 1, 1, 0]),
    ] {
        check(Case {
            n: 2,
            c_in: 6,
            c_out: 6,
            hw: (9, 13),
            kernel,
            stride: (1, 1),
            pads,
            groups: 6,
        });
    }
}

#[test]
fn depthwise_strided_and_general_sizes_match_reference() {
    for (kernel, stride, pads) in [
        ((3, 3), (2, 1), [1; 4]),
        ((3, 3), (2, 2), [1; 4]),
        ((5, 5), (2, 2), [2, 2, 1, 1]),
        ((2, 4), (1, 1), [0, 1, 1, 2]),
        ((3, 3), (1, 2), [1; 4]),
    ] {
        check(Case {
            n: 1,
            c_in: 5,
            c_out: 5,
            hw: (11, 10),
            kernel,
            stride,
            pads,
            groups: 5,
        });
    }
}

#[test]
fn pointwise_matches_reference_across_tiles() {
    // 40×30 = 1200 output columns: several column tiles; 70 rows: row blocks.
    check(Case {
        n: 2,
        c_in: 24,
        c_out: 70,
        hw: (40, 30),
        kernel: (1, 1),
        stride: (1, 1),
        pads: [0; 4],
        groups: 1,
    });
}

#[test]
fn deep_pointwise_matches_reference() {
    // 421 input channels: the AVX-512 kernel takes the depth in three slices, keeping its
    // running sums in the output between them, and applies bias, activation and residual
    // after the last only.
    check(Case {
        n: 1,
        c_in: 421,
        c_out: 20,
        hw: (6, 50),
        kernel: (1, 1),
        stride: (1, 1),
        pads: [0; 4],
        groups: 1,
    });
}

#[test]
fn fused_activations_give_the_bits_of_a_separate_pass() {
    // The AVX-512 kernel applies GELU and sigmoid as it stores, with the operations of
    // `apply_with_bias`: a convolution with the activation equals one without it followed
    // by the activation's pass, value for value.
    let case = Case {
        n: 1,
        c_in: 30,
        c_out: 17,
        hw: (9, 41),
        kernel: (1, 1),
        stride: (1, 1),
        pads: [0; 4],
        groups: 1,
    };
    let x: Vec<f32> = values(30 * 9 * 41, 1).iter().map(|v| v * 4.0).collect();
    let (plain, _, _) = conv_for(&case, Activation::None)
        .forward(&x, 1, 9, 41)
        .unwrap();
    for activation in [Activation::Gelu, Activation::Sigmoid] {
        let (fused, _, _) = conv_for(&case, activation).forward(&x, 1, 9, 41).unwrap();
        let mut separate = plain.clone();
        activation.apply_with_bias(&mut separate, 0.0);
        let differing = fused.iter().zip(&separate).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{activation:?}: {differing} values differ");
    }
}

#[test]
fn fully_connected_layer_matches_reference() {
    for (rows, k, n, biased) in [
        (1, 1, 1, true),
        (9, 5, 33, true),
        (37, 400, 70, true),
        (37, 400, 70, false),
        (130, 120, 1000, true),
        (0, 8, 8, true),
    ] {
        let x = values(rows * k, 1);
        let w = values(k * n, 2);
        let bias = values(n, 3);
        let layer = PackedRight::new(&w, biased.then_some(&bias[..]), k, n);
        let out = layer.product(&x);
        assert_eq!(out.len(), rows * n);
        for i in 0..rows {
            for j in 0..n {
                let sum: f32 = (0..k).map(|p| x[i * k + p] * w[p * n + j]).sum();
                let expected = sum + if biased { bias[j] } else { 0.0 };
                let got = out[i * n + j];
                assert!(
                    (got - expected).abs() < 1e-4,
                    "{rows}x{k}x{n} at {i},{j}: {got} vs {expected}"
                );
            }
        }
    }
}

#[test]
fn direct_convolution_matches_reference() {
    for (kernel, stride, pads) in [
        ((3, 3), (2, 2), [1; 4]),
        ((3, 3), (1, 1), [0, 1, 1, 0]),
        ((2, 2), (1, 1), [0, 0, 1, 1]),
        ((3, 3), (2, 1), [1; 4]),
        ((3, 3), (1, 2), [1; 4]),
        ((1, 3), (1, 1), [0, 1, 0, 1]),
        ((5, 5), (1, 1), [2; 4]),
        ((1, 1), (2, 2), [0; 4]),
    ] {
        check(Case {
            n: 2,
            c_in: 7,
            c_out: 33,
            hw: (29, 37),
            kernel,
            stride,
            pads,
            groups: 1,
        });
    }
    // Deep (360 taps), and rows wider than several vector widths with a
    // ragged end.
    check(Case {
        n: 1,
        c_in: 40,
        c_out: 12,
        hw: (7, 150),
        kernel: (3, 3),
        stride: (1, 1),
        pads: [1; 4],
        groups: 1,
    });
    // Tall enough that the padded input is copied in two bands of output rows (the second a
    // ragged one): 2 images × 16 channels × 2 column phases × 151 columns × 2 rows per output
    // row is 19,328 values, so a 4 Mi-value band holds 217 of the 250 output rows.
    check(Case {
        n: 2,
        c_in: 16,
        c_out: 5,
        hw: (500, 300),
        kernel: (3, 3),
        stride: (2, 2),
        pads: [1; 4],
        groups: 1,
    });
}

#[test]
fn grouped_convolution_matches_reference() {
    check(Case {
        n: 1,
        c_in: 8,
        c_out: 12,
        hw: (10, 9),
        kernel: (3, 3),
        stride: (1, 1),
        pads: [1; 4],
        groups: 4,
    });
}

#[test]
fn input_smaller_than_kernel_is_refused() {
    let conv = conv_for(
        &Case {
            n: 1,
            c_in: 2,
            c_out: 2,
            hw: (2, 2),
            kernel: (5, 5),
            stride: (1, 1),
            pads: [0; 4],
            groups: 1,
        },
        Activation::None,
    );
    assert!(conv.forward(&values(8, 0), 1, 2, 2).is_none());
}

#[test]
fn transposed_convolution_matches_reference() {
    let (cin, cout, k, h, w, n) = (5, 4, 2, 6, 7, 2);
    // ONNX layout [in, out, kh, kw].
    let weight = values(cin * cout * k * k, 2);
    let bias = values(cout, 9);
    let mut conv = ConvTranspose2d::new(cin, cout, (k, k), &weight, bias.clone());
    let x = values(n * cin * h * w, 4);
    let (got, oh, ow) = conv.forward(&x, n, h, w);
    conv.activation = Activation::Sigmoid;
    let (squashed, _, _) = conv.forward(&x, n, h, w);
    assert_eq!((oh, ow), (h * k, w * k));
    let mut expected = vec![0f32; n * cout * oh * ow];
    for img in 0..n {
        for co in 0..cout {
            for y in 0..h {
                for xx in 0..w {
                    for ky in 0..k {
                        for kx in 0..k {
                            let mut acc = 0.0;
                            for ci in 0..cin {
                                acc += x[((img * cin + ci) * h + y) * w + xx]
                                    * weight[((ci * cout + co) * k + ky) * k + kx];
                            }
                            expected[((img * cout + co) * oh + y * k + ky) * ow + xx * k + kx] =
                                acc + bias[co];
                        }
                    }
                }
            }
        }
    }
    assert!(max_diff(&got, &expected) < 1e-5);
    let expected: Vec<f32> = expected
        .iter()
        .map(|&v| reference_activation(Activation::Sigmoid, v))
        .collect();
    assert!(max_diff(&squashed, &expected) < 1e-5);
}

#[test]
fn strided_matrix_product_matches_reference() {
    let (m, n, k) = (37, 29, 71);
    let (lda, ldb, ldc) = (k + 3, n + 5, n + 2);
    let a = values(m * lda, 1);
    let b = values(k * ldb, 2);
    let mut c = vec![f32::NAN; (m - 1) * ldc + n];
    sgemm_strided((m, n, k), (&a, lda), (&b, ldb), (&mut c, ldc), true);
    for i in 0..m {
        for j in 0..n {
            let expected: f32 = (0..k).map(|p| a[i * lda + p] * b[p * ldb + j]).sum();
            assert!((c[i * ldc + j] - expected).abs() < 1e-4, "{i},{j}");
        }
    }
    // The contiguous form agrees.
    let a2: Vec<f32> = (0..m).flat_map(|i| a[i * lda..][..k].to_vec()).collect();
    let b2: Vec<f32> = (0..k).flat_map(|p| b[p * ldb..][..n].to_vec()).collect();
    let mut c2 = vec![0f32; m * n];
    sgemm(m, n, k, &a2, &b2, &mut c2);
    for i in 0..m {
        assert!(max_diff(&c2[i * n..][..n], &c[i * ldc..][..n]) < 1e-5);
    }
}

#[test]
#[should_panic(expected = "slice too short")]
fn matrix_product_checks_its_bounds() {
    let mut c = vec![0f32; 4];
    sgemm_strided(
        (2, 2, 2),
        (&[1.0; 3], 2),
        (&[1.0; 4], 2),
        (&mut c, 2),
        false,
    );
}

#[test]
fn vectorised_math_matches_f64() {
    let mut worst_exp = 0f64;
    let mut worst_gelu = 0f64;
    for i in -20_000..=20_000 {
        let x = i as f32 / 1000.0;
        let e = (x as f64).exp();
        worst_exp = worst_exp.max(((simd::exp(x) as f64 - e) / e).abs());
        let g = 0.5 * x as f64 * (1.0 + erf64(x as f64 / std::f64::consts::SQRT_2));
        worst_gelu = worst_gelu.max((simd::gelu(x) as f64 - g).abs());
    }
    assert!(worst_exp < 5e-7, "exp relative error {worst_exp}");
    assert!(worst_gelu < 1e-5, "gelu absolute error {worst_gelu}");
}

/// Every kernel test, and the parity tests, again in child processes with
/// the vector level capped at AVX2 and at baseline x86-64: the CI machine's
/// AVX-512 would otherwise leave those code paths untested.
#[test]
#[cfg(target_arch = "x86_64")]
fn kernels_at_narrower_vector_levels() {
    if std::env::var_os("OCR_SIMD").is_some() {
        return; // the child itself
    }
    let exe = std::env::current_exe().unwrap();
    for level in ["avx2", "baseline"] {
        let out = std::process::Command::new(&exe)
            .args(["kernels::", "parity::", "--test-threads=2"])
            .env("OCR_SIMD", level)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{level}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The child ran the tests rather than filtering them all out.
        assert!(
            stdout.contains("direct_convolution_matches_reference ... ok"),
            "{level}: {stdout}"
        );
        assert!(
            stdout.contains("rec_small_matches_onnxruntime ... ok"),
            "{level}: {stdout}"
        );
    }
}
