//! Convolution kernels as candle custom ops.
//!
//! candle's `conv2d` runs a grouped convolution as one convolution per group
//! and only knows square strides and symmetric padding. The PP-OCR networks
//! are built from depthwise convolutions, 1×1 convolutions and a few strided
//! ones with strides like (2, 1), so they get their own kernels here:
//!
//! - depthwise: a direct loop per channel plane, contiguous along rows;
//! - 1×1, stride 1: the weights (packed once, [`super::packed`]) times
//!   packed tiles of the input;
//! - anything else: a direct convolution, the same micro-kernel reading each
//!   kernel tap's row straight from a padded copy of the input (no im2col);
//! - transposed convolution with kernel = stride (the detector's upsampling):
//!   one matrix product and a scatter.
//!
//! Each kernel applies a folded bias (and batch norm) and an activation in
//! the same pass over its output.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::packed::{Epilogue, PackedA, pack_b};

use super::simd::{gelu, hard_swish, multiversion, sigmoid};

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
    /// `1 / (1 + e^-x)`.
    Sigmoid,
}

impl Activation {
    /// `v = act(v + bias)` over a slice.
    pub fn apply_with_bias(self, values: &mut [f32], bias: f32) {
        apply_with_bias(self, values, bias);
    }
}

multiversion! {
    /// `v = act(v + bias)`, one loop per activation so that each vectorises.
    pub fn apply_with_bias(act: Activation, values: &mut [f32], bias: f32) {
        match act {
            Activation::None => values.iter_mut().for_each(|v| *v += bias),
            Activation::Relu => values.iter_mut().for_each(|v| *v = (*v + bias).max(0.0)),
            Activation::HardSwish => values.iter_mut().for_each(|v| *v = hard_swish(*v + bias)),
            Activation::HardSigmoid { alpha, beta } => values
                .iter_mut()
                .for_each(|v| *v = (alpha * (*v + bias) + beta).clamp(0.0, 1.0)),
            Activation::Gelu => values.iter_mut().for_each(|v| *v = gelu(*v + bias)),
            Activation::Sigmoid => values.iter_mut().for_each(|v| *v = sigmoid(*v + bias)),
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
    /// Where a residual input, if the graph fused one in, is added.
    pub residual: Residual,
    /// `weight` packed for the matrix-product kernel, one matrix per group;
    /// filled from `weight` on first use (`Default::default()` to build).
    pub packed: OnceLock<Vec<PackedA>>,
}

/// Where a convolution adds the residual tensor passed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residual {
    /// `act(conv + bias + residual)`.
    #[default]
    BeforeActivation,
    /// `act(conv + bias) + residual`.
    AfterActivation,
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

    /// Whether each output channel reads only its own input channel.
    pub fn is_depthwise(&self) -> bool {
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
        self.forward_with_residual(input, n, h, w, None)
    }

    /// Bias, activation and the residual (laid out like the output) on a
    /// stretch of output values of one channel.
    fn finish(&self, values: &mut [f32], bias: f32, residual: Option<&[f32]>) {
        match (residual, self.residual) {
            (None, _) => self.activation.apply_with_bias(values, bias),
            (Some(r), Residual::BeforeActivation) => {
                super::ops::add_in_place(values, r);
                self.activation.apply_with_bias(values, bias);
            }
            (Some(r), Residual::AfterActivation) => {
                self.activation.apply_with_bias(values, bias);
                super::ops::add_in_place(values, r);
            }
        }
    }

    /// The epilogue that applies [`Conv2d::finish`] as the product stores the
    /// tile at output row `row` (output channel `channel`, `rows` of them)
    /// and column `c0` of an output of `cols` columns.
    fn epilogue<'a>(
        &'a self,
        (row, channel, rows): (usize, usize, usize),
        (cols, c0): (usize, usize),
        residual: Option<&[f32]>,
    ) -> Epilogue<'a> {
        Epilogue {
            bias: &self.bias[channel..][..rows],
            activation: self.activation,
            residual: residual.map(|r| {
                assert!(r.len() >= (row + rows) * cols, "residual too short");
                (r[row * cols + c0..].as_ptr(), self.residual)
            }),
        }
    }

    /// The tasks a convolution's output is cut into: (image, group, first
    /// row of a block of `block` output channels, start of a stretch of
    /// `step` along an axis of length `len`: columns or output rows).
    fn tasks(
        &self,
        n: usize,
        block: usize,
        (len, step): (usize, usize),
    ) -> Vec<(usize, usize, usize, usize)> {
        let cout_g = self.out_channels / self.groups;
        let mut tasks = Vec::new();
        for img in 0..n {
            for g in 0..self.groups {
                for r0 in (0..cout_g).step_by(block) {
                    for at in (0..len).step_by(step) {
                        tasks.push((img, g, r0, at));
                    }
                }
            }
        }
        tasks
    }

    /// [`Conv2d::forward`], adding `residual` (the output's size) as
    /// [`Conv2d::residual`] says. `None` if the input is smaller than the
    /// kernel or the residual has the wrong size.
    pub fn forward_with_residual(
        &self,
        input: &[f32],
        n: usize,
        h: usize,
        w: usize,
        residual: Option<&[f32]>,
    ) -> Option<(Vec<f32>, usize, usize)> {
        let (oh, ow) = self.output_size(h, w)?;
        let len = n * self.out_channels * oh * ow;
        let mut out = if self.is_depthwise() {
            super::memory::zeroed(len)
        } else {
            // Every value is written by the matrix products.
            Vec::with_capacity(len)
        };
        // SAFETY: the vector holds room for `len` values (initialised ones for a
        // depthwise convolution, which adds into them); `forward_into` writes all
        // of them before `set_len`, or returns `None` and the vector is dropped.
        #[allow(unsafe_code)]
        unsafe {
            let dst = std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), len);
            self.forward_into(input, (n, h, w), residual, dst)?;
            out.set_len(len);
        }
        Some((out, oh, ow))
    }

    /// [`Conv2d::forward_with_residual`] into `out`, which holds exactly the
    /// output (`n × out_channels × oh × ow` values) and is then fully
    /// written; it may start uninitialised except for a depthwise
    /// convolution, which adds into it and needs it zeroed. Returns the
    /// output size, or `None` (writing nothing) if the input is smaller than
    /// the kernel or `residual` or `out` has the wrong size.
    pub fn forward_into(
        &self,
        input: &[f32],
        (n, h, w): (usize, usize, usize),
        residual: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
    ) -> Option<(usize, usize)> {
        let (oh, ow) = self.output_size(h, w)?;
        let len = n * self.out_channels * oh * ow;
        if residual.is_some_and(|r| r.len() != len) || out.len() != len {
            return None;
        }
        if !self.is_depthwise() {
            self.forward_gemm(input, (n, h, w), out, (oh, ow), residual);
            return Some((oh, ow));
        }
        // SAFETY: a depthwise output is initialised (zeroed) by the caller, as
        // documented; f32 has no invalid bit patterns.
        #[allow(unsafe_code)]
        let out: &mut [f32] =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), out.len()) };
        let in_image = self.in_channels * h * w;
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each_init(Vec::new, |padded, (plane, dst)| {
                let c = plane % self.out_channels;
                let img = plane / self.out_channels;
                let src = &input[img * in_image + c * h * w..][..h * w];
                let kw_len = self.kernel.0 * self.kernel.1;
                depthwise_plane(
                    self,
                    src,
                    (h, w),
                    &self.weight[c * kw_len..][..kw_len],
                    dst,
                    (oh, ow),
                    padded,
                );
                let res = residual.map(|r| &r[plane * oh * ow..][..oh * ow]);
                self.finish(dst, self.bias[c], res);
            });
        Some((oh, ow))
    }

    /// The weights packed for the matrix-product kernel, one matrix per
    /// group, packed on first use.
    fn packed(&self) -> &[PackedA] {
        let (kh, kw) = self.kernel;
        let depth = self.in_channels / self.groups * kh * kw;
        let cout_g = self.out_channels / self.groups;
        self.packed.get_or_init(|| {
            (0..self.groups)
                .map(|g| {
                    PackedA::new(
                        &self.weight[g * cout_g * depth..][..cout_g * depth],
                        cout_g,
                        depth,
                    )
                })
                .collect()
        })
    }

    /// Rows of output channels per task: all of them, or as few whole
    /// panels (at least 32 rows) as give every thread two tasks out of
    /// `tasks_per_block` column tasks.
    fn row_block(&self, tasks_per_block: usize) -> usize {
        let cout_g = self.out_channels / self.groups;
        let mr = self.packed().first().map_or(1, PackedA::panel_rows);
        let wanted = (2 * rayon::current_num_threads()).div_ceil(tasks_per_block.max(1));
        let row_blocks = wanted.clamp(1, cout_g.div_ceil(32).max(1));
        cout_g.div_ceil(row_blocks).div_ceil(mr) * mr
    }

    /// Every other convolution as matrix products, `weights · columns`,
    /// writing every value of `out` (which may start uninitialised).
    ///
    /// A 1×1 convolution with stride 1 multiplies the weights by the input
    /// itself, in tiles of output pixels (columns) small enough that their
    /// packed copy stays in cache, and, when there are too few of those for
    /// every thread, ranges of output channels (rows). Anything else is a
    /// direct convolution ([`Conv2d::forward_direct`]). Each tile gets its
    /// bias, activation and residual while it is still in cache.
    fn forward_gemm(
        &self,
        input: &[f32],
        (n, h, w): (usize, usize, usize),
        out: &mut [MaybeUninit<f32>],
        (oh, ow): (usize, usize),
        residual: Option<&[f32]>,
    ) {
        if !self.is_pointwise() {
            return self.forward_direct(input, (n, h, w), out, (oh, ow), residual);
        }
        let cols = oh * ow;
        let cin_g = self.in_channels / self.groups;
        let cout_g = self.out_channels / self.groups;
        let depth = cin_g;
        let packed = self.packed();
        let tile = column_tile(depth, cols);
        let block = self.row_block(n * self.groups * cols.div_ceil(tile));
        let tiles = Tiles::new(out, cols);
        self.tasks(n, block, (cols, tile))
            .into_par_iter()
            .for_each_init(Vec::new, |strips, (img, g, r0, c0)| {
                let rows = block.min(cout_g - r0);
                let tn = tile.min(cols - c0);
                let src = &input[(img * self.in_channels + g * cin_g) * h * w..][..cin_g * h * w];
                pack_b(&src[c0..], h * w, depth, tn, strips);
                let co0 = g * cout_g + r0;
                let first_row = img * self.out_channels + co0;
                let epilogue = self.epilogue((first_row, co0, rows), (cols, c0), residual);
                // SAFETY: every task owns a distinct (image, row block, column
                // tile) rectangle of the output, and the product writes all
                // of it; the residual is laid out like the output.
                #[allow(unsafe_code)]
                unsafe {
                    tiles.fill((first_row, rows), (c0, tn), |dst, ld| {
                        packed[g].product_raw((r0, rows), strips, tn, dst, ld, Some(epilogue))
                    });
                }
            });
    }

    /// A convolution read straight from its input, without im2col.
    ///
    /// The input is first copied with its padding, each channel split into
    /// `stride.1` planes of alternate columns, so that for any kernel tap the
    /// values it reads for consecutive output pixels of a row are
    /// consecutive. The matrix-product kernel then takes row `p` of its
    /// right-hand operand at a fixed offset per tap from the output row's
    /// start ([`PackedA::product_taps`]): no column matrix is built.
    fn forward_direct(
        &self,
        input: &[f32],
        (n, h, w): (usize, usize, usize),
        out: &mut [MaybeUninit<f32>],
        (oh, ow): (usize, usize),
        residual: Option<&[f32]>,
    ) {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (pt, pl) = (self.pads[0], self.pads[1]);
        let cin_g = self.in_channels / self.groups;
        let cout_g = self.out_channels / self.groups;
        let packed = self.packed();
        let pw = ow + (kw - 1) / sw;
        let planes = n * self.in_channels * sw;
        let slack = super::packed::block_sizes().1;
        // The padded copy is made for a band of output rows at a time: for a whole page-sized
        // input it would be as large as the input (136 MB for the detector's first stride-2
        // convolution), the process's peak of memory.
        let band = (DIRECT_BAND_VALUES / (planes * pw * sh).max(1)).clamp(1, oh);
        let cols = oh * ow;
        let tiles = Tiles::new(out, cols);
        let mut padded: Vec<f32> = Vec::new();
        for band_start in (0..oh).step_by(band) {
            let band_rows = band.min(oh - band_start);
            // Each padded plane holds the rows and columns the taps read for the band: padded
            // rows from `band_start * sh` on.
            let ph = (band_rows - 1) * sh + kh;
            let plane = ph * pw;
            padded.clear();
            padded.reserve(planes * plane + slack);
            let (planes_part, slack_part) =
                padded.spare_capacity_mut()[..planes * plane + slack].split_at_mut(planes * plane);
            slack_part.fill(MaybeUninit::new(0.0));
            planes_part
                .par_chunks_mut(plane)
                .enumerate()
                .for_each(|(i, dst)| {
                    let (channel, phase) = (i / sw, i % sw);
                    let src = &input[channel * h * w..][..h * w];
                    // Column x of this plane is padded column x·sw + phase, input
                    // column x·sw + phase - pl: inside for x in lo..hi.
                    let lo = pl.saturating_sub(phase).div_ceil(sw).min(pw);
                    let hi = (w + pl).saturating_sub(phase).div_ceil(sw).clamp(lo, pw);
                    for (y, dst_row) in dst.chunks_exact_mut(pw).enumerate() {
                        let padded_row = band_start * sh + y;
                        let Some(iy) = padded_row.checked_sub(pt).filter(|&iy| iy < h) else {
                            dst_row.fill(MaybeUninit::new(0.0));
                            continue;
                        };
                        let src_row = &src[iy * w..][..w];
                        dst_row[..lo].fill(MaybeUninit::new(0.0));
                        dst_row[hi..].fill(MaybeUninit::new(0.0));
                        let first = lo * sw + phase - pl;
                        every_nth(&mut dst_row[lo..hi], &src_row[first..], sw);
                    }
                });
            // SAFETY: the loop above wrote every plane, row by row, and the
            // slack.
            #[allow(unsafe_code)]
            unsafe {
                padded.set_len(planes * plane + slack)
            };
            // Tap (c, ky, kx) of a group, relative to the group's first plane
            // and the output row's first read.
            let taps: Vec<usize> = (0..cin_g * kh * kw)
                .map(|p| {
                    let (c, ky, kx) = (p / (kh * kw), p / kw % kh, p % kw);
                    (c * sw + kx % sw) * plane + ky * pw + kx / sw
                })
                .collect();
            let max_tap = taps.iter().copied().max().unwrap_or(0);
            let rows_per_task = (512 / ow).clamp(1, band_rows);
            let block = self.row_block(n * self.groups * band_rows.div_ceil(rows_per_task));
            let padded = &padded;
            self.tasks(n, block, (band_rows, rows_per_task))
                .into_par_iter()
                .for_each(|(img, g, r0, band_oy0)| {
                    let rows = block.min(cout_g - r0);
                    let group_start = (img * self.in_channels + g * cin_g) * sw * plane;
                    let co0 = g * cout_g + r0;
                    let first_row = img * self.out_channels + co0;
                    for band_oy in band_oy0..(band_oy0 + rows_per_task).min(band_rows) {
                        let c0 = (band_start + band_oy) * ow;
                        let start = group_start + band_oy * sh * pw;
                        let epilogue = self.epilogue((first_row, co0, rows), (cols, c0), residual);
                        // SAFETY: every task owns a distinct (image, row block,
                        // output rows) rectangle of the output, and the product
                        // writes all of it.
                        #[allow(unsafe_code)]
                        unsafe {
                            tiles.fill((first_row, rows), (c0, ow), |dst, ld| {
                                packed[g].product_taps(
                                    (r0, rows),
                                    (padded, start),
                                    (&taps, max_tap),
                                    ow,
                                    dst,
                                    ld,
                                    Some(epilogue),
                                )
                            });
                        }
                    }
                });
        }
    }
}

multiversion! {
    /// `dst[i] = src[i * step]` for every value of `dst`: a row of a padded plane, every
    /// `step`-th input column. The common steps get loops of their own, which vectorise.
    fn every_nth(dst: &mut [MaybeUninit<f32>], src: &[f32], step: usize) {
        match step {
            1 => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    d.write(v);
                }
            }
            2 => {
                // As many values as the source has pairs, and a lone last value.
                let n = dst.len().min(src.len().div_ceil(2));
                let whole = n.min(src.len() / 2);
                for (d, v) in dst[..whole].iter_mut().zip(src.chunks_exact(2)) {
                    d.write(v[0]);
                }
                if whole < n {
                    dst[whole].write(src[2 * whole]);
                }
            }
            _ => {
                for (d, v) in dst.iter_mut().zip(src.chunks(step)) {
                    d.write(v[0]);
                }
            }
        }
    }
}

/// Values of padded input a direct convolution copies at a time (16 MB): a band of output rows
/// whose padded input rows, of every channel, fit in it (at least one row).
const DIRECT_BAND_VALUES: usize = 4 << 20;

multiversion! {
    /// One channel plane of a depthwise convolution: for every kernel tap, a
    /// scaled input row added to the output row.
    pub fn depthwise_plane(
        conv: &Conv2d,
        src: &[f32],
        hw: (usize, usize),
        k: &[f32],
        dst: &mut [f32],
        ohw: (usize, usize),
        padded: &mut Vec<f32>,
    ) {
        let ((h, w), (oh, ow)) = (hw, ohw);
        let (kh, kw) = conv.kernel;
        let (sh, sw) = conv.stride;
        let (pt, pl) = (conv.pads[0] as isize, conv.pads[1] as isize);
        if sw == 1 && matches!((kh, kw), (3, 3) | (5, 5) | (7, 7) | (1, 3) | (1, 5) | (1, 7)) {
            let pw = w + conv.pads[1] + conv.pads[3];
            let ph = h + conv.pads[0] + conv.pads[2];
            padded.clear();
            padded.resize(ph * pw, 0.0);
            for (y, row) in src.chunks_exact(w).enumerate() {
                padded[(y + conv.pads[0]) * pw + conv.pads[1]..][..w].copy_from_slice(row);
            }
            let args = (padded.as_slice(), pw, sh, k, dst, (oh, ow));
            match (kh, kw) {
                (3, 3) => depthwise_fixed::<3, 3>(args),
                (5, 5) => depthwise_fixed::<5, 5>(args),
                (7, 7) => depthwise_fixed::<7, 7>(args),
                (1, 3) => depthwise_fixed::<1, 3>(args),
                (1, 5) => depthwise_fixed::<1, 5>(args),
                _ => depthwise_fixed::<1, 7>(args),
            }
            return;
        }
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
}

/// The arguments of [`depthwise_fixed`]: padded input, its row length, row
/// stride, weights, output, output size.
type FixedArgs<'a> = (
    &'a [f32],
    usize,
    usize,
    &'a [f32],
    &'a mut [f32],
    (usize, usize),
);

/// A depthwise plane with a kernel size known at compile time and column
/// stride 1, over an input already padded with zeros (row length `pw`): each
/// output is summed in a register over all its taps and stored once, and the
/// loop over a row vectorises.
#[inline(always)]
fn depthwise_fixed<const KH: usize, const KW: usize>(
    (padded, pw, sh, k, dst, (oh, ow)): FixedArgs,
) {
    let weights: [[f32; KW]; KH] =
        std::array::from_fn(|ky| std::array::from_fn(|kx| k[ky * KW + kx]));
    for (oy, out) in dst.chunks_exact_mut(ow).take(oh).enumerate() {
        let n = out.len();
        let rows: [&[f32]; KH] =
            std::array::from_fn(|ky| &padded[(oy * sh + ky) * pw..][..n + KW - 1]);
        for (i, o) in out.iter_mut().enumerate() {
            let mut acc = 0.0;
            for (row, weights) in rows.iter().zip(&weights) {
                let taps = &row[i..i + KW];
                for kx in 0..KW {
                    acc += weights[kx] * taps[kx];
                }
            }
            *o = acc;
        }
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
        let mut cols = super::memory::zeroed(rows * h * w);
        let mut out = super::memory::zeroed(n * self.out_channels * oh * ow);
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
                    self.activation.apply_with_bias(plane, self.bias[co]);
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

/// The number of output columns a 1×1 convolution handles at a time: the
/// packed tile of input columns (`depth` values each) stays within about
/// 256 KiB.
fn column_tile(depth: usize, cols: usize) -> usize {
    let tile = (64 * 1024 / depth.max(1)).clamp(64, 512) / 32 * 32;
    tile.min(cols).max(1)
}

/// A constant right-hand matrix `W` (`k × n`) and a bias per column, packed
/// once into the strips the matrix-product kernel reads: a fully connected
/// layer, `x · W + bias` for any number of rows `x`.
///
/// The bias is an extra row of `W`, met by a column of ones added to `x`:
/// the kernel's last step is then `sum + 1 · bias`, the same single rounding
/// as adding it afterwards, with no pass of its own over the output (the
/// recogniser's last layer writes 18,710 values per time step).
#[derive(Debug)]
pub struct PackedRight {
    k: usize,
    n: usize,
    biased: bool,
    strips: Vec<f32>,
}

impl PackedRight {
    /// Packs the row-major `k × n` matrix `weight` and the `n` values of
    /// `bias`, if any.
    pub fn new(weight: &[f32], bias: Option<&[f32]>, k: usize, n: usize) -> Self {
        assert!(weight.len() >= k * n, "weight shorter than k × n");
        let mut strips = Vec::new();
        match bias {
            Some(bias) => {
                assert!(bias.len() >= n, "bias shorter than n");
                let mut w = Vec::with_capacity((k + 1) * n);
                w.extend_from_slice(&weight[..k * n]);
                w.extend_from_slice(&bias[..n]);
                pack_b(&w, n, k + 1, n, &mut strips);
            }
            None => pack_b(weight, n, k, n, &mut strips),
        }
        Self {
            k,
            n,
            biased: bias.is_some(),
            strips,
        }
    }

    /// The depth of `x` the layer takes.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The output's row length.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `x · W + bias` for the row-major `rows × k` matrix `x`: `rows × n`
    /// values, row-major.
    ///
    /// The activations are packed once (a few hundred KiB for a recogniser
    /// batch) and each task takes a range of `W`'s strips: a strip stays in
    /// L1 while every row of `x` passes over it.
    pub fn product(&self, x: &[f32]) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        let rows = x.len().checked_div(k).unwrap_or(0);
        let len = rows * n;
        let mut out = Vec::with_capacity(len);
        self.write(&x[..rows * k], rows, &mut out.spare_capacity_mut()[..len]);
        // SAFETY: `write` wrote all `len` values.
        #[allow(unsafe_code)]
        unsafe {
            out.set_len(len)
        };
        out
    }

    /// [`PackedRight::product`] into `out`, `rows × n` values, all written.
    fn write(&self, x: &[f32], rows: usize, out: &mut [MaybeUninit<f32>]) {
        let (k, n) = (self.k, self.n);
        if rows == 0 || n == 0 {
            return;
        }
        let depth = k + usize::from(self.biased);
        let a = if self.biased {
            let mut xa = Vec::with_capacity(rows * depth);
            for row in x.chunks_exact(k) {
                xa.extend_from_slice(row);
                xa.push(1.0);
            }
            PackedA::new(&xa, rows, depth)
        } else {
            PackedA::new(x, rows, depth)
        };
        let nr = super::packed::block_sizes().1;
        let strips = n.div_ceil(nr);
        let per_task = strips.div_ceil(4 * rayon::current_num_threads()).max(1);
        let tiles = Tiles::new(out, n);
        (0..strips)
            .step_by(per_task)
            .collect::<Vec<_>>()
            .into_par_iter()
            .for_each(|s0| {
                let c0 = s0 * nr;
                let cols = (per_task * nr).min(n - c0);
                // SAFETY: each task writes its own columns `c0..c0 + cols` of every row, and
                // the product writes all of them; strip `s0` on holds the columns' packed rows.
                #[allow(unsafe_code)]
                unsafe {
                    tiles.fill((0, rows), (c0, cols), |dst, ld| {
                        a.product_raw(
                            (0, rows),
                            &self.strips[s0 * depth * nr..],
                            cols,
                            dst,
                            ld,
                            None,
                        )
                    });
                }
            });
    }
}

/// A row-major output matrix that several threads fill, each its own tiles;
/// its values may start uninitialised, and are read only once written.
struct Tiles<'a> {
    ptr: *mut f32,
    len: usize,
    /// The row length.
    ld: usize,
    _data: std::marker::PhantomData<&'a mut [MaybeUninit<f32>]>,
}

// SAFETY: `Tiles` is a `&mut [f32]` handed to threads that write disjoint
// tiles of it (the contract of `product`); f32 is `Send`.
#[allow(unsafe_code)]
unsafe impl Send for Tiles<'_> {}
#[allow(unsafe_code)]
unsafe impl Sync for Tiles<'_> {}

impl<'a> Tiles<'a> {
    fn new(data: &'a mut [MaybeUninit<f32>], ld: usize) -> Self {
        Self {
            ptr: data.as_mut_ptr().cast(),
            len: data.len(),
            ld,
            _data: std::marker::PhantomData,
        }
    }

    /// Has `multiply` write the tile at rows `r0..r0 + rows`, columns
    /// `c0..c0 + cols`, given its first value and the row stride.
    ///
    /// # Safety
    ///
    /// No other call may touch the same tile while this one runs, and
    /// `multiply` must write every value of the tile and nothing outside it.
    #[allow(unsafe_code)]
    unsafe fn fill(
        &self,
        (r0, rows): (usize, usize),
        (c0, cols): (usize, usize),
        multiply: impl FnOnce(*mut f32, usize),
    ) {
        if rows == 0 || cols == 0 {
            return;
        }
        assert!(
            c0 + cols <= self.ld && (r0 + rows - 1) * self.ld + c0 + cols <= self.len,
            "tile outside the matrix"
        );
        // SAFETY: the assertion checks that the tile lies inside the matrix;
        // the caller guarantees that nothing else touches it meanwhile.
        unsafe { multiply(self.ptr.add(r0 * self.ld + c0), self.ld) }
    }
}

/// Whether a row-major `rows × cols` matrix with row stride `stride` fits
/// in `len` values.
fn fits(len: usize, rows: usize, cols: usize, stride: usize) -> bool {
    rows == 0 || (stride >= cols && len >= (rows - 1) * stride + cols)
}

/// `dst = a · b` for row-major matrices given as `(data, row stride)`,
/// `(m, n, k)` the sizes, `m` and `n` not zero. Checks that `a` and `b` hold
/// what the sizes read.
///
/// # Safety
///
/// `dst` must be valid for writes of `m` rows of `n` values, `ldc` apart,
/// that nothing else reads or writes meanwhile.
#[allow(unsafe_code)]
unsafe fn product_into(
    (dst, ldc): (*mut f32, usize),
    (m, n, k): (usize, usize, usize),
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    parallelism: gemm::Parallelism,
) {
    assert!(
        k == 0 || (fits(a.len(), m, k, lda) && fits(b.len(), k, n, ldb)),
        "sgemm: slice too short for its sizes and strides"
    );
    // SAFETY: the caller vouches for `dst`; the assertion above checks that
    // every element read lies inside `a` or `b`.
    unsafe {
        if k == 0 {
            for r in 0..m {
                std::slice::from_raw_parts_mut(dst.add(r * ldc), n).fill(0.0);
            }
            return;
        }
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ldc as isize,
            false,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            1,
            ldb as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `c[m×n] = a[m×k] · b[k×n]`, all row-major and contiguous.
pub fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    sgemm_strided((m, n, k), (a, k), (b, n), (c, n), true);
}

/// `c = a · b` for row-major matrices given as `(slice, row stride)`, with
/// `(m, n, k)` the sizes; `parallel` lets the product use every thread.
pub fn sgemm_strided(
    (m, n, k): (usize, usize, usize),
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    (c, ldc): (&mut [f32], usize),
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        fits(c.len(), m, n, ldc),
        "sgemm: slice too short for its sizes and strides"
    );
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 && m * n * k > 64 * 64 * 64 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertion above checks that `c` holds the `m` rows of `n`
    // values `ldc` apart; it is a distinct `&mut`, so nothing else reads or
    // writes them.
    #[allow(unsafe_code)]
    unsafe {
        product_into(
            (c.as_mut_ptr(), ldc),
            (m, n, k),
            (a, lda),
            (b, ldb),
            parallelism,
        );
    }
}
