//! Subnormal floats flushed to zero on the threads that run the networks.
//!
//! Activations that shrink towards zero through a network's layers can become subnormal
//! (below about 1.2e-38), and x86 CPUs compute with those through microcode assists, tens
//! to hundreds of times slower than with normal numbers. Flushing them to zero (the MXCSR
//! FTZ and DAZ bits) changes results by less than the smallest normal float. Measured on
//! the detector with a synthetic input, one thread: 1047 ms with subnormals, 357 ms flushed
//! (onnxruntime, which keeps them, took 851 ms on the same input).
//!
//! The bits are per thread. [`Graph::run`](super::Graph::run) sets them on the calling
//! thread for the run's duration; the worker threads of rayon's global pool get them from
//! [`configure_thread_pool`], which binaries call once, early in `main`. A library user
//! with a pool of their own can call [`flush_to_zero`] from its start handler.

/// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) bits.
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = 0x8040;

/// Sets flush-to-zero and denormals-are-zero on the calling thread (x86-64 only; elsewhere
/// it does nothing).
pub fn flush_to_zero() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: writing MXCSR's FTZ and DAZ bits only changes how this thread rounds results
    // and reads operands below the normal range; x86-64 always has SSE.
    #[allow(unsafe_code, deprecated)]
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | FTZ_DAZ);
    }
}

/// Builds rayon's global thread pool (with `threads` workers, or rayon's default) with
/// [`flush_to_zero`] on every worker, and flushes the calling thread too. Call it once,
/// early in `main`, before anything uses rayon; it fails if the global pool already exists.
pub fn configure_thread_pool(threads: Option<usize>) -> Result<(), rayon::ThreadPoolBuildError> {
    flush_to_zero();
    let mut builder = rayon::ThreadPoolBuilder::new().start_handler(|_| flush_to_zero());
    if let Some(n) = threads {
        builder = builder.num_threads(n);
    }
    builder.build_global()
}

/// Flush-to-zero on the calling thread until dropped, then the thread's previous setting.
pub(crate) struct FlushGuard {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl FlushGuard {
    pub(crate) fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: as in `flush_to_zero`; the previous value is restored on drop.
            #[allow(unsafe_code, deprecated)]
            let saved = unsafe { std::arch::x86_64::_mm_getcsr() };
            flush_to_zero();
            Self { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self {}
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: restores the value this thread had before the guard.
        #[allow(unsafe_code, deprecated)]
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.saved)
        };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subnormals_are_flushed_while_the_guard_lives() {
        let tiny = std::hint::black_box(1e-30f32);
        let product = |a: f32, b: f32| std::hint::black_box(a) * std::hint::black_box(b);
        assert!(
            product(tiny, 1e-10) > 0.0,
            "a subnormal result without the guard"
        );
        {
            let _guard = super::FlushGuard::new();
            #[cfg(target_arch = "x86_64")]
            assert_eq!(product(tiny, 1e-10), 0.0, "flushed to zero");
        }
        assert!(product(tiny, 1e-10) > 0.0, "the previous setting restored");
    }
}
