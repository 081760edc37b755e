//! The graph's non-convolution operators on plain slices: element-wise
//! arithmetic with the broadcasts the models use, activations, pooling,
//! nearest resize, concatenation and softmax. Large arrays are split over
//! threads; the loops are multiversioned (see [`super::simd`]).
//!
//! Each function returns `None` for a layout it does not handle, and the
//! graph then falls back to candle's general tensor op.

use rayon::prelude::*;

use super::kernels::Activation;
use super::simd::{exp, multiversion};

/// Below this many elements an operator runs on one thread.
const PARALLEL_MIN: usize = 1 << 15;

/// An element-wise binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

multiversion! {
    /// `out[i] = a[i] op b`, or `b op a[i]` when `swapped`.
    pub fn binary_scalar(op: BinaryOp, out: &mut [f32], a: &[f32], b: f32, swapped: bool) {
        let pairs = out.iter_mut().zip(a);
        match (op, swapped) {
            (BinaryOp::Add, _) => pairs.for_each(|(o, &x)| *o = x + b),
            (BinaryOp::Mul, _) => pairs.for_each(|(o, &x)| *o = x * b),
            (BinaryOp::Sub, false) => pairs.for_each(|(o, &x)| *o = x - b),
            (BinaryOp::Sub, true) => pairs.for_each(|(o, &x)| *o = b - x),
            (BinaryOp::Div, false) => pairs.for_each(|(o, &x)| *o = x / b),
            (BinaryOp::Div, true) => pairs.for_each(|(o, &x)| *o = b / x),
        }
    }
}

multiversion! {
    /// `out[i] = a[i] op b[i]`.
    pub fn binary_same(op: BinaryOp, out: &mut [f32], a: &[f32], b: &[f32]) {
        let triples = out.iter_mut().zip(a.iter().zip(b));
        match op {
            BinaryOp::Add => triples.for_each(|(o, (&x, &y))| *o = x + y),
            BinaryOp::Sub => triples.for_each(|(o, (&x, &y))| *o = x - y),
            BinaryOp::Mul => triples.for_each(|(o, (&x, &y))| *o = x * y),
            BinaryOp::Div => triples.for_each(|(o, (&x, &y))| *o = x / y),
        }
    }
}

multiversion! {
    /// `acc[i] += x[i]`.
    pub fn add_in_place(acc: &mut [f32], x: &[f32]) {
        acc.iter_mut().zip(x).for_each(|(a, &v)| *a += v);
    }
}

/// `acc[i] += x[i]` over all threads for long slices.
pub fn add_into(acc: &mut [f32], x: &[f32]) {
    acc.par_chunks_mut(PARALLEL_MIN)
        .zip(x.par_chunks(PARALLEL_MIN))
        .for_each(|(a, x)| add_in_place(a, x));
}

/// `a op b` with numpy broadcasting where `b` (after left-padding with 1s)
/// is either the same shape as `a`, a single value, or varies over one
/// contiguous run of `a`'s axes only (a per-channel scale `[1, C, 1, 1]`, a
/// per-row mean `[N, T, 1]`). `swapped` computes `b op a` instead.
/// Returns `None` for any other broadcast.
pub fn binary(
    op: BinaryOp,
    a: &[f32],
    a_dims: &[usize],
    b: &[f32],
    b_dims: &[usize],
    swapped: bool,
) -> Option<Vec<f32>> {
    if b_dims.len() > a_dims.len() {
        return None;
    }
    let mut bd = vec![1usize; a_dims.len() - b_dims.len()];
    bd.extend_from_slice(b_dims);
    let mut out = super::memory::zeroed(a.len());
    if b.len() == 1 {
        let b = b[0];
        out.par_chunks_mut(PARALLEL_MIN)
            .zip(a.par_chunks(PARALLEL_MIN))
            .for_each(|(o, a)| binary_scalar(op, o, a, b, swapped));
        return Some(out);
    }
    let varying: Vec<usize> = (0..bd.len()).filter(|&i| bd[i] != 1).collect();
    let (lo, hi) = (*varying.first()?, *varying.last()? + 1);
    if (lo..hi).any(|i| bd[i] != a_dims[i]) {
        return None;
    }
    let mid: usize = a_dims[lo..hi].iter().product();
    let inner: usize = a_dims[hi..].iter().product();
    if inner == 1 && mid == a.len() {
        // Same shape.
        let (x, y) = if swapped { (b, a) } else { (a, b) };
        out.par_chunks_mut(PARALLEL_MIN)
            .zip(x.par_chunks(PARALLEL_MIN).zip(y.par_chunks(PARALLEL_MIN)))
            .for_each(|(o, (x, y))| binary_same(op, o, x, y));
        return Some(out);
    }
    if inner == 1 {
        // b varies along the last axes: rows of `mid` values.
        out.par_chunks_mut(mid)
            .zip(a.par_chunks(mid))
            .for_each(|(o, a)| {
                if swapped {
                    binary_same(op, o, b, a);
                } else {
                    binary_same(op, o, a, b);
                }
            });
        return Some(out);
    }
    // One value of b per run of `inner` values of a.
    out.par_chunks_mut(inner)
        .zip(a.par_chunks(inner))
        .enumerate()
        .for_each(|(i, (o, a))| binary_scalar(op, o, a, b[i % mid], swapped));
    Some(out)
}

/// An activation over a whole tensor.
pub fn activation(act: Activation, a: &[f32]) -> Vec<f32> {
    let mut out = a.to_vec();
    out.par_chunks_mut(PARALLEL_MIN)
        .for_each(|o| act.apply_with_bias(o, 0.0));
    out
}

/// The output height and width of a max pool, or `None` if the kernel is
/// larger than the padded input.
pub fn max_pool_size(
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    pads: [usize; 4],
) -> Option<(usize, usize)> {
    let (ph, pw) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
    if ph < kh || pw < kw || kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        return None;
    }
    Some(((ph - kh) / sh + 1, (pw - kw) / sw + 1))
}

/// Max pooling over NCHW planes; padding never wins a max (it is -∞).
pub fn max_pool(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    pads: [usize; 4],
) -> Option<(Vec<f32>, usize, usize)> {
    let (oh, ow) = max_pool_size((h, w), kernel, stride, pads)?;
    let mut out = super::memory::zeroed(n * c * oh * ow);
    max_pool_into(x, (n, c, h, w), kernel, stride, pads, &mut out)?;
    Some((out, oh, ow))
}

/// [`max_pool`] into `out`, which must hold exactly the output; every value
/// is written. `None` (nothing written) if the kernel is larger than the
/// padded input or `out` has the wrong size.
pub fn max_pool_into(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    pads: [usize; 4],
    out: &mut [f32],
) -> Option<(usize, usize)> {
    let (oh, ow) = max_pool_size((h, w), (kh, kw), (sh, sw), pads)?;
    if out.len() != n * c * oh * ow || x.len() != n * c * h * w {
        return None;
    }
    if (sh, sw) == (1, 1) {
        out.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each_init(Vec::new, |column, (dst, src)| {
                max_pool_plane_s1(src, (h, w), (kh, kw), pads, dst, (oh, ow), column)
            });
        return Some((oh, ow));
    }
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(dst, src)| {
            for oy in 0..oh {
                let y0 = (oy * sh).saturating_sub(pads[0]);
                let y1 = (oy * sh + kh).saturating_sub(pads[0]).min(h);
                for ox in 0..ow {
                    let x0 = (ox * sw).saturating_sub(pads[1]);
                    let x1 = (ox * sw + kw).saturating_sub(pads[1]).min(w);
                    let mut m = f32::NEG_INFINITY;
                    for y in y0..y1 {
                        for &v in &src[y * w + x0..y * w + x1] {
                            m = m.max(v);
                        }
                    }
                    dst[oy * ow + ox] = m;
                }
            }
        });
    Some((oh, ow))
}

multiversion! {
    /// One plane of a stride-1 max pool: the max over the window's rows
    /// into `column`, then over its columns, each a pass of vector max
    /// over whole rows.
    pub fn max_pool_plane_s1(
        src: &[f32],
        hw: (usize, usize),
        kernel: (usize, usize),
        pads: [usize; 4],
        dst: &mut [f32],
        ohw: (usize, usize),
        column: &mut Vec<f32>,
    ) {
        let ((h, w), (kh, kw), (oh, ow)) = (hw, kernel, ohw);
        column.resize(w, 0.0);
        for (oy, out) in dst.chunks_exact_mut(ow).take(oh).enumerate() {
            let y0 = oy.saturating_sub(pads[0]);
            let y1 = (oy + kh).saturating_sub(pads[0]).min(h);
            column.fill(f32::NEG_INFINITY);
            for y in y0..y1 {
                for (m, &v) in column.iter_mut().zip(&src[y * w..][..w]) {
                    *m = m.max(v);
                }
            }
            out.fill(f32::NEG_INFINITY);
            for kx in 0..kw {
                // Output x reads column x + kx - pads[1].
                let shift = kx as isize - pads[1] as isize;
                let lo = (-shift).clamp(0, ow as isize) as usize;
                let hi = (w as isize - shift).clamp(lo as isize, ow as isize) as usize;
                let from = (lo as isize + shift) as usize;
                for (o, &v) in out[lo..hi].iter_mut().zip(&column[from..]) {
                    *o = o.max(v);
                }
            }
        }
    }
}

/// Nearest resize of NCHW planes to `oh`×`ow` with ONNX's `asymmetric`
/// coordinates and `floor` rounding: output pixel `y` reads `floor(y / scale)`.
pub fn resize_nearest(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
    (scale_h, scale_w): (f32, f32),
) -> Vec<f32> {
    let index =
        |o: usize, scale: f32, len: usize| ((o as f32 / scale).floor() as usize).min(len - 1);
    let xs: Vec<usize> = (0..ow).map(|o| index(o, scale_w, w)).collect();
    let mut out = super::memory::zeroed(n * c * oh * ow);
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(dst, src)| {
            for (oy, row) in dst.chunks_exact_mut(ow).enumerate() {
                let src_row = &src[index(oy, scale_h, h) * w..][..w];
                for (o, &sx) in row.iter_mut().zip(&xs) {
                    *o = src_row[sx];
                }
            }
        });
    out
}

/// Concatenates contiguous tensors along `axis`; `dims` are the first
/// input's, and the others differ only along `axis`.
pub fn concat(inputs: &[(&[f32], &[usize])], axis: usize) -> Option<(Vec<f32>, Vec<usize>)> {
    let (_, first) = inputs.first()?;
    let outer: usize = first[..axis].iter().product();
    let inner: usize = first[axis + 1..].iter().product();
    let mut total = 0;
    for (data, dims) in inputs {
        if dims.len() != first.len()
            || dims[..axis] != first[..axis]
            || dims[axis + 1..] != first[axis + 1..]
            || data.len() != outer * dims[axis] * inner
        {
            return None;
        }
        total += dims[axis];
    }
    let mut out = super::memory::zeroed(outer * total * inner);
    out.par_chunks_mut(total * inner)
        .enumerate()
        .for_each(|(o, dst)| {
            let mut at = 0;
            for (data, dims) in inputs {
                let len = dims[axis] * inner;
                dst[at..at + len].copy_from_slice(&data[o * len..][..len]);
                at += len;
            }
        });
    let mut dims = first.to_vec();
    dims[axis] = total;
    Some((out, dims))
}

multiversion! {
    /// Softmax of each row of `row` values, in place. The max and the sum
    /// are reduced in 16 independent lanes so that they vectorise.
    pub fn softmax_rows(data: &mut [f32], row: usize) {
        const LANES: usize = 16;
        for r in data.chunks_exact_mut(row) {
            let mut lanes = [f32::NEG_INFINITY; LANES];
            let mut chunks = r.chunks_exact(LANES);
            for c in &mut chunks {
                for (l, &v) in lanes.iter_mut().zip(c) {
                    *l = l.max(v);
                }
            }
            let max = chunks
                .remainder()
                .iter()
                .chain(&lanes)
                .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            r.iter_mut().for_each(|v| *v = exp(*v - max));
            let mut lanes = [0f32; LANES];
            let mut chunks = r.chunks_exact(LANES);
            for c in &mut chunks {
                for (l, &v) in lanes.iter_mut().zip(c) {
                    *l += v;
                }
            }
            let sum: f32 = chunks.remainder().iter().sum::<f32>() + lanes.iter().sum::<f32>();
            let inv = 1.0 / sum;
            r.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// Softmax over the last axis (rows of `row` values).
pub fn softmax_last(x: &[f32], row: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    let rows_per_task = (PARALLEL_MIN / row.max(1)).max(1);
    out.par_chunks_mut(row * rows_per_task)
        .for_each(|chunk| softmax_rows(chunk, row));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_broadcasts() {
        let a: Vec<f32> = (0..24).map(|i| i as f32).collect();
        // Per channel of [2, 3, 2, 2].
        let b = [10.0, 20.0, 30.0];
        let out = binary(BinaryOp::Add, &a, &[2, 3, 2, 2], &b, &[1, 3, 1, 1], false).unwrap();
        assert_eq!(out[0], 10.0);
        assert_eq!(out[4], 24.0);
        assert_eq!(out[12], 22.0);
        // Per row of [2, 3, 4]: b is [2, 3, 1].
        let b: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let out = binary(BinaryOp::Sub, &a, &[2, 3, 4], &b, &[2, 3, 1], true).unwrap();
        assert_eq!(out[5], 1.0 - 5.0);
        // Along the last axis: b is [4].
        let out = binary(
            BinaryOp::Div,
            &a,
            &[2, 3, 4],
            &[1.0, 2.0, 4.0, 8.0],
            &[4],
            false,
        )
        .unwrap();
        assert_eq!(out[7], 7.0 / 8.0);
        // A scalar, swapped.
        let out = binary(BinaryOp::Sub, &a, &[24], &[1.0], &[], true).unwrap();
        assert_eq!(out[3], -2.0);
        // Not handled: b varies over two separate runs of axes.
        assert!(binary(BinaryOp::Add, &a, &[2, 3, 4], &[0.0; 8], &[2, 1, 4], false).is_none());
    }

    #[test]
    fn max_pool_strided_matches_stride_one() {
        // A 3×3 window, padding 1: the stride-1 path, compared with the
        // general loop (stride 1 written as a 1×1 stride of a 2-D helper).
        let x: Vec<f32> = (0..35).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let (fast, oh, ow) = max_pool(&x, (1, 1, 5, 7), (3, 3), (1, 1), [1; 4]).unwrap();
        assert_eq!((oh, ow), (5, 7));
        for oy in 0..5usize {
            for ox in 0..7usize {
                let mut m = f32::NEG_INFINITY;
                for y in oy.saturating_sub(1)..(oy + 2).min(5) {
                    for xx in ox.saturating_sub(1)..(ox + 2).min(7) {
                        m = m.max(x[y * 7 + xx]);
                    }
                }
                assert_eq!(fast[oy * 7 + ox], m, "{oy},{ox}");
            }
        }
        let (strided, oh, ow) = max_pool(&x, (1, 1, 5, 7), (3, 3), (2, 2), [1; 4]).unwrap();
        assert_eq!((oh, ow), (3, 4));
        assert_eq!(strided[4 + 2], fast[2 * 7 + 4]);
    }

    #[test]
    fn max_pool_pads_with_minus_infinity() {
        let x = [-1.0, -2.0, -3.0, -4.0];
        let (out, oh, ow) = max_pool(&x, (1, 1, 2, 2), (2, 2), (1, 1), [0, 0, 1, 1]).unwrap();
        assert_eq!((oh, ow), (2, 2));
        assert_eq!(out, vec![-1.0, -2.0, -3.0, -4.0]);
    }

    #[test]
    fn resize_and_concat() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let out = resize_nearest(&x, (1, 1, 2, 2), (4, 4), (2.0, 2.0));
        assert_eq!(&out[..8], &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
        let (out, dims) = concat(&[(&x, &[1, 2, 2]), (&x[..2], &[1, 1, 2])], 1).unwrap();
        assert_eq!(dims, vec![1, 3, 2]);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0]);
    }

    #[test]
    fn softmax_sums_to_one() {
        let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.7 - 3.0).collect();
        let out = softmax_last(&x, 4);
        for row in out.chunks(4) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let e: Vec<f32> = x[..4].iter().map(|v| v.exp()).collect();
        let s: f32 = e.iter().sum();
        assert!((out[3] - e[3] / s).abs() < 1e-6);
    }
}
