//! Times one generation: `cargo run --release -p ocr-chat --example llm_probe -- MODEL.gguf [PROMPT_WORDS]`
use std::time::Instant;

use ocr_chat::Llm;
use ocr_chat::llm::Message;

fn main() -> anyhow::Result<()> {
    ocr_core::nn::retain_freed_memory();
    let path = std::env::args().nth(1).expect("gguf path");
    let words: usize = std::env::args()
        .nth(2)
        .map_or(200, |w| w.parse().unwrap_or(200));
    let t = Instant::now();
    let mut llm = Llm::load(std::path::Path::new(&path))?;
    eprintln!("load {:.2}s {}", t.elapsed().as_secs_f64(), llm.name());
    let filler = "The committee met on Tuesday and discussed the budget for the next year. "
        .repeat(words / 13 + 1);
    let user = format!(
        "Excerpts:\n[1] (page 1)\n{filler}\nThe invoice total is 215.00 USD, due on March 3.\n\nQuestion: What is the invoice total, when is it due, and what did the committee discuss?\n\nAnswer in one sentence and cite the excerpt like [1]. If not there reply NOT FOUND"
    );
    let prompt = Llm::chat_prompt(&[
        Message {
            role: "system",
            content: "You answer questions about a document.",
        },
        Message {
            role: "user",
            content: &user,
        },
    ]);
    let t = Instant::now();
    let mut first: Option<f64> = None;
    let g = llm.generate(&prompt, 40, &mut |_| {
        if first.is_none() {
            first = Some(t.elapsed().as_secs_f64());
        }
    })?;
    let total = t.elapsed().as_secs_f64();
    eprintln!(
        "prompt {} tokens, generated {}, first text at {:.2}s, total {:.2}s",
        g.prompt_tokens,
        g.generated_tokens,
        first.unwrap_or(0.0),
        total
    );
    println!("{}", g.text);
    Ok(())
}
