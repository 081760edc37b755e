//! Single-image formats (PNG, JPEG, WEBP, GIF, BMP) through the `image` crate, and the
//! conversion every raster page goes through: EXIF orientation, alpha onto white, 8-bit RGB.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use super::{DecodeOptions, FileKind, PageImage};
use crate::error::{Error, Result};
use crate::limits::Limits;

/// Decodes a single-image file into a page image.
pub(super) fn decode(bytes: &[u8], kind: FileKind, options: &DecodeOptions) -> Result<PageImage> {
    let format = match kind {
        FileKind::Png => ImageFormat::Png,
        FileKind::Jpeg => ImageFormat::Jpeg,
        FileKind::Webp => ImageFormat::WebP,
        FileKind::Gif => ImageFormat::Gif,
        FileKind::Bmp => ImageFormat::Bmp,
        FileKind::Tiff => ImageFormat::Tiff,
        FileKind::Pdf => return Err(Error::Internal("decoding a pdf as an image".into())),
    };
    // Our own size check comes first so that an oversized image is reported with its actual
    // size; the decoder's allocation limit then guards against headers that lie.
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|e| image_error(kind, e))?;
    let (width, height) = decoder.dimensions();
    options
        .limits
        .check_page_size(u64::from(width), u64::from(height))?;
    decoder
        .set_limits(image_limits(&options.limits))
        .map_err(|e| image_error(kind, e))?;
    // A missing or unreadable EXIF orientation is not an error: the image is upright as stored.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| image_error(kind, e))?;
    image.apply_orientation(orientation);
    let dpi = match kind {
        FileKind::Png => png_dpi(bytes),
        FileKind::Jpeg => jpeg_dpi(bytes),
        _ => None,
    }
    .unwrap_or(options.dpi);
    Ok(PageImage {
        pixels: to_rgb_on_white(image),
        dpi,
    })
}

/// The `image` crate's limits matching ours: dimension checks happen before decoding, the
/// allocation cap stops decompression bombs that lie about their size.
pub(super) fn image_limits(limits: &Limits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_page_dimension);
    l.max_image_height = Some(limits.max_page_dimension);
    l.max_alloc = Some(limits.max_alloc_bytes);
    l
}

pub(super) fn image_error(kind: FileKind, e: image::ImageError) -> Error {
    match e {
        image::ImageError::Limits(l) => Error::Corrupt {
            kind: kind.name(),
            reason: format!("over the decoder's memory or size limit ({l})"),
        },
        image::ImageError::Unsupported(u) => {
            Error::UnsupportedType(format!("{} variant: {u}", kind.name()))
        }
        other => Error::Corrupt {
            kind: kind.name(),
            reason: other.to_string(),
        },
    }
}

/// Converts any pixel format (grayscale, 16-bit, CMYK already turned RGB by the decoder,
/// alpha) to 8-bit RGB. Transparent pixels are composited onto white, as a viewer shows them:
/// plain dropping of the alpha channel turns transparent backgrounds black.
pub(super) fn to_rgb_on_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            // Rounded `src * a + 255 * (1 - a)` in 0..=255 fixed point.
            dst[c] = ((u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

/// Dots per inch from a PNG's `pHYs` chunk, when it is given in metres.
fn png_dpi(bytes: &[u8]) -> Option<f32> {
    let mut pos = 8;
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().ok()?) as usize;
        let ty = &bytes[pos + 4..pos + 8];
        let data = bytes.get(pos + 8..pos + 8 + len)?;
        if ty == b"pHYs" && len == 9 && data[8] == 1 {
            let ppm = u32::from_be_bytes(data[0..4].try_into().ok()?);
            return plausible_dpi(ppm as f32 * 0.0254);
        }
        if ty == b"IDAT" || ty == b"IEND" {
            return None;
        }
        pos += 12 + len;
    }
    None
}

/// Dots per inch from a JPEG's JFIF header, when its unit is inches or centimetres.
fn jpeg_dpi(bytes: &[u8]) -> Option<f32> {
    let app0 = bytes.get(2..20)?;
    if app0[0] != 0xff || app0[1] != 0xe0 || &app0[4..9] != b"JFIF\0" {
        return None;
    }
    let x = f32::from(u16::from_be_bytes([app0[12], app0[13]]));
    match app0[11] {
        1 => plausible_dpi(x),
        2 => plausible_dpi(x * 2.54),
        _ => None,
    }
}

/// Files often carry a placeholder resolution (1, 72, 96 dpi from screen tools); only values a
/// scanner or camera could mean are kept.
pub(super) fn plausible_dpi(dpi: f32) -> Option<f32> {
    (100.0..=4800.0).contains(&dpi).then_some(dpi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgba, RgbaImage};

    #[test]
    fn transparent_pixels_become_white_not_black() {
        let mut img = RgbaImage::new(2, 1);
        img.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
        img.put_pixel(1, 0, Rgba([0, 0, 0, 255]));
        let rgb = to_rgb_on_white(DynamicImage::ImageRgba8(img));
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [0, 0, 0]);
    }

    #[test]
    fn png_resolution_is_read_from_phys() {
        let mut bytes = Vec::new();
        image::codecs::png::PngEncoder::new(&mut bytes)
            .write_image(&[0u8; 3], 1, 1, image::ExtendedColorType::Rgb8)
            .expect("encode");
        // Insert a pHYs chunk for 300 dpi (11811 px/m) after IHDR (8 + 25 bytes).
        let mut chunk = Vec::new();
        chunk.extend_from_slice(&9u32.to_be_bytes());
        let mut body = b"pHYs".to_vec();
        body.extend_from_slice(&11811u32.to_be_bytes());
        body.extend_from_slice(&11811u32.to_be_bytes());
        body.push(1);
        let crc = crc32(&body);
        chunk.extend_from_slice(&body);
        chunk.extend_from_slice(&crc.to_be_bytes());
        bytes.splice(33..33, chunk);
        let dpi = png_dpi(&bytes).expect("dpi");
        assert!((dpi - 300.0).abs() < 0.1, "{dpi}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
