//! Helpers on text and boxes that several formats share.

use ocr_core::BBox;

/// Whether `c` belongs to a right-to-left script (Hebrew, Arabic, Syriac, Thaana, N'Ko, ... and
/// their presentation forms).
fn is_rtl_char(c: char) -> bool {
    matches!(c as u32, 0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF)
}

/// Whether the first letter of `text` is right-to-left.
pub(crate) fn is_rtl(text: &str) -> bool {
    text.chars()
        .find(|c| c.is_alphabetic())
        .is_some_and(is_rtl_char)
}

/// A box in whole pixels, `[x0, y0, x1, y1]`, grown outwards to them, never negative and never
/// inverted.
pub(crate) fn pixel_box(b: &BBox) -> [i64; 4] {
    let (x0, y0) = (b.x0.floor().max(0.0), b.y0.floor().max(0.0));
    let (x1, y1) = (b.x1.ceil().max(x0), b.y1.ceil().max(y0));
    [x0, y0, x1, y1].map(|v| v as i64)
}
