//! The workspace's criterion benchmarks, one binary, a module per area. Throughput is in pages.
//!
//! `cargo bench -p ocr-benches` (add `-- decode`, `-- exports`, `-- nn`, `-- page` or `-- pdf` to run
//! one area).

mod decode;
mod exports;
mod nn;
mod page;
mod pdf;

use std::path::PathBuf;

/// A file from the repository's `fixtures/` folder.
fn fixture(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

criterion::criterion_main!(
    decode::benches,
    exports::benches,
    nn::benches,
    page::benches,
    pdf::benches
);
