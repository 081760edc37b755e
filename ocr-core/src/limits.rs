//! Resource limits every decoder honours, so hostile input ends in a typed error, not a crash.

use std::time::Duration;

use crate::error::{Error, LimitKind, Result};

/// Limits on what one file may cost. Checked before the expensive step, never after.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest accepted file, in bytes.
    pub max_file_bytes: u64,
    /// Largest page image, in pixels (width × height), after decoding or rendering.
    pub max_page_pixels: u64,
    /// Largest page width or height in pixels.
    pub max_page_dimension: u32,
    /// Most pages in one file.
    pub max_pages: usize,
    /// Highest PDF render resolution.
    pub max_dpi: f32,
    /// Wall-clock budget for decoding or rendering one page.
    pub page_timeout: Duration,
    /// Most drawing operations (paths, glyphs, images) one PDF page may contain before we refuse
    /// to render it; keeps adversarial content streams bounded in time.
    pub max_page_operations: u64,
    /// Most bytes a decoder may allocate for one page.
    pub max_alloc_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 100 << 20,
            // An A3 page at 600 dpi is ~70 Mpx; 2400 dpi scans are downsampled by the caller.
            max_page_pixels: 80_000_000,
            max_page_dimension: 30_000,
            max_pages: 2_000,
            max_dpi: 600.0,
            page_timeout: Duration::from_secs(30),
            max_page_operations: 2_000_000,
            max_alloc_bytes: 768 << 20,
        }
    }
}

impl Limits {
    pub(crate) fn check(what: LimitKind, limit: u64, actual: u64) -> Result<()> {
        if actual > limit {
            Err(Error::LimitExceeded {
                what,
                limit,
                actual,
            })
        } else {
            Ok(())
        }
    }

    /// Checks a page size in pixels against the dimension and pixel limits.
    pub fn check_page_size(&self, width: u64, height: u64) -> Result<()> {
        Self::check(
            LimitKind::PageDimension,
            u64::from(self.max_page_dimension),
            width.max(height),
        )?;
        Self::check(
            LimitKind::PagePixels,
            self.max_page_pixels,
            width.saturating_mul(height),
        )
    }

    pub fn check_file_bytes(&self, len: usize) -> Result<()> {
        Self::check(LimitKind::FileBytes, self.max_file_bytes, len as u64)
    }

    pub fn check_pages(&self, count: usize) -> Result<()> {
        Self::check(LimitKind::Pages, self.max_pages as u64, count as u64)
    }
}
