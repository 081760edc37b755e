//! Every exporter on a 100-page document: the 2550×3300 page of `page.rs` (41 lines of
//! text, recognised once by the `cpu` tier) repeated 100 times, written to memory. The
//! searchable PDF gets each page's image already compressed (as the CLI and server hold
//! them); compressing one page image is timed on its own.

use std::collections::HashMap;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ocr_core::{DecodeOptions, Document, Engine, InputFile, ModelSize, RecognizeOptions};
use ocr_formats::{ExportOptions, Format, PageImage, export};

const PAGES: usize = 100;

fn exports(c: &mut Criterion) {
    ocr_core::nn::retain_freed_memory();
    let _ = ocr_core::nn::configure_thread_pool(None);
    let engine = Engine::load_default(ModelSize::Small).expect("models");
    let file = InputFile::open(
        crate::fixture("images/page_300dpi.png"),
        DecodeOptions::default(),
    )
    .expect("decode");
    let mut image = None;
    let one = engine
        .recognize_with_images(&file, &RecognizeOptions::default(), |_, _, _, i| image = i)
        .expect("recognize");
    let pixels = image.expect("the page image");
    let mut group = c.benchmark_group("exports");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    group.bench_function("pdf_page_image_encode", |b| {
        b.iter(|| PageImage::encode(&pixels).expect("encode"))
    });
    let encoded = PageImage::encode(&pixels).expect("encode");
    let mut doc = Document::default();
    let mut images = HashMap::new();
    for index in 0..PAGES {
        let mut page = one.pages[0].clone();
        page.index = index;
        doc.pages.push(page);
        images.insert(index, encoded.clone());
    }
    let options = ExportOptions {
        pretty: false,
        images: Some(&images),
        job: None,
        tables_only: false,
    };
    group.throughput(Throughput::Elements(PAGES as u64));
    for format in Format::ALL {
        group.bench_function(BenchmarkId::new("100_pages", format.extension()), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                export(&doc, format, &options, &mut out).expect("export");
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, exports);
