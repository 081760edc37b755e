//! Decodes a file through the `ocr-core` API and prints what each page holds.
//!
//! ```text
//! cargo run --release -p ocr-examples --example decode -- path/to/file.pdf
//! ```

use std::time::Instant;

use ocr_core::{DecodeOptions, InputFile, PageParts};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: decode FILE"))?;
    let file = InputFile::open(std::fs::read(&path)?, DecodeOptions::default())?;
    println!(
        "{path}: {} with {} page(s)",
        file.kind().name(),
        file.page_count()
    );

    // Pages are decoded one at a time: only the current page's pixels are in memory.
    // (`file.pages(parts)` is the same as an iterator.)
    for index in 0..file.page_count() {
        let started = Instant::now();
        match file.page(index, PageParts::ALL) {
            Ok(page) => {
                let lines = page.text_layer.as_ref().map_or(0, |t| t.lines.len());
                let first = page
                    .text_layer
                    .as_ref()
                    .and_then(|t| t.lines.first())
                    .map_or("", |l| l.text.as_str());
                println!(
                    "page {}: {}x{} px at {} dpi, rotation {}°, {lines} text-layer lines {first:?} ({:.0} ms)",
                    index + 1,
                    page.width,
                    page.height,
                    page.dpi,
                    page.rotation.degrees(),
                    started.elapsed().as_secs_f64() * 1e3,
                );
            }
            Err(e) => println!("page {}: error: {e}", index + 1),
        }
    }
    Ok(())
}
