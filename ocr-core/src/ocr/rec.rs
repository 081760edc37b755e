//! Text recognition: line crops batched by width through the CTC network,
//! then greedy CTC decoding with the time step of every character, which
//! gives words their boxes.

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::geometry::resize_normalize;
use crate::nn::{Graph, GraphError};

/// The recogniser's input height.
pub const HEIGHT: usize = 48;
/// The narrowest batch width: 320 px at height 48.
pub const MIN_WIDTH: usize = 320;
/// The widest line the network is fed in one piece.
pub const MAX_WIDTH: usize = 3200;

/// One recognised character with the span of time steps it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct CharHit {
    pub ch: String,
    pub prob: f32,
    /// First and last time step (inclusive) where this character is the argmax.
    pub steps: (usize, usize),
}

/// The decoding of one line crop.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecResult {
    pub chars: Vec<CharHit>,
    /// Number of time steps the network produced for the batch.
    pub steps: usize,
    /// Pixel width each time step covers in the network input.
    pub step_px: f32,
    /// Width of the crop inside the (padded) network input.
    pub content_px: f32,
}

impl RecResult {
    pub fn text(&self) -> String {
        self.chars.iter().map(|c| c.ch.as_str()).collect()
    }

    /// Mean probability of the kept characters (0 for an empty line).
    pub fn confidence(&self) -> f32 {
        if self.chars.is_empty() {
            return 0.0;
        }
        self.chars.iter().map(|c| c.prob).sum::<f32>() / self.chars.len() as f32
    }
}

/// Recognises line images (already upright), in batches of lines of similar
/// width. Results come back in input order.
pub fn recognize(
    model: &Graph,
    alphabet: &[String],
    crops: &[RgbImage],
    batch: usize,
) -> Result<Vec<RecResult>, GraphError> {
    let mut order: Vec<usize> = (0..crops.len()).collect();
    let ratio = |i: usize| crops[i].width() as f32 / crops[i].height().max(1) as f32;
    order.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)));
    let mut results = vec![RecResult::default(); crops.len()];
    for chunk in order.chunks(batch.max(1)) {
        let max_ratio = chunk
            .iter()
            .map(|&i| ratio(i))
            .fold(MIN_WIDTH as f32 / HEIGHT as f32, f32::max);
        let width = ((HEIGHT as f32 * max_ratio) as usize).clamp(MIN_WIDTH, MAX_WIDTH);
        let mut input = vec![0f32; chunk.len() * 3 * HEIGHT * width];
        let mut content = Vec::with_capacity(chunk.len());
        for (k, &i) in chunk.iter().enumerate() {
            let crop = &crops[i];
            let w = ((HEIGHT as f32 * ratio(i)).ceil() as usize).clamp(1, width);
            let dst = &mut input[k * 3 * HEIGHT * width..][..3 * HEIGHT * width];
            resize_normalize(crop, w, HEIGHT, [0.5; 3], [0.5; 3], true, dst, width);
            content.push(w);
        }
        let x = Tensor::from_vec(input, (chunk.len(), 3, HEIGHT, width), &Device::Cpu)?;
        let started = std::time::Instant::now();
        let y = model.run(x)?;
        if super::trace::enabled() {
            eprintln!(
                "[trace] rec batch {}x{width}: {:.1} ms",
                chunk.len(),
                started.elapsed().as_secs_f64() * 1000.0
            );
        }
        let (n, steps, classes) = y.dims3()?;
        let probs: Vec<f32> = y.flatten_all()?.to_vec1()?;
        let step_px = width as f32 / steps.max(1) as f32;
        for k in 0..n {
            let rows = &probs[k * steps * classes..][..steps * classes];
            let mut res = ctc_decode(rows, steps, classes, alphabet);
            res.step_px = step_px;
            res.content_px = content[k] as f32;
            results[chunk[k]] = res;
        }
    }
    Ok(results)
}

/// Greedy CTC: the argmax per step, repeats merged, blanks (class 0)
/// dropped. `alphabet[i]` is the text of class `i + 1`.
pub fn ctc_decode(probs: &[f32], steps: usize, classes: usize, alphabet: &[String]) -> RecResult {
    let mut chars: Vec<CharHit> = Vec::new();
    let mut prev = 0usize;
    for t in 0..steps {
        let row = &probs[t * classes..][..classes];
        let (idx, p) =
            row.iter().enumerate().fold(
                (0usize, f32::MIN),
                |best, (i, &v)| if v > best.1 { (i, v) } else { best },
            );
        if idx != 0 {
            if idx == prev {
                if let Some(last) = chars.last_mut() {
                    last.steps.1 = t;
                    // Keep the first step's probability, as PaddleOCR does.
                }
            } else if let Some(text) = alphabet.get(idx - 1) {
                chars.push(CharHit {
                    ch: text.clone(),
                    prob: p,
                    steps: (t, t),
                });
            }
        }
        prev = idx;
    }
    RecResult {
        chars,
        steps,
        step_px: 0.0,
        content_px: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let alphabet: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        // steps: a a blank a b b
        let seq = [1usize, 1, 0, 1, 2, 2];
        let mut probs = vec![0f32; seq.len() * 3];
        for (t, &c) in seq.iter().enumerate() {
            probs[t * 3 + c] = 0.9;
        }
        let r = ctc_decode(&probs, seq.len(), 3, &alphabet);
        assert_eq!(r.text(), "aab");
        assert_eq!(r.chars[0].steps, (0, 1));
        assert_eq!(r.chars[2].steps, (4, 5));
        assert!((r.confidence() - 0.9).abs() < 1e-6);
    }
}
