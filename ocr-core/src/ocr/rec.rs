//! Text recognition: line crops batched by width through the CTC network,
//! then greedy CTC decoding with the time step of every character, which
//! gives words their boxes.

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::geometry::resize_normalize;
use crate::nn::graph::with_slice;
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
///
/// Batches run concurrently, one per worker thread, each with the whole
/// network: a batch's operators then rarely wait for one another, where a
/// single batch split across threads synchronises at every operator (on two
/// cores the network runs at about 90% parallel efficiency). An idle thread
/// still helps with another batch's operators.
///
/// With `logits`, the model's output is the values before its softmax (see
/// [`Graph::from_onnx_without_final_softmax`]). Each crop is scaled to the
/// network's height and its width by the same factor times `stretch` (1 for
/// none); character positions come back in the crop's own coordinates.
pub fn recognize(
    model: &Graph,
    logits: bool,
    alphabet: &[String],
    crops: &[RgbImage],
    batch: usize,
    stretch: f32,
) -> Result<Vec<RecResult>, GraphError> {
    use rayon::prelude::*;
    let mut order: Vec<usize> = (0..crops.len()).collect();
    let ratio = |i: usize| aspect(&crops[i]);
    order.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)));
    // Widest batches first, so that the last ones to finish are the cheap ones.
    let chunks: Vec<&[usize]> = order.chunks(batch.max(1)).rev().collect();
    let decoded = chunks
        .par_iter()
        .with_max_len(1)
        .map(|chunk| recognize_batch(model, logits, alphabet, crops, chunk, stretch))
        .collect::<Result<Vec<_>, _>>()?;
    let mut results = vec![RecResult::default(); crops.len()];
    for (chunk, batch_results) in chunks.into_iter().zip(decoded) {
        for (&i, res) in chunk.iter().zip(batch_results) {
            results[i] = res;
        }
    }
    Ok(results)
}

/// Width over height of a crop.
fn aspect(crop: &RgbImage) -> f32 {
    crop.width() as f32 / crop.height().max(1) as f32
}

/// Runs one batch of crops through the network, padded to the widest, and
/// decodes each line.
fn recognize_batch(
    model: &Graph,
    logits: bool,
    alphabet: &[String],
    crops: &[RgbImage],
    chunk: &[usize],
    stretch: f32,
) -> Result<Vec<RecResult>, GraphError> {
    let ratio = |i: usize| aspect(&crops[i]) * stretch;
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
    let step_px = width as f32 / steps.max(1) as f32;
    // Read in place: the output is the largest tensor of the batch (steps × ~18k classes).
    with_slice(&y, |scores| {
        (0..n)
            .map(|k| {
                let rows = &scores[k * steps * classes..][..steps * classes];
                let mut res = ctc_decode(rows, steps, classes, alphabet, logits);
                res.step_px = step_px;
                res.content_px = content[k] as f32;
                space_wide_gaps(&mut res, &crops[chunk[k]]);
                read_digits_in_numbers(&mut res);
                res
            })
            .collect()
    })
}

/// The letter a digit is most often read as, and that digit.
fn digit_lookalike(ch: &str) -> Option<&'static str> {
    match ch {
        "l" => Some("1"),
        "O" | "o" => Some("0"),
        _ => None,
    }
}

/// Reads `l`, `O` and `o` as the digits they look like inside a number: a word that,
/// leading and trailing punctuation aside, holds only digits, number separators (`,.:/-`) and
/// such letters, with a digit, and with at least as many digits as letters unless a currency
/// sign comes first (`l0` → `10`, `50,O00` → `50,000`, `l2/05/l999`, `£loo,0oo`). Typewriters
/// print one as a lowercase l, and both a typewriter's and a receipt printer's zero looks like
/// an O. A word with any other letter (`CO2`, `1st`, `lo`) is left
/// alone, and so is one without a digit (`l.`). A capital I is left as it is: in file numbers
/// it is a Roman numeral (`76.109/I-1/38`), and some typists used it for one on purpose.
pub fn read_digits_in_numbers(res: &mut RecResult) {
    let is_alnum = |c: &CharHit| c.ch.chars().all(char::is_alphanumeric);
    let is_digit = |c: &CharHit| c.ch.bytes().all(|b| b.is_ascii_digit());
    let is_lookalike = |c: &CharHit| digit_lookalike(&c.ch).is_some();
    for word in res.chars.split_mut(|c| c.ch == " ") {
        let (Some(first), Some(last)) = (
            word.iter().position(is_alnum),
            word.iter().rposition(is_alnum),
        ) else {
            continue;
        };
        let priced = word[..first]
            .last()
            .is_some_and(|c| ["£", "$", "€", "¥"].contains(&c.ch.as_str()));
        let core = &mut word[first..=last];
        let digits = core.iter().filter(|c| is_digit(c)).count();
        let letters = core.iter().filter(|c| is_lookalike(c)).count();
        let numeric = core.iter().all(|c| {
            is_digit(c) || is_lookalike(c) || [",", ".", ":", "/", "-"].contains(&c.ch.as_str())
        });
        if numeric && letters > 0 && digits > 0 && (digits >= letters || priced) {
            for c in core {
                if let Some(d) = digit_lookalike(&c.ch) {
                    c.ch = d.to_string();
                }
            }
        }
    }
}

/// Puts a space in every blank gap between two characters that is at least
/// three times the line's character pitch (and at least six steps, a line
/// height) wide, where the network emitted none. Typewritten text spaced
/// twice after a full stop, or words set wide apart, otherwise run together
/// (`organised.The`): the network fires the space class for ordinary word
/// spacing but not always across a gap several characters wide. A gap with
/// ink in it (handwriting the network could not read) gets no space.
///
/// The pitch is the median distance between the starts of consecutive
/// characters that are not spaces (three steps, half a line height, when the
/// line has fewer than four such pairs).
pub fn space_wide_gaps(res: &mut RecResult, crop: &RgbImage) {
    let is_space = |c: &CharHit| c.ch.trim().is_empty();
    let mut pitches: Vec<usize> = res
        .chars
        .windows(2)
        .filter(|w| !is_space(&w[0]) && !is_space(&w[1]))
        .map(|w| w[1].steps.0.saturating_sub(w[0].steps.0))
        .collect();
    let pitch = if pitches.len() >= 4 {
        pitches.sort_unstable();
        pitches[pitches.len() / 2]
    } else {
        3
    };
    let wide = (3 * pitch).max(6);
    // Built only once a wide gap turns up: most lines have none.
    let mut ink: Option<InkColumns> = None;
    // Crop columns per time step.
    let scale = res.step_px * crop.width() as f32 / res.content_px.max(1.0);
    let mut out: Vec<CharHit> = Vec::with_capacity(res.chars.len());
    for c in std::mem::take(&mut res.chars) {
        if let Some(prev) = out.last()
            && !is_space(prev)
            && !is_space(&c)
            && c.steps.0.saturating_sub(prev.steps.1) >= wide
            // The steps fire near a character's middle: the blank part of the
            // gap lies a step and a half inside each end.
            && ink
                .get_or_insert_with(|| InkColumns::new(crop))
                .blank((prev.steps.1 as f32 + 2.0) * scale, (c.steps.0 as f32 - 1.0) * scale)
        {
            out.push(CharHit {
                ch: " ".to_string(),
                prob: prev.prob.min(c.prob),
                steps: (prev.steps.1 + 1, c.steps.0 - 1),
            });
        }
        out.push(c);
    }
    res.chars = out;
}

/// Which columns of a line crop carry ink: a column is inked when its
/// darkest pixel in the middle half of the rows is nearer the text's tone
/// (the 2nd percentile of luminance) than the paper's (the median).
struct InkColumns {
    inked: Vec<bool>,
}

impl InkColumns {
    fn new(crop: &RgbImage) -> Self {
        let (w, h) = crop.dimensions();
        let luma = |x: u32, y: u32| {
            let p = crop.get_pixel(x, y).0;
            (u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000
        };
        let (y0, y1) = (h / 4, (3 * h / 4).max(h / 4 + 1).min(h));
        let mut hist = [0u32; 256];
        for y in y0..y1 {
            for x in 0..w {
                hist[luma(x, y) as usize] += 1;
            }
        }
        let total: u32 = hist.iter().sum();
        let quantile = |q: f32| {
            let target = (total as f32 * q) as u32;
            let mut seen = 0;
            hist.iter()
                .position(|&n| {
                    seen += n;
                    seen > target
                })
                .unwrap_or(255) as u32
        };
        let (dark, paper) = (quantile(0.02), quantile(0.5));
        let threshold = (dark + paper) / 2;
        let inked = (0..w)
            .map(|x| paper > dark + 30 && (y0..y1).any(|y| luma(x, y) < threshold))
            .collect();
        Self { inked }
    }

    /// Whether crop columns `x0..x1` are (almost) free of ink; an empty or
    /// inverted range counts as blank.
    fn blank(&self, x0: f32, x1: f32) -> bool {
        let n = self.inked.len();
        let (a, b) = ((x0.max(0.0) as usize).min(n), (x1.max(0.0) as usize).min(n));
        if a >= b {
            return true;
        }
        let inked = self.inked[a..b].iter().filter(|&&i| i).count();
        inked * 10 <= b - a
    }
}

/// Greedy CTC: the argmax per step, repeats merged, blanks (class 0)
/// dropped. `alphabet[i]` is the text of class `i + 1`. `scores` are the
/// network's probabilities, or with `logits` the values before its softmax.
pub fn ctc_decode(
    scores: &[f32],
    steps: usize,
    classes: usize,
    alphabet: &[String],
    logits: bool,
) -> RecResult {
    let mut chars: Vec<CharHit> = Vec::new();
    let mut prev = 0usize;
    for t in 0..steps {
        let row = &scores[t * classes..][..classes];
        let (idx, best) = argmax(row);
        // The best class's softmax probability, worked out only where a character starts.
        let p = || {
            if logits {
                1.0 / exp_sum(row, best)
            } else {
                best
            }
        };
        if idx != 0 {
            if idx == prev {
                if let Some(last) = chars.last_mut() {
                    last.steps.1 = t;
                    // Keep the first step's probability, as PaddleOCR does.
                }
            } else if let Some(text) = alphabet.get(idx - 1) {
                chars.push(CharHit {
                    ch: text.clone(),
                    prob: p(),
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

crate::nn::simd::multiversion! {
    /// The first index of the largest value and that value (`(0, f32::MIN)` when there is
    /// none; NaN never wins). The maximum is found 16 lanes at a time, then its first
    /// position: the recogniser's output has some 18,700 classes per time step, and a
    /// step-by-step comparison took longer than the network's last layer.
    fn argmax(row: &[f32]) -> (usize, f32) {
        let mut lanes = [f32::MIN; 16];
        let chunks = row.chunks_exact(16);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (m, &v) in lanes.iter_mut().zip(chunk) {
                *m = if v > *m { v } else { *m };
            }
        }
        let best = lanes
            .iter()
            .chain(rest)
            .fold(f32::MIN, |m, &v| if v > m { v } else { m });
        (row.iter().position(|&v| v == best).unwrap_or(0), best)
    }
}

crate::nn::simd::multiversion! {
    /// `Σ e^(v - shift)` over the row, 16 lanes at a time with the vectorised `exp`: the
    /// softmax denominator of a step whose largest logit is `shift`.
    fn exp_sum(row: &[f32], shift: f32) -> f32 {
        let mut lanes = [0f32; 16];
        let chunks = row.chunks_exact(16);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (s, &v) in lanes.iter_mut().zip(chunk) {
                *s += crate::nn::simd::exp(v - shift);
            }
        }
        lanes.iter().sum::<f32>() + rest.iter().map(|&v| crate::nn::simd::exp(v - shift)).sum::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_sum_matches_the_scalar_sum() {
        let row: Vec<f32> = (0..18_710)
            .map(|i| ((i * 7919) % 1000) as f32 / 50.0 - 20.0)
            .collect();
        let shift = 0.0;
        let want: f64 = row.iter().map(|&v| f64::from(v - shift).exp()).sum();
        let got = f64::from(exp_sum(&row, shift));
        assert!((got - want).abs() / want < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn argmax_takes_the_first_largest_and_skips_nan() {
        assert_eq!(argmax(&[]), (0, f32::MIN));
        let mut row: Vec<f32> = (0..40).map(|i| (i % 7) as f32).collect();
        row[33] = 9.0;
        row[35] = 9.0;
        row[2] = f32::NAN;
        assert_eq!(argmax(&row), (33, 9.0));
        row[39] = 10.0; // in the tail past the last whole chunk of 16
        assert_eq!(argmax(&row), (39, 10.0));
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), (0, f32::MIN));
    }

    fn read(text: &str) -> String {
        let mut r = RecResult {
            chars: text
                .chars()
                .map(|c| CharHit {
                    ch: c.to_string(),
                    prob: 0.9,
                    steps: (0, 0),
                })
                .collect(),
            ..Default::default()
        };
        read_digits_in_numbers(&mut r);
        r.text()
    }

    #[test]
    fn lookalike_letters_in_numbers_are_read_as_digits() {
        assert_eq!(read("for l0 days"), "for 10 days");
        assert_eq!(read("about 50,O00 people"), "about 50,000 people");
        assert_eq!(read("(l,000)."), "(1,000).");
        assert_eq!(read("on l2/05/l999"), "on 12/05/1999");
        assert_eq!(read("£loo,0oo and $lO"), "£100,000 and $lO");
        // Words, and numbers with other letters, are left alone.
        assert_eq!(
            read("I sold lOO CO2 1st l. lo 2lol"),
            "I sold lOO CO2 1st l. lo 2lol"
        );
    }

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let alphabet: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        // steps: a a blank a b b
        let seq = [1usize, 1, 0, 1, 2, 2];
        let mut probs = vec![0f32; seq.len() * 3];
        for (t, &c) in seq.iter().enumerate() {
            probs[t * 3 + c] = 0.9;
        }
        let r = ctc_decode(&probs, seq.len(), 3, &alphabet, false);
        assert_eq!(r.text(), "aab");
        assert_eq!(r.chars[0].steps, (0, 1));
        assert_eq!(r.chars[2].steps, (4, 5));
        assert!((r.confidence() - 0.9).abs() < 1e-6);
    }

    fn hits(spec: &[(&str, usize)]) -> RecResult {
        RecResult {
            step_px: 1.0,
            content_px: 40.0,
            chars: spec
                .iter()
                .map(|&(ch, t)| CharHit {
                    ch: ch.to_string(),
                    prob: 0.9,
                    steps: (t, t),
                })
                .collect(),
            steps: 40,
        }
    }

    #[test]
    fn a_gap_several_characters_wide_becomes_a_space() {
        // "ed.The na": a pitch of 3 steps, 12 steps from "." to "T".
        let mut r = hits(&[
            ("e", 0),
            ("d", 3),
            (".", 6),
            ("T", 18),
            ("h", 21),
            ("e", 24),
            (" ", 26),
            ("n", 29),
            ("a", 32),
        ]);
        // A white crop, one column per step.
        let blank = RgbImage::from_pixel(40, 6, image::Rgb([255, 255, 255]));
        space_wide_gaps(&mut r, &blank);
        assert_eq!(r.text(), "ed. The na");
        assert_eq!(r.chars[3].steps, (7, 17));
        // Ordinary spacing is left alone, and so is a space already there.
        let mut r = hits(&[
            ("a", 0),
            ("b", 4),
            ("c", 8),
            (" ", 11),
            ("d", 16),
            ("e", 19),
        ]);
        space_wide_gaps(&mut r, &blank);
        assert_eq!(r.text(), "abc de");
        // Ink in the gap: characters the network skipped, not a space.
        let mut inked = blank.clone();
        for x in 0..40 {
            for y in 0..6 {
                if x % 2 == 0 {
                    inked.put_pixel(x, y, image::Rgb([0, 0, 0]));
                }
            }
        }
        let mut r = hits(&[
            ("e", 0),
            ("d", 3),
            (".", 6),
            ("T", 18),
            ("h", 21),
            ("e", 24),
        ]);
        space_wide_gaps(&mut r, &inked);
        assert_eq!(r.text(), "ed.The");
    }
}
