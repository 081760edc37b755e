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
