//! Single-image formats: every type we accept decodes to upright 8-bit RGB on white.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use ocr_core::{DecodeOptions, FileKind, InputFile, PageImage, PageParts};

use crate::support::fixture;

fn decode(bytes: Vec<u8>) -> PageImage {
    let file = InputFile::open(bytes, DecodeOptions::default()).expect("open");
    assert_eq!(file.page_count(), 1);
    let page = file.page(0, PageParts::ALL).expect("decode");
    assert!(page.text_layer.is_none());
    page.image.expect("image")
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// Left half black, right half white.
fn half_black(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    })
}

fn is_dark(p: &Rgb<u8>) -> bool {
    p.0.iter().map(|&c| u32::from(c)).sum::<u32>() < 3 * 64
}

#[test]
fn every_format_round_trips_its_pixels() {
    let source = DynamicImage::ImageRgb8(half_black(16, 8));
    for (format, kind) in [
        (ImageFormat::Png, FileKind::Png),
        (ImageFormat::Jpeg, FileKind::Jpeg),
        (ImageFormat::WebP, FileKind::Webp),
        (ImageFormat::Gif, FileKind::Gif),
        (ImageFormat::Bmp, FileKind::Bmp),
        (ImageFormat::Tiff, FileKind::Tiff),
    ] {
        let bytes = encode(&source, format);
        assert_eq!(ocr_core::sniff(&bytes), Some(kind), "{format:?}");
        let image = decode(bytes).pixels;
        assert_eq!(image.dimensions(), (16, 8), "{format:?}");
        assert!(is_dark(image.get_pixel(2, 4)), "{format:?}");
        assert!(!is_dark(image.get_pixel(13, 4)), "{format:?}");
    }
}

#[test]
fn sixteen_bit_grayscale_is_scaled_to_eight_bits() {
    let gray = image::ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(4, 4, |x, _| {
        Luma([if x < 2 { 0 } else { 65535 }])
    });
    let image = decode(encode(&DynamicImage::ImageLuma16(gray), ImageFormat::Png)).pixels;
    assert_eq!(image.get_pixel(0, 0).0, [0, 0, 0]);
    assert_eq!(image.get_pixel(3, 0).0, [255, 255, 255]);
}

#[test]
fn transparency_is_flattened_onto_white() {
    let mut rgba = RgbaImage::from_pixel(4, 4, Rgba([0, 0, 0, 0]));
    rgba.put_pixel(0, 0, Rgba([0, 0, 0, 255]));
    let image = decode(encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png)).pixels;
    assert_eq!(image.get_pixel(0, 0).0, [0, 0, 0]);
    assert_eq!(image.get_pixel(3, 3).0, [255, 255, 255]);
}

/// A JPEG with an EXIF APP1 segment that says "rotate 90° clockwise to display" (orientation 6).
fn jpeg_with_orientation(image: &RgbImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode(&DynamicImage::ImageRgb8(image.clone()), ImageFormat::Jpeg);
    let mut tiff = b"MM\0*\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // padding + no next IFD
    let mut app1 = vec![0xff, 0xe1];
    let len = (2 + 6 + tiff.len()) as u16;
    app1.extend_from_slice(&len.to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    // 32x16, left half black. Rotated 90° clockwise it is 16x32 with the top half black.
    let bytes = jpeg_with_orientation(&half_black(32, 16), 6);
    let image = decode(bytes).pixels;
    assert_eq!(image.dimensions(), (16, 32));
    assert!(is_dark(image.get_pixel(8, 4)));
    assert!(!is_dark(image.get_pixel(8, 28)));
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    // fixtures/images/cmyk.jpg: left half full black ink, right half no ink.
    let image = decode(fixture("images/cmyk.jpg")).pixels;
    assert_eq!(image.dimensions(), (64, 32));
    assert!(
        is_dark(image.get_pixel(8, 16)),
        "{:?}",
        image.get_pixel(8, 16)
    );
    assert!(
        !is_dark(image.get_pixel(56, 16)),
        "{:?}",
        image.get_pixel(56, 16)
    );
}

#[test]
fn animated_gif_gives_its_first_frame() {
    use image::codecs::gif::GifEncoder;
    use image::{Delay, Frame};
    let red = RgbaImage::from_pixel(4, 4, Rgba([255, 0, 0, 255]));
    let blue = RgbaImage::from_pixel(4, 4, Rgba([0, 0, 255, 255]));
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut bytes);
        for frame in [red, blue] {
            encoder
                .encode_frame(Frame::from_parts(
                    frame,
                    0,
                    0,
                    Delay::from_numer_denom_ms(100, 1),
                ))
                .expect("frame");
        }
    }
    let image = decode(bytes).pixels;
    let p = image.get_pixel(1, 1).0;
    assert!(p[0] > 200 && p[2] < 50, "{p:?}");
}

#[test]
fn resolution_comes_from_the_file_or_the_default() {
    let options = DecodeOptions::default();
    let png = encode(&DynamicImage::ImageRgb8(half_black(4, 4)), ImageFormat::Png);
    let page = InputFile::open(png, options.clone())
        .and_then(|f| f.page(0, PageParts::IMAGE))
        .expect("decode");
    assert_eq!(page.dpi, options.dpi);
}
