//! Matrix products with weights packed once: the engine's own GEMM for
//! convolutions, `weights · columns`.
//!
//! A convolution's weight matrix is constant, so it is rearranged once into
//! panels of `mr` rows stored column by column ([`PackedA`]). For each tile
//! of columns the caller packs the activations into strips of `nr` columns
//! stored row by row ([`pack_b`]); that copy also breaks the power-of-two
//! row strides of large feature maps, which would otherwise make every row of
//! a strip fall into the same cache set. A register-blocked micro-kernel then
//! multiplies one panel by one strip with `mr × nr` accumulators in vector
//! registers, reading both operands sequentially. The loops run strip by
//! strip, and within a strip (with AVX-512, a slice of its depth at a time)
//! over every panel: the strip stays in L1 while the panels stream from L2.
//! A constant right-hand side, a fully connected layer's weights, is packed
//! once into strips instead and the activations into panels
//! ([`super::kernels::PackedRight`]).
//!
//! The sizes depend on the CPU, chosen once at run time:
//!
//! | level   | `mr` | `nr` | accumulators          |
//! |---------|------|------|-----------------------|
//! | AVX-512 | 8    | 32   | 16 of 32 zmm registers |
//! | AVX2    | 6    | 16   | 12 of 16 ymm registers |
//! | other   | 4    | 16   | (compiler-vectorised) |

use super::kernels::{Activation, Residual};

/// Rows and columns of the micro-kernel at this CPU's vector level.
pub fn block_sizes() -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        match super::simd::level() {
            2 => return (8, 32),
            1 => return (6, 16),
            _ => {}
        }
    }
    (4, 16)
}

/// What a product does to each value as it stores it: `act(v + bias)` with
/// the row's bias, and a residual (a matrix laid out like the output, with
/// the same row stride) added before or after the activation: a
/// convolution's bias, batch norm, activation and skip connection, applied
/// by the AVX-512 kernel on its registers before it stores them, and by the
/// others on each block right after they store it (still in cache).
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// One value per row of the product, from its first row.
    pub bias: &'a [f32],
    /// Any activation: the AVX-512 kernel computes each with the same
    /// operations as [`Activation::apply_with_bias`], so both give the same bits.
    pub activation: Activation,
    /// The residual's value for the product's first output value, and where
    /// it is added.
    pub residual: Option<(*const f32, Residual)>,
}

impl Epilogue<'_> {
    /// The epilogue of the rows from `r` on and columns from `c` on of an
    /// output with row stride `ld`.
    fn offset(self, r: usize, c: usize, ld: usize) -> Self {
        Self {
            bias: &self.bias[r..],
            residual: self
                .residual
                .map(|(ptr, at)| (ptr.wrapping_add(r * ld + c), at)),
            ..self
        }
    }

    /// Applies the epilogue to `rows` rows of `cols` values of `c`, `ldc`
    /// apart, already written.
    ///
    /// # Safety
    ///
    /// `c` must be valid for reads and writes of the block, and the
    /// residual, if any, for reads of a block laid out the same way.
    #[allow(unsafe_code)]
    unsafe fn apply(self, c: *mut f32, ldc: usize, rows: usize, cols: usize) {
        for r in 0..rows {
            // SAFETY: the caller vouches for the block and the residual.
            let (values, residual) = unsafe {
                (
                    std::slice::from_raw_parts_mut(c.add(r * ldc), cols),
                    self.residual
                        .map(|(ptr, at)| (std::slice::from_raw_parts(ptr.add(r * ldc), cols), at)),
                )
            };
            match residual {
                None => self.activation.apply_with_bias(values, self.bias[r]),
                Some((res, Residual::BeforeActivation)) => {
                    super::ops::add_in_place(values, res);
                    self.activation.apply_with_bias(values, self.bias[r]);
                }
                Some((res, Residual::AfterActivation)) => {
                    self.activation.apply_with_bias(values, self.bias[r]);
                    super::ops::add_in_place(values, res);
                }
            }
        }
    }
}

/// A `rows × depth` row-major matrix rearranged into panels of `mr` rows,
/// each stored column by column (`depth × mr` values); the last panel is
/// padded with zero rows.
#[derive(Debug, Clone)]
pub struct PackedA {
    rows: usize,
    depth: usize,
    mr: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Packs the row-major `rows × depth` matrix `a` for this CPU's kernel.
    pub fn new(a: &[f32], rows: usize, depth: usize) -> Self {
        Self::with_panel_rows(a, rows, depth, block_sizes().0)
    }

    fn with_panel_rows(a: &[f32], rows: usize, depth: usize, mr: usize) -> Self {
        assert!(a.len() >= rows * depth, "packing: matrix too short");
        let panels = rows.div_ceil(mr);
        let mut data = vec![0f32; panels * depth * mr];
        for (p, panel) in data.chunks_exact_mut((depth * mr).max(1)).enumerate() {
            for r in 0..mr.min(rows - p * mr) {
                let row = &a[(p * mr + r) * depth..][..depth];
                for (k, &v) in row.iter().enumerate() {
                    panel[k * mr + r] = v;
                }
            }
        }
        Self {
            rows,
            depth,
            mr,
            data,
        }
    }

    /// Rows per panel: row blocks handed to [`PackedA::product`] start at a
    /// multiple of it.
    pub fn panel_rows(&self) -> usize {
        self.mr
    }
}

/// Packs columns `0..cols` of the row-major `depth × cols` matrix `b` (row
/// stride `ldb`) into strips of `nr` columns, each stored row by row
/// (`depth × nr` values, the last strip padded with zeros), reusing `out`.
pub fn pack_b(b: &[f32], ldb: usize, depth: usize, cols: usize, out: &mut Vec<f32>) {
    let nr = block_sizes().1;
    let strips = cols.div_ceil(nr);
    // Only the last strip's padding columns need zeros: every other value
    // is overwritten below.
    out.resize(strips * depth * nr, 0.0);
    assert!(
        depth == 0 || cols == 0 || b.len() >= (depth - 1) * ldb + cols,
        "packing: matrix too short"
    );
    if nr == 32 {
        pack_rows_32(b, ldb, depth, cols, out);
    } else {
        pack_rows_16(b, ldb, depth, cols, out);
    }
}

super::simd::multiversion! {
    /// [`pack_b`]'s copy with `N` (the strip width) fixed, so that each
    /// row of a strip is a few vector moves rather than a `memcpy` call:
    /// the calls cost more than the copying for the short rows.
    fn pack_rows_32(b: &[f32], ldb: usize, depth: usize, cols: usize, out: &mut [f32]) {
        pack_rows_n::<32>(b, ldb, depth, cols, out)
    }
}

super::simd::multiversion! {
    /// [`pack_rows_32`] for 16-column strips.
    fn pack_rows_16(b: &[f32], ldb: usize, depth: usize, cols: usize, out: &mut [f32]) {
        pack_rows_n::<16>(b, ldb, depth, cols, out)
    }
}

#[inline(always)]
fn pack_rows_n<const N: usize>(b: &[f32], ldb: usize, depth: usize, cols: usize, out: &mut [f32]) {
    let (full, rest) = (cols / N, cols % N);
    let strip_len = depth * N;
    for k in 0..depth {
        let row = &b[k * ldb..][..cols];
        let (whole, tail) = row.split_at(full * N);
        for (s, src) in whole.chunks_exact(N).enumerate() {
            let dst: &mut [f32; N] = (&mut out[s * strip_len + k * N..][..N])
                .try_into()
                .expect("N values");
            *dst = src.try_into().expect("N values");
        }
        if rest > 0 {
            let dst = &mut out[full * strip_len + k * N..][..N];
            dst[..rest].copy_from_slice(tail);
            dst[rest..].fill(0.0);
        }
    }
}

impl PackedA {
    /// `c = a[r0..r0 + rows] · b` for `b` packed by [`pack_b`] with `cols`
    /// columns, written to the row-major `c` (row stride `ldc`, at least
    /// `rows` rows of `cols` values). `r0` must be a multiple of
    /// [`PackedA::panel_rows`].
    pub fn product(
        &self,
        (r0, rows): (usize, usize),
        b: &[f32],
        cols: usize,
        c: &mut [f32],
        ldc: usize,
    ) {
        assert!(
            rows == 0 || cols == 0 || (ldc >= cols && c.len() >= (rows - 1) * ldc + cols),
            "product: output too short"
        );
        // SAFETY: the assertion checks that `c` holds the rows written; it is
        // a distinct `&mut`, so nothing else touches them.
        #[allow(unsafe_code)]
        unsafe {
            self.product_raw((r0, rows), b, cols, c.as_mut_ptr(), ldc, None);
        }
    }

    /// [`PackedA::product`] to a raw output, each value stored through the
    /// epilogue when there is one.
    ///
    /// # Safety
    ///
    /// `c` must be valid for writes of `rows` rows of `cols` values, `ldc`
    /// apart, that nothing else reads or writes meanwhile; the epilogue's
    /// residual, if any, valid for reads of the same block.
    #[allow(unsafe_code)]
    pub unsafe fn product_raw(
        &self,
        (r0, rows): (usize, usize),
        b: &[f32],
        cols: usize,
        c: *mut f32,
        ldc: usize,
        epilogue: Option<Epilogue>,
    ) {
        let (k, nr) = (self.depth, block_sizes().1);
        assert!(
            b.len() >= cols.div_ceil(nr) * k * nr,
            "product: packed columns too short"
        );
        // SAFETY: strip `c0 / nr` holds `k` rows of `nr` values (the
        // assertion above); the caller vouches for `c`.
        unsafe {
            self.each_block((r0, rows), cols, (c, ldc), epilogue, |c0| Strip {
                ptr: b[c0 / nr * k * nr..].as_ptr(),
                nr,
            })
        }
    }

    /// A direct convolution's product, `c = a[r0..r0 + rows] · b`, where
    /// row `p` of `b` is `cols` consecutive values of `input` from
    /// `start + taps[p]`: the input values that kernel tap `p` reads for
    /// `cols` consecutive output pixels. The input must hold the whole
    /// vector width past the last column (the kernel reads whole vectors
    /// and stores only `cols` values).
    ///
    /// # Safety
    ///
    /// As [`PackedA::product_raw`].
    #[allow(unsafe_code, clippy::too_many_arguments)]
    pub unsafe fn product_taps(
        &self,
        (r0, rows): (usize, usize),
        (input, start): (&[f32], usize),
        (taps, max_tap): (&[usize], usize),
        cols: usize,
        c: *mut f32,
        ldc: usize,
        epilogue: Option<Epilogue>,
    ) {
        let (k, nr) = (self.depth, block_sizes().1);
        assert!(taps.len() == k, "product: one tap per row of b");
        debug_assert!(taps.iter().all(|&t| t <= max_tap));
        assert!(
            cols == 0 || start + max_tap + cols.div_ceil(nr) * nr <= input.len(),
            "product: input too short for its taps"
        );
        // SAFETY: every tap lies at most `max_tap` past the start, and the
        // input holds a whole vector past it (the assertion above); the
        // caller vouches for `c`.
        unsafe {
            self.each_block((r0, rows), cols, (c, ldc), epilogue, |c0| Taps {
                base: input.as_ptr().wrapping_add(start + c0),
                taps,
            })
        }
    }

    /// Runs the micro-kernel on every (panel, `nr` columns) block of
    /// `c = a[r0..r0 + rows] · b`, with `source(c0)` giving where the rows
    /// of `b` for columns `c0..c0 + nr` are read.
    ///
    /// # Safety
    ///
    /// Every source must be readable for `k` rows of `nr` values, and `c`
    /// valid for writes of `rows` rows of `cols` values `ldc` apart that
    /// nothing else touches meanwhile (and the epilogue's residual for
    /// reads of them).
    #[allow(unsafe_code)]
    unsafe fn each_block<R: Rows>(
        &self,
        (r0, rows): (usize, usize),
        cols: usize,
        (c, ldc): (*mut f32, usize),
        epilogue: Option<Epilogue>,
        source: impl Fn(usize) -> R,
    ) {
        let (mr, nr) = (self.mr, block_sizes().1);
        assert_eq!(mr, block_sizes().0, "product: packed for another CPU");
        assert!(
            r0.is_multiple_of(mr) && r0 + rows <= self.rows,
            "product: rows outside the matrix"
        );
        assert!(
            epilogue.is_none_or(|e| e.bias.len() >= rows),
            "product: an epilogue with a bias per row"
        );
        let k = self.depth;
        // The AVX-512 kernel takes the depth in slices, its running sums kept in `c` between
        // them (stored and reloaded unchanged, so the sums are those of one pass): a slice of a
        // strip of `b` stays in L1 while every panel of the row block passes over it, and the
        // panels (a few KiB each) come from L2. A whole-depth strip is up to 96 KiB, more than
        // L1, and would be read from L2 once per panel.
        let kc = if cfg!(target_arch = "x86_64") && super::simd::level() == 2 {
            DEPTH_SLICE
        } else {
            k.max(1)
        };
        for c0 in (0..cols).step_by(nr) {
            let width = nr.min(cols - c0);
            let strip = source(c0);
            for k0 in (0..k.max(1)).step_by(kc) {
                let kn = kc.min(k - k0);
                let first = k0 == 0;
                let last = k0 + kn >= k;
                let slice = strip.skip(k0);
                for pr in (0..rows).step_by(mr) {
                    let panel = &self.data[(r0 + pr) / mr * k * mr..][..k * mr];
                    let prows = mr.min(rows - pr);
                    let epilogue = if last {
                        epilogue.map(|e| e.offset(pr, c0, ldc))
                    } else {
                        None
                    };
                    // SAFETY: the panel holds `k` rows (sliced above); the caller
                    // vouches for the source and the `prows × width` block of `c`
                    // at (pr, c0), which an earlier slice of the depth wrote
                    // unless this is the first.
                    unsafe {
                        kernel(
                            kn,
                            &panel[k0 * mr..],
                            slice,
                            (c.add(pr * ldc + c0), ldc),
                            (prows, width),
                            !first,
                            epilogue,
                        )
                    };
                }
            }
        }
    }
}

/// Rows of a strip of `b` per slice of the depth: 192 rows of 32 values are 24 KiB, within
/// the 32 or 48 KiB L1 data cache of the CPUs with AVX-512 next to a panel's slice (6 KiB).
/// Measured on the recogniser (a batch of six 1536-px lines, one thread, interleaved with
/// onnxruntime): slices of 192 or 256 rows ran it 8% faster than the whole depth.
const DEPTH_SLICE: usize = 192;

/// Where the micro-kernel reads row `p` of its `b` operand (`nr` values).
trait Rows: Copy {
    fn row(self, p: usize) -> *const f32;
    /// The rows from `p` on.
    fn skip(self, p: usize) -> Self;
}

/// A packed strip: rows `nr` apart.
#[derive(Clone, Copy)]
struct Strip {
    ptr: *const f32,
    nr: usize,
}

impl Rows for Strip {
    #[inline(always)]
    fn row(self, p: usize) -> *const f32 {
        self.ptr.wrapping_add(p * self.nr)
    }

    #[inline(always)]
    fn skip(self, p: usize) -> Self {
        Self {
            ptr: self.row(p),
            ..self
        }
    }
}

/// Rows at listed offsets from a base: a direct convolution's kernel taps.
#[derive(Clone, Copy)]
struct Taps<'a> {
    base: *const f32,
    taps: &'a [usize],
}

impl Rows for Taps<'_> {
    #[inline(always)]
    fn row(self, p: usize) -> *const f32 {
        self.base.wrapping_add(self.taps[p])
    }

    #[inline(always)]
    fn skip(self, p: usize) -> Self {
        Self {
            taps: &self.taps[p.min(self.taps.len())..],
            ..self
        }
    }
}

/// One panel times `nr` columns of `b`: `c[r][j] = Σ_p panel[p][r] ·
/// b[p][j]` for `r < rows ≤ mr`, `j < cols ≤ nr`, with `c` rows `ldc` apart.
///
/// # Safety
///
/// Every row `p < k` of `b` must be readable for `nr` values and `c` valid
/// for writes of the block (and the epilogue's residual for reads).
#[allow(unsafe_code)]
unsafe fn kernel(
    k: usize,
    panel: &[f32],
    b: impl Rows,
    (c, ldc): (*mut f32, usize),
    (rows, cols): (usize, usize),
    accumulate: bool,
    epilogue: Option<Epilogue>,
) {
    let (mr, nr) = block_sizes();
    assert!(panel.len() >= k * mr && rows <= mr && cols <= nr);
    #[cfg(target_arch = "x86_64")]
    match super::simd::level() {
        // SAFETY: the CPU supports AVX-512F; the assertion above bounds the
        // panel, the caller `b`, `c` and the residual.
        2 => {
            let (c, panel) = ((c, ldc), panel.as_ptr());
            let shape = (rows, cols);
            return unsafe { x86::avx512(k, panel, b, c, shape, accumulate, epilogue) };
        }
        1 => {
            debug_assert!(!accumulate, "only the AVX-512 kernel slices the depth");
            // SAFETY: as above, for AVX2 and FMA.
            unsafe { x86::avx2(k, panel.as_ptr(), b, c, ldc, rows, cols) };
            if let Some(e) = epilogue {
                // SAFETY: the block was just written; the caller vouches for
                // the residual.
                unsafe { e.apply(c, ldc, rows, cols) };
            }
            return;
        }
        _ => {}
    }
    debug_assert!(!accumulate, "only the AVX-512 kernel slices the depth");
    let acc = generic(k, panel, |p| {
        // SAFETY: the caller vouches for `nr` (16 here) values at each row.
        unsafe { &*b.row(p).cast::<[f32; 16]>() }
    });
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        // SAFETY: the caller vouches for `rows` rows of `cols` values.
        unsafe { std::ptr::copy_nonoverlapping(acc_row.as_ptr(), c.add(r * ldc), cols) };
    }
    if let Some(e) = epilogue {
        // SAFETY: the block was just written; the caller vouches for the
        // residual.
        unsafe { e.apply(c, ldc, rows, cols) };
    }
}

/// The portable kernel, 4 × 16: the panel times the rows `row(p)`.
fn generic<'a>(k: usize, panel: &[f32], row: impl Fn(usize) -> &'a [f32; 16]) -> [[f32; 16]; 4] {
    let mut acc = [[0f32; 16]; 4];
    for (p, a) in panel.chunks_exact(4).enumerate().take(k) {
        let b = row(p);
        for (acc_row, &av) in acc.iter_mut().zip(a) {
            for (v, &bv) in acc_row.iter_mut().zip(b) {
                *v += av * bv;
            }
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Activation, Epilogue, Residual, Rows};

    /// 8 × 32 with AVX-512: two zmm accumulators per row, stored through
    /// the epilogue.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX-512F; `panel` holds `k × 8` values, each row
    /// `p < k` of `b` 32, `rows ≤ 8`, `cols ≤ 32`, and `c` is valid for
    /// writes of `rows` rows of `cols` values `ldc` apart (the epilogue's
    /// residual for reads of them, and its bias holds `rows` values).
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn avx512(
        k: usize,
        panel: *const f32,
        b: impl Rows,
        (c, ldc): (*mut f32, usize),
        (rows, cols): (usize, usize),
        accumulate: bool,
        epilogue: Option<Epilogue>,
    ) {
        const MR: usize = 8;
        const AHEAD: usize = 32;
        let mask = |n: usize| -> __mmask16 { if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 } };
        let (mask_lo, mask_hi) = (mask(cols), mask(cols.saturating_sub(16)));
        let mut lo = [_mm512_setzero_ps(); MR];
        let mut hi = [_mm512_setzero_ps(); MR];
        if accumulate {
            for r in 0..rows.min(MR) {
                // SAFETY: row `r < rows` of `c` holds `cols` values, written by the previous
                // slice of the depth; the masks read only those.
                unsafe {
                    let row = c.add(r * ldc);
                    lo[r] = _mm512_maskz_loadu_ps(mask_lo, row);
                    hi[r] = _mm512_maskz_loadu_ps(mask_hi, row.add(16));
                }
            }
        }
        // SAFETY: the caller guarantees `panel` and `b` hold `k` rows.
        unsafe {
            for p in 0..k {
                let row = b.row(p);
                // Taps are scattered over the input: fetch a few rows ahead.
                let ahead = b.row((p + AHEAD).min(k - 1)).cast::<i8>();
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(124));
                let b0 = _mm512_loadu_ps(row);
                let b1 = _mm512_loadu_ps(row.add(16));
                let a = panel.add(p * MR);
                for r in 0..MR {
                    let av = _mm512_set1_ps(*a.add(r));
                    lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
                    hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
                }
            }
        }
        for r in 0..rows.min(MR) {
            // SAFETY: row `r < rows` of `c` (and of the residual) holds
            // `cols` values; the masks read and write only those.
            unsafe {
                let (mut v0, mut v1) = (lo[r], hi[r]);
                if let Some(e) = epilogue {
                    let residual = e.residual.map(|(ptr, at)| {
                        let row = ptr.add(r * ldc);
                        let r0 = _mm512_maskz_loadu_ps(mask_lo, row);
                        let r1 = _mm512_maskz_loadu_ps(mask_hi, row.add(16));
                        (r0, r1, at)
                    });
                    if let Some((r0, r1, Residual::BeforeActivation)) = residual {
                        (v0, v1) = (_mm512_add_ps(v0, r0), _mm512_add_ps(v1, r1));
                    }
                    let bias = _mm512_set1_ps(*e.bias.get_unchecked(r));
                    v0 = activate(_mm512_add_ps(v0, bias), e.activation);
                    v1 = activate(_mm512_add_ps(v1, bias), e.activation);
                    if let Some((r0, r1, Residual::AfterActivation)) = residual {
                        (v0, v1) = (_mm512_add_ps(v0, r0), _mm512_add_ps(v1, r1));
                    }
                }
                let row = c.add(r * ldc);
                _mm512_mask_storeu_ps(row, mask_lo, v0);
                if mask_hi != 0 {
                    _mm512_mask_storeu_ps(row.add(16), mask_hi, v1);
                }
            }
        }
    }

    /// An activation on 16 values, operation for operation as
    /// [`Activation::apply_with_bias`] computes it, so that both give the
    /// same bits.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn activate(x: __m512, activation: Activation) -> __m512 {
        let zero = _mm512_setzero_ps();
        match activation {
            Activation::Relu => _mm512_max_ps(x, zero),
            Activation::HardSwish => {
                let gate = _mm512_min_ps(
                    _mm512_max_ps(_mm512_add_ps(x, _mm512_set1_ps(3.0)), zero),
                    _mm512_set1_ps(6.0),
                );
                _mm512_mul_ps(_mm512_mul_ps(x, gate), _mm512_set1_ps(1.0 / 6.0))
            }
            Activation::HardSigmoid { alpha, beta } => {
                let y = _mm512_add_ps(
                    _mm512_mul_ps(_mm512_set1_ps(alpha), x),
                    _mm512_set1_ps(beta),
                );
                _mm512_min_ps(_mm512_max_ps(y, zero), _mm512_set1_ps(1.0))
            }
            Activation::Gelu => gelu(x),
            Activation::Sigmoid => {
                let one = _mm512_set1_ps(1.0);
                _mm512_div_ps(one, _mm512_add_ps(one, exp(_mm512_sub_ps(zero, x))))
            }
            Activation::None => x,
        }
    }

    /// [`crate::nn::simd::exp`] on 16 values, operation for operation.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn exp(x: __m512) -> __m512 {
        let set = _mm512_set1_ps;
        let x = _mm512_min_ps(_mm512_max_ps(x, set(-87.0)), set(88.0));
        let shifted = _mm512_add_ps(
            _mm512_mul_ps(x, set(std::f32::consts::LOG2_E)),
            set(12_582_912.0),
        );
        let n = _mm512_sub_ps(shifted, set(12_582_912.0));
        let r = _mm512_add_ps(
            _mm512_sub_ps(x, _mm512_mul_ps(n, set(0.693_359_4))),
            _mm512_mul_ps(n, set(2.121_944_4e-4)),
        );
        let mut p = set(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = _mm512_add_ps(_mm512_mul_ps(p, r), set(c));
        }
        let p = _mm512_add_ps(
            _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r),
            set(1.0),
        );
        let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(
            _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(0x4B40_0000)),
            _mm512_set1_epi32(127),
        ));
        _mm512_mul_ps(p, _mm512_castsi512_ps(bits))
    }

    /// [`crate::nn::simd::gelu`] on 16 values, operation for operation.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn gelu(x: __m512) -> __m512 {
        let set = _mm512_set1_ps;
        let one = set(1.0);
        let sign = _mm512_set1_epi32(i32::MIN);
        // erf(x / √2), Abramowitz & Stegun 7.1.26.
        let z = _mm512_mul_ps(x, set(std::f32::consts::FRAC_1_SQRT_2));
        let a = _mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(z)));
        let t = _mm512_div_ps(one, _mm512_add_ps(one, _mm512_mul_ps(set(0.327_591_1), a)));
        let mut poly = set(1.061_405_4);
        for c in [-1.453_152_1, 1.421_413_8, -0.284_496_72, 0.254_829_6] {
            poly = _mm512_add_ps(_mm512_mul_ps(poly, t), set(c));
        }
        let poly = _mm512_mul_ps(poly, t);
        let minus_a2 = _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a);
        let magnitude = _mm512_sub_ps(one, _mm512_mul_ps(poly, exp(minus_a2)));
        let erf = _mm512_castsi512_ps(_mm512_or_si512(
            _mm512_andnot_si512(sign, _mm512_castps_si512(magnitude)),
            _mm512_and_si512(sign, _mm512_castps_si512(z)),
        ));
        _mm512_mul_ps(_mm512_mul_ps(set(0.5), x), _mm512_add_ps(one, erf))
    }

    /// 6 × 16 with AVX2 and FMA: two ymm accumulators per row.
    ///
    /// # Safety
    ///
    /// The CPU supports AVX2 and FMA; `panel` holds `k × 6` values, each
    /// row `p < k` of `b` 16, `rows ≤ 6`, `cols ≤ 16`, and `c` is valid for
    /// writes of `rows` rows of `cols` values `ldc` apart.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(
        k: usize,
        panel: *const f32,
        b: impl Rows,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
    ) {
        const MR: usize = 6;
        let mut lo = [_mm256_setzero_ps(); MR];
        let mut hi = [_mm256_setzero_ps(); MR];
        // SAFETY: the caller guarantees `panel` and `b` hold `k` rows.
        unsafe {
            for p in 0..k {
                let row = b.row(p);
                let b0 = _mm256_loadu_ps(row);
                let b1 = _mm256_loadu_ps(row.add(8));
                let a = panel.add(p * MR);
                for r in 0..MR {
                    let av = _mm256_broadcast_ss(&*a.add(r));
                    lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                    hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
                }
            }
        }
        let mut tmp = [0f32; 16];
        for r in 0..rows.min(MR) {
            // SAFETY: `tmp` holds 16 values; row `r < rows` of `c` holds
            // `cols ≤ 16`.
            unsafe {
                _mm256_storeu_ps(tmp.as_mut_ptr(), lo[r]);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(8), hi[r]);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), c.add(r * ldc), cols);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn product_matches_naive_at_edges() {
        let (mr, nr) = block_sizes();
        for &(m, n, k) in &[
            (1, 1, 1),
            (mr, nr, 7),
            (mr + 1, nr + 1, 3),
            (3 * mr - 1, 2 * nr + 5, 40),
            (17, 50, 0),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 11 % 13) as f32 - 6.0) / 6.0)
                .collect();
            let packed = PackedA::new(&a, m, k);
            let mut bp = Vec::new();
            pack_b(&b, n, k, n, &mut bp);
            // Rows in two blocks, the second starting at a panel boundary.
            let split = (m / 2).div_ceil(mr) * mr;
            let mut c = vec![f32::NAN; m * n];
            packed.product((0, split.min(m)), &bp, n, &mut c, n);
            if split < m {
                packed.product((split, m - split), &bp, n, &mut c[split * n..], n);
            }
            let want = naive(&a, &b, m, n, k);
            for (got, want) in c.iter().zip(&want) {
                assert!((got - want).abs() < 1e-4, "{m}x{n}x{k}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn portable_kernel_matches_naive() {
        let (m, n, k) = (4, 16, 9);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 / 10.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let packed = PackedA::with_panel_rows(&a, m, k, 4);
        // A 16-wide strip is the row-major matrix itself.
        let acc = generic(k, &packed.data, |p| {
            b[p * 16..][..16].try_into().expect("16 values")
        });
        let want = naive(&a, &b, m, n, k);
        for r in 0..m {
            for j in 0..n {
                assert!((acc[r][j] - want[r * n + j]).abs() < 1e-4);
            }
        }
    }
}
