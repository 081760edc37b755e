//! A small instruction-tuned language model: Qwen2.5 as GGUF, run by [`crate::qwen2`] (candle's
//! `quantized_qwen2` on the [`crate::int8`] kernel where the CPU has it), with its tokenizer built
//! from the GGUF metadata. Decoding is greedy, so the same prompt always gives the same text.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use crate::ChatError;
use crate::int8::Int8Matrix;
use crate::qwen2::Qwen2;

fn is_slow(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q4_1)
}

/// The GGUF file again, in memory, with its slow tensors as Q8_0.
fn transcode<R: std::io::Read + std::io::Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
) -> candle_core::Result<Vec<u8>> {
    let device = Device::Cpu;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in &names {
        let t = content.tensor(reader, name, &device)?;
        let t = if is_slow(t.dtype()) {
            QTensor::quantize(&t.dequantize(&device)?, GgmlDType::Q8_0)?
        } else {
            t
        };
        tensors.push(t);
    }
    let mut keys: Vec<&String> = content.metadata.keys().collect();
    keys.sort();
    let metadata: Vec<(&str, &gguf_file::Value)> = keys
        .iter()
        .map(|k| (k.as_str(), &content.metadata[*k]))
        .collect();
    let named: Vec<(&str, &QTensor)> = names
        .iter()
        .map(|n| n.as_str())
        .zip(tensors.iter())
        .collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &named)?;
    Ok(out.into_inner())
}

/// One message of a chat prompt.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// A loaded model. Generation needs `&mut self` (the key-value cache); share it behind a mutex.
pub struct Llm {
    model: Qwen2,
    tokenizer: Tokenizer,
    stop: Vec<u32>,
    name: String,
    context: usize,
    device: Device,
    /// The last prompt's tokens and their keys and values: a prompt that starts the same way
    /// (the system message, a second look's excerpts, a translation's instructions) skips that
    /// part of the prefill.
    kept: Option<(Vec<u32>, KvCache)>,
}

/// Each layer's keys and values.
type KvCache = Vec<(Tensor, Tensor)>;

/// A shared start shorter than this is prefilled again: restoring it would save nothing.
const MIN_REUSE: usize = 16;

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What one generation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values came from the previous prompt rather than a prefill.
    pub reused_tokens: usize,
    pub generated_tokens: usize,
}

impl Llm {
    /// Loads a Qwen2 GGUF file. On a CPU with AVX-512 VNNI every weight matrix becomes an
    /// [`Int8Matrix`] (about 1.13 bytes per weight, twice a Q4_K file's size in memory). Elsewhere
    /// tensors in a quantisation candle has no SIMD kernel for (Q5_0, Q5_1, Q4_1: plain scalar
    /// loops, about four times slower) are converted to Q8_0 while loading. The file on disk is
    /// left as it is.
    pub fn load(path: &Path) -> Result<Self, ChatError> {
        let model_error =
            |e: candle_core::Error| ChatError::Model(format!("{}: {e}", path.display()));
        let file =
            File::open(path).map_err(|e| ChatError::Model(format!("{}: {e}", path.display())))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(model_error)?;
        // The int8 kernel converts every matrix anyway.
        let slow = !Int8Matrix::available()
            && content.tensor_infos.values().any(|t| is_slow(t.ggml_dtype));
        if slow {
            let bytes = transcode(&content, &mut reader).map_err(model_error)?;
            drop(content);
            let mut cursor = std::io::Cursor::new(bytes);
            let content = gguf_file::Content::read(&mut cursor).map_err(model_error)?;
            return Self::from_content(path, content, &mut cursor);
        }
        Self::from_content(path, content, &mut reader)
    }

    fn from_content<R: std::io::Read + std::io::Seek>(
        path: &Path,
        content: gguf_file::Content,
        reader: &mut R,
    ) -> Result<Self, ChatError> {
        let model_error =
            |e: candle_core::Error| ChatError::Model(format!("{}: {e}", path.display()));
        let name = content
            .metadata
            .get("general.name")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| "qwen2".into());
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "qwen2" {
            return Err(ChatError::Model(format!(
                "{}: architecture `{arch}`, expected qwen2",
                path.display()
            )));
        }
        let context = content
            .metadata
            .get("qwen2.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(4096, |c| c as usize);
        let tokenizer = Tokenizer::from_gguf(&content).map_err(model_error)?;
        let stop: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        if stop.is_empty() {
            return Err(ChatError::Model(format!(
                "{}: no end-of-turn token",
                path.display()
            )));
        }
        let device = Device::Cpu;
        let model = Qwen2::from_gguf(content, reader, &device).map_err(model_error)?;
        Ok(Self {
            model,
            tokenizer,
            stop,
            name,
            context,
            device,
            kept: None,
        })
    }

    /// The model's name from its metadata (`general.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tokens in a text.
    pub fn count_tokens(&self, text: &str) -> Result<usize, ChatError> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ChatError::Inference(format!("tokenizer: {e}")))?
            .len())
    }

    /// The ChatML prompt Qwen2.5 was tuned on, ending where the assistant speaks.
    pub fn chat_prompt(messages: &[Message<'_>]) -> String {
        let mut prompt = String::new();
        for m in messages {
            prompt.push_str("<|im_start|>");
            prompt.push_str(m.role);
            prompt.push('\n');
            prompt.push_str(m.content);
            prompt.push_str("<|im_end|>\n");
        }
        prompt.push_str("<|im_start|>assistant\n");
        prompt
    }

    fn encode(&self, prompt: &str) -> Result<Vec<u32>, ChatError> {
        let ids = self
            .tokenizer
            .encode(prompt, false)
            .map_err(|e| ChatError::Inference(format!("tokenizer: {e}")))?
            .get_ids()
            .to_vec();
        if ids.is_empty() {
            return Err(ChatError::Inference("an empty prompt".into()));
        }
        Ok(ids)
    }

    /// Runs the prompt through the model, continuing from the previous prompt's keys and values
    /// where the two start the same way: the logits of the token after it, and how many prompt
    /// tokens were reused.
    fn prefill(&mut self, ids: &[u32]) -> Result<(Tensor, usize), ChatError> {
        // At least the last token is run again: its logits start the answer.
        let reused = match &self.kept {
            Some((tokens, cache)) => {
                let shared = tokens.iter().zip(ids).take_while(|(a, b)| a == b).count();
                let shared = shared.min(ids.len() - 1);
                if shared >= MIN_REUSE {
                    self.model.restore_kv_cache(cache, shared)?;
                    shared
                } else {
                    0
                }
            }
            None => 0,
        };
        if reused == 0 {
            self.model.clear_kv_cache();
        }
        let input = Tensor::new(&ids[reused..], &self.device)?.unsqueeze(0)?;
        let logits = self.model.forward(&input, reused)?;
        self.kept = self.model.kv_cache().map(|cache| (ids.to_vec(), cache));
        Ok((logits, reused))
    }

    /// The logits of the token that would follow `prompt`, and how many of its tokens came from
    /// the previous prompt's keys and values (for tests and probes).
    pub fn next_logits(&mut self, prompt: &str) -> Result<(Vec<f32>, usize), ChatError> {
        let ids = self.encode(prompt)?;
        let (logits, reused) = self.prefill(&ids)?;
        self.model.clear_kv_cache();
        Ok((logits.flatten_all()?.to_vec1::<f32>()?, reused))
    }

    /// Greedy decoding of at most `max_tokens` after `prompt`. `on_text` receives the text as it
    /// grows, in pieces that never split a character.
    pub fn generate(
        &mut self,
        prompt: &str,
        max_tokens: usize,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, ChatError> {
        let ids = self.encode(prompt)?;
        if ids.len() + max_tokens > self.context {
            return Err(ChatError::Inference(format!(
                "prompt of {} tokens too long for a context of {}",
                ids.len(),
                self.context
            )));
        }
        let started = std::time::Instant::now();
        let (mut logits, reused) = self.prefill(&ids)?;
        let prefilled = started.elapsed();
        let mut generated: Vec<u32> = Vec::new();
        let mut shown = 0usize;
        let mut text = String::new();
        for step in 0..max_tokens {
            let next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
            if self.stop.contains(&next) {
                break;
            }
            generated.push(next);
            text = self
                .tokenizer
                .decode(&generated, true)
                .map_err(|e| ChatError::Inference(format!("tokenizer: {e}")))?;
            // A byte-level token can end inside a character: wait for the rest.
            if !text.ends_with('\u{FFFD}') && text.len() > shown && text.is_char_boundary(shown) {
                on_text(&text[shown..]);
                shown = text.len();
            }
            if step + 1 == max_tokens {
                break;
            }
            let input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
            logits = self
                .model
                .forward(&input, ids.len() + generated.len() - 1)?;
        }
        self.model.clear_kv_cache();
        tracing::debug!(
            prompt_tokens = ids.len(),
            reused,
            generated = generated.len(),
            prefill_s = prefilled.as_secs_f64(),
            decode_s = (started.elapsed() - prefilled).as_secs_f64(),
            "generation"
        );
        Ok(Generation {
            text,
            prompt_tokens: ids.len(),
            reused_tokens: reused,
            generated_tokens: generated.len(),
        })
    }
}
