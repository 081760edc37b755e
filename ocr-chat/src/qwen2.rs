//! Qwen2 from a GGUF file: candle-transformers' `quantized_qwen2` (MIT/Apache-2.0), with its
//! matrix products behind [`Linear`] so that CPUs with AVX-512 VNNI run them on the int8 kernel
//! ([`crate::int8`]) and others keep candle's quantized matmul. The layers, attention and rotary
//! embedding are candle's, unchanged.

use std::collections::HashMap;

use candle_core::quantized::{QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::Embedding;
use candle_transformers::quantized_nn::RmsNorm;

use crate::int8::Int8Matrix;

/// A weight matrix applied as `x · Wᵀ`.
#[derive(Debug)]
pub enum Linear {
    Int8(Int8Matrix),
    Candle(QMatMul),
}

/// `w` for the int8 kernel, where this CPU has it and `w` is a matrix whose rows come in blocks
/// of 32.
fn int8_matrix(w: &QTensor, device: &Device) -> Result<Option<Int8Matrix>> {
    let [n, k] = w.shape().dims()[..] else {
        return Ok(None);
    };
    if !Int8Matrix::available() || k % crate::int8::BLOCK != 0 {
        return Ok(None);
    }
    let values = w.dequantize(device)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(Some(Int8Matrix::from_f32(&values, n, k)))
}

impl Linear {
    /// The int8 kernel where this CPU has it and the inputs come in blocks of 32, else candle's.
    pub fn new(w: QTensor, device: &Device) -> Result<Self> {
        Ok(match int8_matrix(&w, device)? {
            Some(m) => Self::Int8(m),
            None => Self::Candle(QMatMul::from_qtensor(w)?),
        })
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(m) => m.forward(xs),
            Self::Int8(w) => {
                let dims = xs.dims().to_vec();
                let k = *dims.last().unwrap_or(&0);
                if k != w.cols() {
                    candle_core::bail!("input of {k} features for a {}×{} matrix", w.rows(), k);
                }
                let m = xs.elem_count() / k.max(1);
                let x = xs.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                let y = w.matmul(&x, m);
                let mut shape = dims;
                if let Some(last) = shape.last_mut() {
                    *last = w.rows();
                }
                Tensor::from_vec(y, shape, xs.device())
            }
        }
    }
}

#[derive(Debug)]
struct Mlp {
    gate: Linear,
    down: Linear,
    up: Linear,
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let gate = self.gate.forward(xs)?;
        let up = self.up.forward(xs)?;
        self.down.forward(&(candle_nn::ops::silu(&gate)? * up)?)
    }
}

#[derive(Debug)]
struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    bq: Tensor,
    bk: Tensor,
    bv: Tensor,
    wo: Linear,
    attention_norm: RmsNorm,
    mlp: Mlp,
    ffn_norm: RmsNorm,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    cos: Tensor,
    sin: Tensor,
    neg_inf: Tensor,
    kv_cache: Option<(Tensor, Tensor)>,
}

impl Layer {
    fn rotary(&self, x: &Tensor, index_pos: usize) -> Result<Tensor> {
        let (_b, _h, seq_len, _d) = x.dims4()?;
        let cos = self.cos.narrow(0, index_pos, seq_len)?;
        let sin = self.sin.narrow(0, index_pos, seq_len)?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }

    fn attention(&mut self, x: &Tensor, mask: Option<&Tensor>, index_pos: usize) -> Result<Tensor> {
        let (b, seq_len, n_embd) = x.dims3()?;
        let q = self.wq.forward(x)?.broadcast_add(&self.bq)?;
        let k = self.wk.forward(x)?.broadcast_add(&self.bk)?;
        let v = self.wv.forward(x)?.broadcast_add(&self.bv)?;
        let heads = |t: Tensor, n: usize| {
            t.reshape((b, seq_len, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(q, self.n_head)?;
        let k = heads(k, self.n_kv_head)?;
        let v = heads(v, self.n_kv_head)?;
        let q = self.rotary(&q, index_pos)?;
        let k = self.rotary(&k, index_pos)?;
        let (k, v) = match &self.kv_cache {
            Some((k_cache, v_cache)) if index_pos > 0 => (
                Tensor::cat(&[k_cache, &k], 2)?,
                Tensor::cat(&[v_cache, &v], 2)?,
            ),
            _ => (k, v),
        };
        self.kv_cache = Some((k.clone(), v.clone()));
        // Grouped-query attention without copying the keys and values for every head: the
        // query heads that share a key-value head are consecutive, so each group's queries are
        // stacked as rows of one product with that head's keys.
        let group = self.n_head / self.n_kv_head;
        let kv_len = k.dim(2)?;
        let q = q.reshape((b, self.n_kv_head, group * seq_len, self.head_dim))?;
        let att = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let att = att.reshape((b, self.n_head, seq_len, kv_len))?;
        let att = match mask {
            None => att,
            Some(mask) => {
                let mask = mask.broadcast_as(att.shape())?;
                mask.where_cond(&self.neg_inf.broadcast_as(att.shape().dims())?, &att)?
            }
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let att = att.reshape((b, self.n_kv_head, group * seq_len, kv_len))?;
        let y = att.matmul(&v)?;
        let y = y
            .reshape((b, self.n_head, seq_len, self.head_dim))?
            .transpose(1, 2)?
            .reshape(&[b, seq_len, n_embd])?;
        self.wo.forward(&y)
    }
}

/// Where token embeddings are looked up.
#[derive(Debug)]
enum Embeddings {
    Table(Embedding),
    Int8(Int8Matrix),
    /// In the output matrix (tied embeddings).
    Output,
}

/// The model's weights and key-value cache.
#[derive(Debug)]
pub struct Qwen2 {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    masks: HashMap<(usize, usize), Tensor>,
}

fn rope_tables(
    head_dim: usize,
    freq_base: f32,
    context: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let theta: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1f32 / freq_base.powf(i as f32 / head_dim as f32))
        .collect();
    let theta = Tensor::new(theta.as_slice(), device)?;
    let angles = Tensor::arange(0, context as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((context, 1))?
        .matmul(&theta.reshape((1, theta.elem_count()))?)?;
    Ok((angles.cos()?, angles.sin()?))
}

impl Qwen2 {
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(
        ct: gguf_file::Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let md = |s: &str| match ct.metadata.get(s) {
            None => candle_core::bail!("cannot find {s} in metadata"),
            Some(v) => Ok(v),
        };
        let head_count = md("qwen2.attention.head_count")?.to_u32()? as usize;
        let head_count_kv = md("qwen2.attention.head_count_kv")?.to_u32()? as usize;
        let embedding_length = md("qwen2.embedding_length")?.to_u32()? as usize;
        let context_length = md("qwen2.context_length")?.to_u32()? as usize;
        let block_count = md("qwen2.block_count")?.to_u32()? as usize;
        let eps = md("qwen2.attention.layer_norm_rms_epsilon")?.to_f32()? as f64;
        let rope_base = md("qwen2.rope.freq_base")
            .and_then(|m| m.to_f32())
            .unwrap_or(10000f32);
        let head_dim = embedding_length / head_count;
        let neg_inf = Tensor::new(f32::NEG_INFINITY, device)?;

        let norm = RmsNorm::from_qtensor(ct.tensor(reader, "output_norm.weight", device)?, eps)?;
        // Tied embeddings: the output matrix is the embedding table.
        let tied = !ct.tensor_infos.contains_key("output.weight");
        let output = Linear::new(
            ct.tensor(
                reader,
                if tied {
                    "token_embd.weight"
                } else {
                    "output.weight"
                },
                device,
            )?,
            device,
        )?;
        // With the int8 kernel the table is looked up in int8 too: as floats it would hold
        // 4 bytes per weight (930 MB for the 1.5B model's 151,936 × 1,536).
        let embeddings = if tied && matches!(output, Linear::Int8(_)) {
            Embeddings::Output
        } else {
            let table = ct.tensor(reader, "token_embd.weight", device)?;
            match int8_matrix(&table, device)? {
                Some(m) => Embeddings::Int8(m),
                None => {
                    Embeddings::Table(Embedding::new(table.dequantize(device)?, embedding_length))
                }
            }
        };
        let (cos, sin) = rope_tables(head_dim, rope_base, context_length, device)?;
        let mut layers = Vec::with_capacity(block_count);
        for i in 0..block_count {
            let mut tensor = |name: &str| ct.tensor(reader, &format!("blk.{i}.{name}"), device);
            let linear = |w: QTensor| Linear::new(w, device);
            layers.push(Layer {
                wq: linear(tensor("attn_q.weight")?)?,
                wk: linear(tensor("attn_k.weight")?)?,
                wv: linear(tensor("attn_v.weight")?)?,
                bq: tensor("attn_q.bias")?.dequantize(device)?,
                bk: tensor("attn_k.bias")?.dequantize(device)?,
                bv: tensor("attn_v.bias")?.dequantize(device)?,
                wo: linear(tensor("attn_output.weight")?)?,
                attention_norm: RmsNorm::from_qtensor(tensor("attn_norm.weight")?, eps)?,
                mlp: Mlp {
                    gate: linear(tensor("ffn_gate.weight")?)?,
                    down: linear(tensor("ffn_down.weight")?)?,
                    up: linear(tensor("ffn_up.weight")?)?,
                },
                ffn_norm: RmsNorm::from_qtensor(tensor("ffn_norm.weight")?, eps)?,
                n_head: head_count,
                n_kv_head: head_count_kv,
                head_dim,
                cos: cos.clone(),
                sin: sin.clone(),
                neg_inf: neg_inf.clone(),
                kv_cache: None,
            });
        }
        Ok(Self {
            embeddings,
            layers,
            norm,
            output,
            masks: HashMap::new(),
        })
    }

    /// The embeddings of `ids` (`b × seq_len`): `b × seq_len × hidden`.
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let table = match &self.embeddings {
            Embeddings::Table(e) => return e.forward(ids),
            Embeddings::Int8(m) => m,
            Embeddings::Output => match &self.output {
                Linear::Int8(m) => m,
                Linear::Candle(_) => candle_core::bail!("tied embeddings without an int8 output"),
            },
        };
        let (b, seq_len) = ids.dims2()?;
        let mut rows = Vec::with_capacity(b * seq_len * table.cols());
        for id in ids.flatten_all()?.to_vec1::<u32>()? {
            let id = id as usize;
            if id >= table.rows() {
                candle_core::bail!("token {id} outside a vocabulary of {}", table.rows());
            }
            table.row_into(id, &mut rows);
        }
        Tensor::from_vec(rows, (b, seq_len, table.cols()), ids.device())
    }

    fn mask(&mut self, seq_len: usize, index_pos: usize, device: &Device) -> Result<Tensor> {
        let key = (seq_len, index_pos + seq_len);
        if let Some(mask) = self.masks.get(&key) {
            return Ok(mask.clone());
        }
        let mask = candle_transformers::utils::build_causal_mask(seq_len, index_pos, device)?;
        self.masks.insert(key, mask.clone());
        Ok(mask)
    }

    /// The logits of the next token after `x` (`1 × seq_len` token ids) at `index_pos`.
    pub fn forward(&mut self, x: &Tensor, index_pos: usize) -> Result<Tensor> {
        let (_b, seq_len) = x.dims2()?;
        let mask = if seq_len == 1 {
            None
        } else {
            Some(self.mask(seq_len, index_pos, x.device())?)
        };
        let mut h = self.embed(x)?;
        for layer in &mut self.layers {
            let residual = &h;
            let a = layer.attention_norm.forward(&h)?;
            let a = (layer.attention(&a, mask.as_ref(), index_pos)? + residual)?;
            let f = layer.mlp.forward(&layer.ffn_norm.forward(&a)?)?;
            h = (f + a)?;
        }
        let h = self.norm.forward(&h)?;
        let last = h.i((.., seq_len - 1, ..))?;
        self.output.forward(&last)
    }

    pub fn clear_kv_cache(&mut self) {
        for layer in &mut self.layers {
            layer.kv_cache = None;
        }
    }

    /// Each layer's cached keys and values (shared, not copied), or `None` before any forward.
    pub fn kv_cache(&self) -> Option<Vec<(Tensor, Tensor)>> {
        self.layers.iter().map(|l| l.kv_cache.clone()).collect()
    }

    /// Continues from the first `len` positions of a cache taken with [`Self::kv_cache`]: the
    /// next forward runs at `index_pos = len`.
    pub fn restore_kv_cache(&mut self, cache: &[(Tensor, Tensor)], len: usize) -> Result<()> {
        if cache.len() != self.layers.len() {
            candle_core::bail!(
                "a cache of {} layers for {}",
                cache.len(),
                self.layers.len()
            );
        }
        for (layer, (k, v)) in self.layers.iter_mut().zip(cache) {
            layer.kv_cache = Some((k.narrow(2, 0, len)?, v.narrow(2, 0, len)?));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    #[test]
    fn int8_and_candle_linears_agree_on_a_q4k_matrix() -> Result<()> {
        let device = Device::Cpu;
        let (n, k) = (96, 512);
        let w: Vec<f32> = (0..n * k)
            .map(|i| (((i * 7919) % 1000) as f32 / 500.0 - 1.0) * 0.1)
            .collect();
        let w = Tensor::from_vec(w, (n, k), &device)?;
        let quantized = || QTensor::quantize(&w, GgmlDType::Q4K);
        let reference = Linear::Candle(QMatMul::from_qtensor(quantized()?)?);
        let linear = Linear::new(quantized()?, &device)?;
        if !Int8Matrix::available() {
            assert!(matches!(linear, Linear::Candle(_)));
            return Ok(());
        }
        assert!(matches!(linear, Linear::Int8(_)));
        // A prompt (3-d, several rows) and a decoding step (one row).
        for shape in [vec![1, 7, k], vec![1, k]] {
            let count: usize = shape.iter().product();
            let x: Vec<f32> = (0..count)
                .map(|i| ((i * 104729) % 997) as f32 / 498.0 - 1.0)
                .collect();
            let x = Tensor::from_vec(x, shape.as_slice(), &device)?;
            let got = linear.forward(&x)?;
            let want = reference.forward(&x)?;
            assert_eq!(got.dims(), want.dims());
            let got = got.flatten_all()?.to_vec1::<f32>()?;
            let want = want.flatten_all()?.to_vec1::<f32>()?;
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (g, e) in got.iter().zip(&want) {
                // Both quantize the activations (candle per 256, int8 per 32 inputs).
                assert!(
                    (g - e).abs() <= 0.02 * scale,
                    "{g} vs {e} (largest {scale})"
                );
            }
        }
        Ok(())
    }
}
