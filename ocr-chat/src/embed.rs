//! Sentence embeddings: all-MiniLM-L6-v2 through candle's `bert`, mean-pooled over the real
//! tokens and scaled to unit length, as sentence-transformers does.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::ChatError;

/// Texts longer than this many tokens are cut (the model was trained on 256 at most).
const MAX_TOKENS: usize = 256;
const BATCH: usize = 16;

/// A loaded MiniLM.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads `model.safetensors` (memory-mapped), `config.json` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, ChatError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| ChatError::Model(format!("{}: {e}", dir.join(name).display())))
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| ChatError::Model(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| ChatError::Model(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| ChatError::Model(format!("tokenizer: {e}")))?;
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        let vb = mmap_safetensors(&weights, &device)?;
        let model = BertModel::load(vb, &config)
            .map_err(|e| ChatError::Model(format!("{}: {e}", weights.display())))?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// One unit-length 384-d vector per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ChatError> {
        let mut out = Vec::with_capacity(texts.len());
        // Similar lengths batched together waste less on padding.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for batch in order.chunks(BATCH) {
            let inputs: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
            for (&i, v) in batch.iter().zip(self.embed_batch(&inputs)?) {
                vectors[i] = Some(v);
            }
        }
        for v in vectors {
            out.push(v.ok_or_else(|| ChatError::Inference("missing embedding".into()))?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ChatError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ChatError::Inference(format!("tokenizer: {e}")))?;
        let ids: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &self.device))
            .collect::<Result<_, _>>()?;
        let mask: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
            .collect::<Result<_, _>>()?;
        let ids = Tensor::stack(&ids, 0)?;
        let mask = Tensor::stack(&mask, 0)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens only.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        let unit = mean.broadcast_div(&norms)?;
        Ok(unit.to_vec2::<f32>()?)
    }
}

/// Maps the weights instead of reading them: 91 MB stay in the page cache, shared between
/// processes.
#[allow(unsafe_code)]
fn mmap_safetensors(path: &Path, device: &Device) -> Result<VarBuilder<'static>, ChatError> {
    // SAFETY: the file lives in the model store, is written once to a temporary name and renamed
    // into place (models.rs), and is never modified in place afterwards, so the mapping does not
    // change under the model while it is in use.
    unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
        .map_err(|e| ChatError::Model(format!("{}: {e}", path.display())))
}
