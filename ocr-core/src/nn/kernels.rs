//! Convolution kernels as candle custom ops.
//!
//! candle's `conv2d` runs a grouped convolution as one convolution per group
//! and only knows square strides and symmetric padding. The PP-OCR networks
//! are built from depthwise convolutions, 1×1 convolutions and a few strided
//! ones with strides like (2, 1), so they get their own kernels here:
//!
//! - depthwise: a direct loop per channel plane, contiguous along rows;
//! - 1×1, stride 1: one matrix product per image;
//! - anything else: im2col then a matrix product per group;
//! - transposed convolution with kernel = stride (the detector's upsampling):
//!   one matrix product and a scatter.
//!
//! Each kernel applies a folded bias (and batch norm) and an activation in
//! the same pass over its output.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

/// An activation fused into a convolution's output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    None,
    Relu,
    /// `x * relu6(x + 3) / 6`.
    HardSwish,
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `0.5 * x * (1 + erf(x / sqrt 2))`.
    Gelu,
}

impl Activation {
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Activation::Gelu => {
                x * (1.0 + candle_core::cpu::erf::erf_f32(x / std::f32::consts::SQRT_2)) * 0.5
            }
        }
    }
}

/// A 2-D convolution with its weights, over NCHW f32 tensors.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub out_channels: usize,
    pub in_channels: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
    pub groups: usize,
    /// `[out_channels, in_channels / groups, kh, kw]`, row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub activation: Activation,
}

impl Conv2d {
    /// Output height and width for an input of `h`×`w`, or `None` if the
    /// input is smaller than the kernel.
    pub fn output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (kh, kw) = self.kernel;
        let ph = h + self.pads[0] + self.pads[2];
        let pw = w + self.pads[1] + self.pads[3];
        if ph < kh || pw < kw {
            return None;
        }
        Some(((ph - kh) / self.stride.0 + 1, (pw - kw) / self.stride.1 + 1))
    }

    fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == (1, 1) && self.stride == (1, 1) && self.pads == [0; 4] && self.groups == 1
    }

    /// Runs the convolution on a contiguous NCHW slice.
    pub fn forward(
        &self,
        input: &[f32],
        n: usize,
        h: usize,
        w: usize,
    ) -> Option<(Vec<f32>, usize, usize)> {
        let (oh, ow) = self.output_size(h, w)?;
        let mut out = vec![0f32; n * self.out_channels * oh * ow];
        let in_image = self.in_channels * h * w;
        let out_image = self.out_channels * oh * ow;
        if self.is_depthwise() {
            out.par_chunks_mut(oh * ow)
                .enumerate()
                .for_each(|(plane, dst)| {
                    let c = plane % self.out_channels;
                    let img = plane / self.out_channels;
                    let src = &input[img * in_image + c * h * w..][..h * w];
                    let kw_len = self.kernel.0 * self.kernel.1;
                    self.depthwise_plane(
                        src,
                        h,
                        w,
                        &self.weight[c * kw_len..][..kw_len],
                        dst,
                        oh,
                        ow,
                    );
                    finish(dst, self.bias[c], self.activation);
                });
            return Some((out, oh, ow));
        }
        for img in 0..n {
            let src = &input[img * in_image..][..in_image];
            let dst = &mut out[img * out_image..][..out_image];
            if self.is_pointwise() {
                sgemm(
                    self.out_channels,
                    h * w,
                    self.in_channels,
                    &self.weight,
                    src,
                    dst,
                );
            } else {
                self.im2col_conv(src, h, w, dst, oh, ow);
            }
            dst.par_chunks_mut(oh * ow)
                .enumerate()
                .for_each(|(c, plane)| finish(plane, self.bias[c], self.activation));
        }
        Some((out, oh, ow))
    }

    #[allow(clippy::too_many_arguments)]
    fn depthwise_plane(
        &self,
        src: &[f32],
        h: usize,
        w: usize,
        k: &[f32],
        dst: &mut [f32],
        oh: usize,
        ow: usize,
    ) {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (pt, pl) = (self.pads[0] as isize, self.pads[1] as isize);
        for oy in 0..oh {
            let row = &mut dst[oy * ow..][..ow];
            for ky in 0..kh {
                let iy = (oy * sh + ky) as isize - pt;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let src_row = &src[iy as usize * w..][..w];
                for kx in 0..kw {
                    let weight = k[ky * kw + kx];
                    // ix = ox * sw + kx - pl must lie in 0..w.
                    let offset = kx as isize - pl;
                    let first = if offset >= 0 {
                        0
                    } else {
                        ((-offset) as usize).div_ceil(sw)
                    };
                    let last = if (w as isize) - 1 - offset < 0 {
                        continue;
                    } else {
                        ((w as isize - 1 - offset) as usize / sw + 1).min(ow)
                    };
                    if first >= last {
                        continue;
                    }
                    if sw == 1 {
                        let start = (first as isize + offset) as usize;
                        let srcs = &src_row[start..start + (last - first)];
                        for (d, s) in row[first..last].iter_mut().zip(srcs) {
                            *d += weight * s;
                        }
                    } else {
                        for (ox, d) in row.iter_mut().enumerate().take(last).skip(first) {
                            let ix = (ox * sw) as isize + offset;
                            *d += weight * src_row[ix as usize];
                        }
                    }
                }
            }
        }
    }

    fn im2col_conv(&self, src: &[f32], h: usize, w: usize, dst: &mut [f32], oh: usize, ow: usize) {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (pt, pl) = (self.pads[0] as isize, self.pads[1] as isize);
        let cin_g = self.in_channels / self.groups;
        let cout_g = self.out_channels / self.groups;
        let rows = cin_g * kh * kw;
        let cols = oh * ow;
        let mut col = vec![0f32; rows * cols];
        for g in 0..self.groups {
            col.par_chunks_mut(cols)
                .enumerate()
                .for_each(|(r, dst_row)| {
                    let c = g * cin_g + r / (kh * kw);
                    let ky = (r / kw) % kh;
                    let kx = r % kw;
                    let plane = &src[c * h * w..][..h * w];
                    for oy in 0..oh {
                        let iy = (oy * sh + ky) as isize - pt;
                        let out_row = &mut dst_row[oy * ow..][..ow];
                        if iy < 0 || iy >= h as isize {
                            out_row.fill(0.0);
                            continue;
                        }
                        let src_row = &plane[iy as usize * w..][..w];
                        for (ox, v) in out_row.iter_mut().enumerate() {
                            let ix = (ox * sw + kx) as isize - pl;
                            *v = if ix < 0 || ix >= w as isize {
                                0.0
                            } else {
                                src_row[ix as usize]
                            };
                        }
                    }
                });
            let weight = &self.weight[g * cout_g * rows..][..cout_g * rows];
            let out = &mut dst[g * cout_g * cols..][..cout_g * cols];
            sgemm(cout_g, cols, rows, weight, &col, out);
        }
    }
}

fn finish(plane: &mut [f32], bias: f32, activation: Activation) {
    match activation {
        Activation::None => plane.iter_mut().for_each(|v| *v += bias),
        Activation::Relu => plane.iter_mut().for_each(|v| *v = (*v + bias).max(0.0)),
        act => plane.iter_mut().for_each(|v| *v = act.apply(*v + bias)),
    }
}

impl CustomOp1 for Conv2d {
    fn name(&self) -> &'static str {
        "ocr-conv2d"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (input, n, h, w) = nchw_input(storage, layout, self.in_channels)?;
        let Some((out, oh, ow)) = self.forward(input, n, h, w) else {
            candle_core::bail!("conv: input {h}x{w} is smaller than the kernel")
        };
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, self.out_channels, oh, ow)),
        ))
    }
}

/// A transposed convolution whose kernel equals its stride and has no
/// padding: every input pixel expands into a `k`×`k` block.
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: (usize, usize),
    /// `[out_channels * kh * kw, in_channels]`, row-major.
    pub weight_t: Vec<f32>,
    pub bias: Vec<f32>,
    pub activation: Activation,
}

impl ConvTranspose2d {
    /// From ONNX weights `[in, out, kh, kw]`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        weight: &[f32],
        bias: Vec<f32>,
    ) -> Self {
        let kk = kernel.0 * kernel.1;
        let mut weight_t = vec![0f32; out_channels * kk * in_channels];
        for ci in 0..in_channels {
            for co in 0..out_channels {
                for k in 0..kk {
                    weight_t[(co * kk + k) * in_channels + ci] =
                        weight[(ci * out_channels + co) * kk + k];
                }
            }
        }
        Self {
            in_channels,
            out_channels,
            kernel,
            weight_t,
            bias,
            activation: Activation::None,
        }
    }

    pub fn forward(&self, input: &[f32], n: usize, h: usize, w: usize) -> (Vec<f32>, usize, usize) {
        let (kh, kw) = self.kernel;
        let (oh, ow) = (h * kh, w * kw);
        let rows = self.out_channels * kh * kw;
        let mut cols = vec![0f32; rows * h * w];
        let mut out = vec![0f32; n * self.out_channels * oh * ow];
        for img in 0..n {
            let src = &input[img * self.in_channels * h * w..][..self.in_channels * h * w];
            sgemm(
                rows,
                h * w,
                self.in_channels,
                &self.weight_t,
                src,
                &mut cols,
            );
            let dst = &mut out[img * self.out_channels * oh * ow..][..self.out_channels * oh * ow];
            dst.par_chunks_mut(oh * ow)
                .enumerate()
                .for_each(|(co, plane)| {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let col = &cols[(co * kh * kw + ky * kw + kx) * h * w..][..h * w];
                            for y in 0..h {
                                let out_row = &mut plane[(y * kh + ky) * ow..][..ow];
                                for x in 0..w {
                                    out_row[x * kw + kx] = col[y * w + x];
                                }
                            }
                        }
                    }
                    finish(plane, self.bias[co], self.activation);
                });
        }
        (out, oh, ow)
    }
}

impl CustomOp1 for ConvTranspose2d {
    fn name(&self) -> &'static str {
        "ocr-conv-transpose2d"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (input, n, h, w) = nchw_input(storage, layout, self.in_channels)?;
        let (out, oh, ow) = self.forward(input, n, h, w);
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, self.out_channels, oh, ow)),
        ))
    }
}

/// The contiguous f32 data of an NCHW input with `channels` channels, and its N, H, W.
fn nchw_input<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    channels: usize,
) -> candle_core::Result<(&'a [f32], usize, usize, usize)> {
    let (n, c, h, w) = layout.shape().dims4()?;
    if c != channels {
        candle_core::bail!("conv: {c} input channels, the weights expect {channels}")
    }
    Ok((contiguous_f32(storage, layout)?, n, h, w))
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("expected an f32 tensor")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("expected a contiguous tensor"),
    }
}

/// `c[m×n] = a[m×k] · b[k×n]`, all row-major.
pub fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "sgemm: slice too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && m * n * k > 64 * 64 * 64 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the pointers come from slices whose lengths were checked above
    // against the row-major strides passed with them; `c` does not alias `a`
    // or `b` (it is a distinct `&mut`).
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
