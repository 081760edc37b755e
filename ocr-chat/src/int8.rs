//! Int8 matrix products for the language model on CPUs with AVX-512 VNNI.
//!
//! candle's quantized matmul takes one dot product at a time: its prefill of a 700-token prompt
//! ran at about 32 tokens/s for the 1.5B model on two cores, which alone broke the chat's latency
//! target. Here each weight matrix is converted once, at load, to 8-bit integers with one scale
//! per 32 inputs of a row (llama.cpp's Q8_0 grid, finer than the 4-bit source, so the conversion
//! adds little error). Activations are quantized the same way per row, and a register-blocked
//! kernel multiplies 4 rows by 32 output channels with `vpdpbusd`, 64 multiply-adds per
//! instruction.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the weights are stored offset by 128 (as
//! `u8`) and the activations signed; the offset's contribution, `128 · Σ a` over each block of 32,
//! is subtracted per row and block.
//!
//! [`Int8Matrix::available`] says whether this CPU has the instructions; where it has not, the
//! model keeps candle's quantized matmul.

/// Inputs per scale: a block.
pub const BLOCK: usize = 32;
/// Output channels per kernel call (two 16-lane registers).
const COLS: usize = 32;
/// Activation rows per kernel call.
const ROWS: usize = 4;

/// A weight matrix of `n` output channels by `k` inputs, as offset 8-bit integers with one scale
/// per row and block of 32 inputs, packed for the kernel: for each group of 32 channels and each
/// block, 8 groups of 4 inputs, each group 32 channels × 4 bytes.
#[derive(Clone)]
pub struct Int8Matrix {
    n: usize,
    k: usize,
    /// `[n / 32][k / 32][8][32][4]`, weights + 128.
    q: Vec<u8>,
    /// `[n / 32][k / 32][32]`.
    scale: Vec<f32>,
}

impl std::fmt::Debug for Int8Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Int8Matrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

/// Activations quantized per row and block: signed bytes, scales, and `128 · Σ` per block.
struct Quantized {
    q: Vec<i8>,
    scale: Vec<f32>,
    offset: Vec<i32>,
}

/// `v` rounded half away from zero and clamped to ±127. `f32::round` is a libm call on baseline
/// x86-64; a truncating conversion is one instruction.
#[inline(always)]
fn to_i8(v: f32) -> i8 {
    let v = v.clamp(-127.0, 127.0);
    (v + 0.5f32.copysign(v)) as i8
}

/// One block of 32 values on the symmetric 8-bit grid: each value's step count goes to `put`
/// with its index; returns the step size (0 for an all-zero block).
#[inline(always)]
fn quantize_block(src: &[f32], mut put: impl FnMut(usize, i8)) -> f32 {
    let amax = src.iter().fold(0f32, |a, v| a.max(v.abs()));
    let step = amax / 127.0;
    let inv = if step > 0.0 { 1.0 / step } else { 0.0 };
    for (i, v) in src.iter().enumerate() {
        put(i, to_i8(v * inv));
    }
    step
}

fn quantize_activations(x: &[f32], m: usize, k: usize) -> Quantized {
    use rayon::prelude::*;
    let blocks = k / BLOCK;
    let mut q = vec![0i8; m * k];
    let mut scale = vec![0f32; m * blocks];
    let mut offset = vec![0i32; m * blocks];
    // Rows in parallel: for a long prompt this is tens of megabytes.
    q.par_chunks_mut(k)
        .zip(scale.par_chunks_mut(blocks))
        .zip(offset.par_chunks_mut(blocks))
        .zip(x.par_chunks(k))
        .with_min_len(16)
        .for_each(|(((q, scale), offset), x)| {
            for (b, chunk) in x.chunks_exact(BLOCK).enumerate() {
                let out = &mut q[b * BLOCK..(b + 1) * BLOCK];
                let mut sum = 0i32;
                scale[b] = quantize_block(chunk, |i, r| {
                    sum += i32::from(r);
                    out[i] = r;
                });
                offset[b] = 128 * sum;
            }
        });
    Quantized { q, scale, offset }
}

impl Int8Matrix {
    /// Whether this CPU runs the kernel (AVX-512 F, BW and VNNI). `OCR_SIMD=avx2` or
    /// `OCR_SIMD=baseline` turns it off, as for the engine's kernels.
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static AVAILABLE: OnceLock<bool> = OnceLock::new();
            *AVAILABLE.get_or_init(|| {
                ocr_core::nn::simd::level() >= 2
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Quantizes a row-major `n × k` matrix (`k` a multiple of 32).
    pub fn from_f32(w: &[f32], n: usize, k: usize) -> Self {
        assert!(
            k.is_multiple_of(BLOCK),
            "k = {k} is not a multiple of {BLOCK}"
        );
        assert_eq!(w.len(), n * k, "weights are not {n} × {k}");
        let groups = n.div_ceil(COLS);
        let blocks = k / BLOCK;
        // Padding channels stay at weight 0 (stored 128) with scale 0.
        let mut q = vec![128u8; groups * blocks * COLS * BLOCK];
        let mut scale = vec![0f32; groups * blocks * COLS];
        // Groups of 32 channels in parallel: the 1.5B model converts 1.3 billion weights at load.
        use rayon::prelude::*;
        q.par_chunks_mut(blocks * COLS * BLOCK)
            .zip(scale.par_chunks_mut(blocks * COLS))
            .enumerate()
            .for_each(|(g, (q, scale))| {
                for c in 0..COLS.min(n - g * COLS) {
                    let row = g * COLS + c;
                    for b in 0..blocks {
                        let src = &w[row * k + b * BLOCK..row * k + (b + 1) * BLOCK];
                        let base = b * COLS * BLOCK;
                        scale[b * COLS + c] = quantize_block(src, |i, r| {
                            q[base + (i / 4) * COLS * 4 + c * 4 + i % 4] =
                                (i32::from(r) + 128) as u8;
                        });
                    }
                }
            });
        Self { n, k, q, scale }
    }

    /// Output channels.
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Inputs.
    pub fn cols(&self) -> usize {
        self.k
    }

    /// Row `row` (one output channel's weights) as floats, appended to `out`: the embedding
    /// lookup of a model whose output matrix is its embedding table.
    pub fn row_into(&self, row: usize, out: &mut Vec<f32>) {
        assert!(row < self.n, "row {row} of {}", self.n);
        let blocks = self.k / BLOCK;
        let (g, c) = (row / COLS, row % COLS);
        for b in 0..blocks {
            let s = self.scale[(g * blocks + b) * COLS + c];
            let base = (g * blocks + b) * COLS * BLOCK;
            out.extend((0..BLOCK).map(|i| {
                let q = self.q[base + (i / 4) * COLS * 4 + c * 4 + i % 4];
                (i32::from(q) - 128) as f32 * s
            }));
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.q.len() + self.scale.len() * 4
    }

    /// `x · Wᵀ` for `m` rows of `k` inputs: `m × n`, row-major. Panics where the kernel is not
    /// [`available`](Self::available).
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert!(Self::available(), "the int8 kernel needs AVX-512 VNNI");
        assert_eq!(x.len(), m * self.k, "input is not {m} × {}", self.k);
        let a = quantize_activations(x, m, self.k);
        let mut out = vec![0f32; m * self.n];
        let groups = self.n.div_ceil(COLS);
        let threads = rayon::current_num_threads().max(1);
        // Each task takes whole channel groups, so no two write the same output.
        let per_task = groups.div_ceil(threads * 4).max(1);
        let out_ptr = SendPtr(out.as_mut_ptr());
        rayon::scope(|s| {
            let mut start = 0;
            while start < groups {
                let end = (start + per_task).min(groups);
                let a = &a;
                s.spawn(move |_| {
                    let out_ptr = out_ptr;
                    for g in start..end {
                        self.group(a, m, g, out_ptr.0);
                    }
                });
                start = end;
            }
        });
        out
    }

    /// Every row of the output for one group of 32 channels.
    fn group(&self, a: &Quantized, m: usize, g: usize, out: *mut f32) {
        let blocks = self.k / BLOCK;
        let cols = COLS.min(self.n - g * COLS);
        let w = &self.q[g * blocks * COLS * BLOCK..(g + 1) * blocks * COLS * BLOCK];
        let ws = &self.scale[g * blocks * COLS..(g + 1) * blocks * COLS];
        let mut row = 0;
        while row < m {
            let rows = ROWS.min(m - row);
            let mut tile = [[0f32; COLS]; ROWS];
            let aq = &a.q[row * self.k..(row + rows) * self.k];
            let asc = &a.scale[row * blocks..(row + rows) * blocks];
            let aoff = &a.offset[row * blocks..(row + rows) * blocks];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `matmul` checked that the CPU has the kernel's features; the slices hold
            // `rows` rows of `blocks` blocks, and `w`, `ws` one group of `blocks` blocks.
            #[allow(unsafe_code)]
            unsafe {
                match rows {
                    4 => vnni::tile::<4>(aq, asc, aoff, w, ws, blocks, &mut tile),
                    3 => vnni::tile::<3>(aq, asc, aoff, w, ws, blocks, &mut tile),
                    2 => vnni::tile::<2>(aq, asc, aoff, w, ws, blocks, &mut tile),
                    _ => vnni::tile::<1>(aq, asc, aoff, w, ws, blocks, &mut tile),
                }
            }
            for (r, values) in tile.iter().enumerate().take(rows) {
                // SAFETY: row `row + r` < m and channels g·32 .. g·32 + cols < n; no other task
                // writes this group's channels.
                #[allow(unsafe_code)]
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        values.as_ptr(),
                        out.add((row + r) * self.n + g * COLS),
                        cols,
                    );
                }
            }
            row += rows;
        }
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the tasks that share the pointer write disjoint parts of the output (see `matmul`).
#[allow(unsafe_code)]
unsafe impl Send for SendPtr {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl Sync for SendPtr {}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod vnni {
    use std::arch::x86_64::*;

    use super::{BLOCK, COLS};

    /// `R` rows of quantized activations against one group of 32 channels, all blocks.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI; `a` holds `R` rows of `blocks · 32` bytes,
    /// `asc` and `aoff` `R` rows of `blocks`, `w` `blocks · 1024` bytes and `ws` `blocks · 32`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::needless_range_loop)] // `r` indexes several arrays in step
    pub(super) unsafe fn tile<const R: usize>(
        a: &[i8],
        asc: &[f32],
        aoff: &[i32],
        w: &[u8],
        ws: &[f32],
        blocks: usize,
        out: &mut [[f32; COLS]; super::ROWS],
    ) {
        let k = blocks * BLOCK;
        debug_assert!(a.len() >= R * k && asc.len() >= R * blocks && aoff.len() >= R * blocks);
        debug_assert!(w.len() >= blocks * COLS * BLOCK && ws.len() >= blocks * COLS);
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let a = a.as_ptr();
        let w = w.as_ptr();
        for b in 0..blocks {
            let mut dot = [[_mm512_setzero_si512(); 2]; R];
            // SAFETY (all pointer reads): within the lengths checked above.
            unsafe {
                let wb = w.add(b * COLS * BLOCK);
                for quad in 0..BLOCK / 4 {
                    let w0 = _mm512_loadu_si512(wb.add(quad * COLS * 4) as *const __m512i);
                    let w1 = _mm512_loadu_si512(wb.add(quad * COLS * 4 + 64) as *const __m512i);
                    for r in 0..R {
                        let x =
                            (a.add(r * k + b * BLOCK + quad * 4) as *const i32).read_unaligned();
                        let x = _mm512_set1_epi32(x);
                        dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], w0, x);
                        dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], w1, x);
                    }
                }
                let s0 = _mm512_loadu_ps(ws.as_ptr().add(b * COLS));
                let s1 = _mm512_loadu_ps(ws.as_ptr().add(b * COLS + 16));
                for r in 0..R {
                    let off = _mm512_set1_epi32(*aoff.get_unchecked(r * blocks + b));
                    let x_scale = _mm512_set1_ps(*asc.get_unchecked(r * blocks + b));
                    let v0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot[r][0], off));
                    let v1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot[r][1], off));
                    acc[r][0] = _mm512_fmadd_ps(v0, _mm512_mul_ps(s0, x_scale), acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(v1, _mm512_mul_ps(s1, x_scale), acc[r][1]);
                }
            }
        }
        for r in 0..R {
            // SAFETY: each output row holds 32 floats.
            unsafe {
                _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r][0]);
                _mm512_storeu_ps(out[r].as_mut_ptr().add(16), acc[r][1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence in [-1, 1).
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum();
            }
        }
        out
    }

    /// The worst case of two roundings to the nearest step: per block, every product
    /// `a · w` is off by at most `|a|·sw/2 + |w|·sa/2 + sa·sw/4`.
    fn bound(x: &[f32], w: &[f32], k: usize) -> f32 {
        x.chunks(BLOCK)
            .zip(w.chunks(BLOCK))
            .map(|(a, w)| {
                let sa = a.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                let sw = w.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                a.iter()
                    .zip(w)
                    .map(|(a, w)| a.abs() * sw / 2.0 + w.abs() * sa / 2.0 + sa * sw / 4.0)
                    .sum::<f32>()
            })
            .sum::<f32>()
            * 1.001
            + 1e-4 * k as f32
    }

    #[test]
    fn matches_the_float_product_within_quantization_error() {
        if !Int8Matrix::available() {
            eprintln!("no AVX-512 VNNI here: the kernel is not used on this CPU");
            return;
        }
        // Row tails (1..=3 rows left), a partial channel group, an outlier input.
        let mut total_error = 0f64;
        let mut total = 0f64;
        for &(m, n, k) in &[
            (1, 32, 32),
            (7, 45, 96),
            (4, 64, 256),
            (13, 100, 64),
            (9, 70, 1536),
        ] {
            let mut x = noise(m * k, 1);
            x[3] = 40.0;
            let w = noise(n * k, 2);
            let got = Int8Matrix::from_f32(&w, n, k).matmul(&x, m);
            let want = reference(&x, &w, m, n, k);
            for i in 0..m {
                for j in 0..n {
                    let (g, e) = (got[i * n + j], want[i * n + j]);
                    let limit = bound(&x[i * k..(i + 1) * k], &w[j * k..(j + 1) * k], k);
                    assert!(
                        (g - e).abs() <= limit,
                        "({m},{n},{k}) [{i},{j}]: {g} vs {e}"
                    );
                    if i > 0 {
                        total_error += f64::from((g - e).abs());
                        total += f64::from(e.abs());
                    }
                }
            }
        }
        // Away from the outlier the error is a small fraction of the values.
        assert!(
            total_error / total < 0.01,
            "mean relative error {}",
            total_error / total
        );
    }

    #[test]
    fn exact_on_values_the_grid_holds() {
        if !Int8Matrix::available() {
            return;
        }
        // Integers up to 127 in each block, with the block maximum present: both quantizations
        // are exact, so the product is too.
        let (m, n, k) = (5, 33, 64);
        let x: Vec<f32> = (0..m * k)
            .map(|i| {
                if i % BLOCK == 0 {
                    127.0
                } else {
                    ((i * 7) % 255) as f32 - 127.0
                }
            })
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| {
                if i % BLOCK == 0 {
                    -127.0
                } else {
                    ((i * 13) % 255) as f32 - 127.0
                }
            })
            .collect();
        let got = Int8Matrix::from_f32(&w, n, k).matmul(&x, m);
        let want = reference(&x, &w, m, n, k);
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-3 * e.abs().max(1.0), "{g} vs {e}");
        }
    }

    #[test]
    fn rows_read_back_within_half_a_step() {
        let (n, k) = (45, 96);
        let w = noise(n * k, 5);
        let m = Int8Matrix::from_f32(&w, n, k);
        for row in [0, 31, 32, 44] {
            let mut got = Vec::new();
            m.row_into(row, &mut got);
            let want = &w[row * k..(row + 1) * k];
            for (block, (g, e)) in got.chunks(BLOCK).zip(want.chunks(BLOCK)).enumerate() {
                let step = e.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                for (g, e) in g.iter().zip(e) {
                    assert!(
                        (g - e).abs() <= step * 0.501,
                        "row {row} block {block}: {g} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn zero_blocks_and_zero_rows_give_zero() {
        if !Int8Matrix::available() {
            return;
        }
        let (m, n, k) = (3, 40, 64);
        let x = vec![0f32; m * k];
        let w = noise(n * k, 3);
        assert!(
            Int8Matrix::from_f32(&w, n, k)
                .matmul(&x, m)
                .iter()
                .all(|v| *v == 0.0)
        );
        let x = noise(m * k, 4);
        let w = vec![0f32; n * k];
        assert!(
            Int8Matrix::from_f32(&w, n, k)
                .matmul(&x, m)
                .iter()
                .all(|v| *v == 0.0)
        );
    }
}
