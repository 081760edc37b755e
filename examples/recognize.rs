//! Recognise an image (or any supported file) with the shipped models and print every word
//! with its box and confidence.
//!
//! `cargo run --release -p ocr-examples --example recognize -- fixtures/images/letter.png`

use ocr_core::{DecodeOptions, Engine, InputFile, ModelSize, RecognizeOptions};

fn main() -> anyhow::Result<()> {
    // Large buffers reused rather than mapped afresh for every operator.
    ocr_core::nn::retain_freed_memory();
    // Subnormal floats flushed to zero on the worker threads (several times faster where a
    // network's activations fade out).
    let _ = ocr_core::nn::configure_thread_pool(None);
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fixtures/images/letter.png".into());
    let engine = Engine::load_default(ModelSize::Small)?;
    let file = InputFile::open(std::fs::read(&path)?, DecodeOptions::default())?;
    let document = engine.recognize(&file, &RecognizeOptions::default(), |_, _| {})?;
    for page in &document.pages {
        for word in page.lines().flat_map(|line| &line.words) {
            let b = word.bbox;
            println!(
                "{:>6.0} {:>6.0} {:>6.0} {:>6.0}  {:.3}  {}",
                b.x0, b.y0, b.x1, b.y1, word.confidence, word.text
            );
        }
    }
    Ok(())
}
