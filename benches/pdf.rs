//! PDF pages: the text layer alone, and rendering, on the 20-page text report fixture.

use criterion::{Criterion, Throughput, criterion_group};
use ocr_core::{DecodeOptions, InputFile, PageParts};

fn pdf_pages(c: &mut Criterion) {
    let bytes = crate::fixture("pdf/report_20p.pdf");
    let mut group = c.benchmark_group("pdf");
    group.sample_size(10);
    let file = InputFile::open(bytes.clone(), DecodeOptions::default()).expect("open");
    let pages = file.page_count() as u64;
    group.throughput(Throughput::Elements(pages));
    group.bench_function("open_count_pages", |b| {
        b.iter(|| {
            InputFile::open(bytes.clone(), DecodeOptions::default())
                .expect("open")
                .page_count()
        })
    });
    for (name, parts) in [
        ("text_layer_20p", PageParts::TEXT_LAYER),
        ("render_200dpi_20p", PageParts::IMAGE),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                file.pages(parts)
                    .map(|p| p.expect("page").width)
                    .sum::<u32>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pdf_pages);
