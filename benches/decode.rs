//! Decoding single pages of image files: a letter-size scan-like page per format.

use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use ocr_core::{DecodeOptions, InputFile, PageParts};

/// A 1700×2200 page (letter at 200 dpi) of dark "text lines" on white, so compressors see
/// something like a document rather than noise or a flat colour.
fn page() -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(1700, 2200, |x, y| {
        let in_line = (y / 12) % 3 == 0 && x > 150 && x < 1550;
        let ink = in_line && (x / 7 + y / 12) % 5 != 0;
        if ink {
            Rgb([20, 20, 20])
        } else {
            Rgb([250, 250, 250])
        }
    }))
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fn decode_files(c: &mut Criterion) {
    let page = page();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    let files = [
        ("png_1700x2200", encode(&page, ImageFormat::Png)),
        ("jpeg_1700x2200", encode(&page, ImageFormat::Jpeg)),
        ("tiff_1700x2200", encode(&page, ImageFormat::Tiff)),
        ("tiff_g4_203x97", crate::fixture("images/pattern_g4.tif")),
    ];
    for (name, bytes) in files {
        group.bench_function(name, |b| {
            b.iter(|| {
                let file = InputFile::open(bytes.clone(), DecodeOptions::default()).expect("open");
                file.page(0, PageParts::IMAGE).expect("page")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_files);
