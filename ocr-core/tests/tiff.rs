//! TIFF: multi-page files and the CCITT fax compressions, checked pixel for pixel.

use ocr_core::{DecodeOptions, Error, InputFile, PageParts};

use crate::support::fixture;

fn pages(bytes: Vec<u8>) -> Vec<image::RgbImage> {
    let file = InputFile::open(bytes, DecodeOptions::default()).expect("open");
    file.pages(PageParts::IMAGE)
        .map(|p| p.expect("page").image.expect("image").pixels)
        .collect()
}

/// The pattern as a plain PNG, the reference every compressed variant must equal.
fn reference() -> image::RgbImage {
    let image = pages(fixture("images/pattern.png")).remove(0);
    let black = image.pixels().filter(|p| p.0 == [0, 0, 0]).count();
    // Frame, box and strokes: a blank decode could not pass for the pattern.
    assert!(black > 3000, "{black} black pixels in the reference");
    image
}

#[test]
fn ccitt_variants_decode_exactly() {
    let expected = reference();
    for name in [
        "pattern_g4.tif",
        "pattern_g4_lsb.tif",
        "pattern_g4_strips.tif",
        "pattern_g3_1d.tif",
        "pattern_g3_2d.tif",
        "pattern_g3_2d_fill.tif",
    ] {
        let got = pages(fixture(&format!("images/{name}"))).remove(0);
        assert_eq!(got.dimensions(), expected.dimensions(), "{name}");
        let differing = got
            .pixels()
            .zip(expected.pixels())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differing, 0, "{name}: {differing} pixels differ");
    }
}

#[test]
fn every_page_of_a_multipage_tiff_is_read() {
    // RGB LZW, CCITT G4, 8-bit gray deflate, RGBA uncompressed.
    let pages = pages(fixture("images/multipage.tif"));
    let sizes: Vec<(u32, u32)> = pages.iter().map(|p| p.dimensions()).collect();
    assert_eq!(sizes, [(40, 30), (203, 97), (50, 20), (30, 30)]);
    assert_eq!(pages[0].get_pixel(5, 5).0, [255, 0, 0]);
    assert_eq!(pages[1], reference());
    assert_eq!(pages[2].get_pixel(5, 5).0, [128, 128, 128]);
    // Left half opaque blue, right half transparent (white once flattened).
    assert_eq!(pages[3].get_pixel(2, 2).0, [0, 0, 255]);
    assert_eq!(pages[3].get_pixel(25, 2).0, [255, 255, 255]);
}

#[test]
fn a_truncated_multipage_tiff_keeps_its_good_pages() {
    let bytes = fixture("images/multipage.tif");
    for cut in [9, 100, bytes.len() / 2, bytes.len() - 10] {
        let truncated = bytes[..cut].to_vec();
        match InputFile::open(truncated, DecodeOptions::default()) {
            Ok(file) => {
                for page in file.pages(PageParts::IMAGE) {
                    if let Err(e) = page {
                        assert!(!matches!(e, Error::Internal(_)), "cut {cut}: {e}");
                    }
                }
            }
            Err(e) => assert!(matches!(e, Error::Corrupt { .. }), "cut {cut}: {e}"),
        }
    }
}
