//! A whole page end to end: `fixtures/images/page_300dpi.png` (2550×3300,
//! 41 lines of 11 pt text, the size of the corpus's printed scans) decoded
//! and recognised by the `cpu` tier, small and tiny models: orientation,
//! detection, crops, line orientation, recognition, layout.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ocr_core::{DecodeOptions, Engine, InputFile, ModelSize, RecognizeOptions};

fn page(c: &mut Criterion) {
    ocr_core::nn::retain_freed_memory();
    let _ = ocr_core::nn::configure_thread_pool(None);
    let bytes = crate::fixture("images/page_300dpi.png");
    let mut group = c.benchmark_group("page");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    for (name, size) in [("small", ModelSize::Small), ("tiny", ModelSize::Tiny)] {
        let engine = Engine::load_default(size).expect("models");
        group.bench_function(BenchmarkId::new("recognize_2550x3300", name), |b| {
            b.iter(|| {
                let file =
                    InputFile::open(bytes.clone(), DecodeOptions::default()).expect("decode");
                let doc = engine
                    .recognize(&file, &RecognizeOptions::default(), |_, _| {})
                    .expect("recognize");
                assert!(doc.pages[0].text().contains("Harbour"));
                doc
            })
        });
    }
    group.finish();
}

criterion_group!(benches, page);
