//! Allocator tuning for the runtime's large, short-lived buffers.
//!
//! Every operator returns a fresh tensor, and on a full page a detector
//! activation is tens of megabytes. glibc serves such blocks with `mmap` and
//! unmaps them on free, so each one is page-faulted in and zeroed by the
//! kernel again: measured here, that was a quarter to a third of the
//! detector's time. [`retain_freed_memory`] makes glibc serve them from its
//! heap and keep freed memory for reuse instead, and keeps every thread on
//! that one heap: recognition batches run on worker threads, and with a heap
//! (arena) per thread they would not reuse what the detector freed on
//! another; measured on a typed page, peak RSS went from 515 MB to 920 MB.

/// The heap size above which glibc returns freed memory at the top of the
/// heap to the system.
pub const TRIM_THRESHOLD: usize = 1 << 30;

/// Makes the C allocator reuse freed memory for large blocks instead of
/// mapping fresh pages for each one. Call it once, early in `main`, before
/// other threads start; it changes process-wide allocator settings, so a
/// library never calls it on its own. It does nothing except on Linux with
/// glibc.
///
/// The cost is resident memory: freed blocks stay in the heap, up to
/// [`TRIM_THRESHOLD`] at its top, so the peak RSS of a process holds
/// whatever it once needed at the same time. Threads share one arena, so
/// small allocations from many threads at once contend for its lock; the
/// runtime's allocations are few and large.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; both are valid
    // for glibc and take effect for later allocations.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
    }
}

/// Values set per task (a megabyte) when a vector is filled in parallel; shorter vectors are
/// filled by the calling thread.
const PARALLEL_FILL: usize = 1 << 18;

/// A vector of `len` zeros, written by all threads for large lengths.
///
/// `vec![0.0; len]` zeroes a large block on the calling thread alone (glibc's `calloc`
/// cannot assume that reused heap memory is zero), and that thread also takes every page
/// fault of memory touched for the first time; the runtime's outputs are tens of
/// megabytes, so on a page-sized input this serialised work held up the other threads.
pub fn zeroed(len: usize) -> Vec<f32> {
    filled(len, 0.0)
}

/// A vector of `len` copies of `value`, written by all threads for large lengths.
pub fn filled(len: usize, value: f32) -> Vec<f32> {
    use rayon::prelude::*;
    if len < PARALLEL_FILL {
        return vec![value; len];
    }
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(PARALLEL_FILL)
        .for_each(|chunk| chunk.fill(std::mem::MaybeUninit::new(value)));
    // SAFETY: the loop above initialised all `len` values.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(len)
    };
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroed_and_filled_vectors_hold_their_value() {
        for len in [
            0,
            1,
            super::PARALLEL_FILL - 1,
            3 * super::PARALLEL_FILL + 17,
        ] {
            let z = super::zeroed(len);
            assert_eq!(z.len(), len);
            assert!(z.iter().all(|&v| v == 0.0));
            let f = super::filled(len, -1.5);
            assert!(f.len() == len && f.iter().all(|&v| v == -1.5));
        }
    }
}
