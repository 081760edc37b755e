//! Text detection: the DB network's probability map, then its
//! post-processing into text-line quadrilaterals.

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::geometry::{
    Quad, convex_hull, hull_score, min_area_rect, mini_box, quad_score, regions, resize_normalize,
    unclip,
};
use crate::nn::Graph;

/// Detection settings. The defaults are PaddleOCR's for DB.
#[derive(Debug, Clone, PartialEq)]
pub struct DetParams {
    /// The image is scaled so that its shorter side is at least this
    /// (never down), then capped by `max_side`.
    pub limit_side: u32,
    /// Longest side the network sees; larger pages are scaled down.
    pub max_side: u32,
    /// Probability above which a pixel is text.
    pub thresh: f32,
    /// Mean probability a region needs to be kept.
    pub box_thresh: f32,
    /// How far a region's box grows: area × ratio / perimeter on each side.
    pub unclip_ratio: f32,
    /// Smallest box side kept, in network pixels.
    pub min_size: f32,
    pub max_candidates: usize,
}

impl Default for DetParams {
    fn default() -> Self {
        Self {
            limit_side: 736,
            max_side: 2000,
            thresh: 0.3,
            box_thresh: 0.5,
            unclip_ratio: 1.6,
            min_size: 3.0,
            max_candidates: 1000,
        }
    }
}

/// A detected text region in page coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub quad: Quad,
    pub score: f32,
    /// For a curved line, the pieces that follow it ([`super::curve::pieces`]), in reading
    /// order; `quad` is then the rectangle round them all.
    pub pieces: Option<Vec<Quad>>,
}

/// The network input size for a page of `w`×`h`: multiples of 32.
pub fn input_size(w: u32, h: u32, p: &DetParams) -> (usize, usize) {
    let (w, h) = (w as f32, h as f32);
    let mut ratio = 1.0f32;
    if w.min(h) < p.limit_side as f32 {
        ratio = p.limit_side as f32 / w.min(h);
    }
    if w.max(h) * ratio > p.max_side as f32 {
        ratio = p.max_side as f32 / w.max(h);
    }
    let round32 = |v: f32| (((v * ratio) / 32.0).round() as usize * 32).max(32);
    (round32(w), round32(h))
}

/// Runs the detector on a page and returns its text regions, in page
/// coordinates, unordered.
pub fn detect(
    model: &Graph,
    image: &RgbImage,
    p: &DetParams,
) -> Result<Vec<Detection>, crate::nn::GraphError> {
    let mut clock = super::trace::Clock::start();
    let (dw, dh) = input_size(image.width(), image.height(), p);
    let mut input = vec![0f32; 3 * dw * dh];
    // BGR, (x / 255 - 0.5) / 0.5, as the reference pipeline feeds PP-OCRv6.
    resize_normalize(image, dw, dh, [0.5; 3], [0.5; 3], true, &mut input, dw);
    let x = Tensor::from_vec(input, (1, 3, dh, dw), &Device::Cpu)?;
    clock.lap("detect: resize");
    let prob: Vec<f32> = model.run(x)?.flatten_all()?.to_vec1()?;
    clock.lap("detect: network");
    let found = postprocess(&prob, dw, dh, image.width(), image.height(), p);
    clock.lap("detect: boxes");
    Ok(found)
}

/// DB post-processing of a `w`×`h` probability map into page-space quads.
pub fn postprocess(
    prob: &[f32],
    w: usize,
    h: usize,
    page_w: u32,
    page_h: u32,
    p: &DetParams,
) -> Vec<Detection> {
    let seg: Vec<bool> = prob.iter().map(|&v| v > p.thresh).collect();
    // Dilate with a 2×2 kernel anchored at its bottom-right: a pixel is set
    // when it or its left, upper or upper-left neighbour is.
    let mut mask = seg.clone();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if !seg[i]
                && ((x > 0 && seg[i - 1])
                    || (y > 0 && seg[i - w])
                    || (x > 0 && y > 0 && seg[i - w - 1]))
            {
                mask[i] = true;
            }
        }
    }
    let (sx, sy) = (page_w as f32 / w as f32, page_h as f32 / h as f32);
    let mut out = Vec::new();
    for points in regions(&mask, w, h).into_iter().take(p.max_candidates) {
        let hull = convex_hull(&points);
        let (quad, side) = mini_box(min_area_rect(&hull));
        if side < p.min_size {
            continue;
        }
        // A curved line: scored over its own band, read piece by piece (grown as below).
        let band = super::curve::pieces(&points, &quad, 0.0);
        let pieces = band
            .as_ref()
            .and_then(|_| super::curve::pieces(&points, &quad, p.unclip_ratio));
        let mut score = match &band {
            Some(band) => {
                band.iter().map(|q| quad_score(prob, w, h, q)).sum::<f32>() / band.len() as f32
            }
            None => quad_score(prob, w, h, &quad),
        };
        if score < p.box_thresh {
            // A rectangle round two shapes joined at a corner (a handwritten note touching a
            // typed line) is mostly empty: score such a region by its own outline instead.
            score = hull_score(prob, w, h, &hull);
            if score < p.box_thresh {
                continue;
            }
        }
        let grown = unclip(&quad, p.unclip_ratio);
        let (grown, side) = mini_box(grown.0);
        if side < p.min_size + 2.0 {
            continue;
        }
        let clampx = |v: f32| (v * sx).round().clamp(0.0, page_w as f32);
        let clampy = |v: f32| (v * sy).round().clamp(0.0, page_h as f32);
        let to_page = |q: &Quad| Quad(q.0.map(|pt| [clampx(pt[0]), clampy(pt[1])]));
        let quad = to_page(&grown);
        if quad.width() <= 3.0 || quad.height() <= 3.0 {
            continue;
        }
        let pieces = pieces.map(|pieces| pieces.iter().map(to_page).collect());
        out.push(Detection {
            quad,
            score,
            pieces,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probability map with `value` over each `[x0, y0, x1, y1)` rectangle.
    fn map(w: usize, h: usize, rects: &[[usize; 4]], value: f32) -> Vec<f32> {
        let mut prob = vec![0.0; w * h];
        for &[x0, y0, x1, y1] in rects {
            for y in y0..y1 {
                prob[y * w + x0..y * w + x1].fill(value);
            }
        }
        prob
    }

    #[test]
    fn a_note_touching_a_line_does_not_lose_the_line() {
        let (w, h) = (200, 80);
        // A handwritten note in the margin (40 wide, 16 high) touching the start of a typed line
        // (140 wide, 6 high): more than half of their bounding rectangle is empty.
        let rects = [[10, 24, 50, 40], [50, 30, 190, 36]];
        let prob = map(w, h, &rects, 0.9);
        let found = postprocess(&prob, w, h, w as u32, h as u32, &DetParams::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let [x0, _, x1, _] = found[0].quad.bounds();
        assert!(x0 <= 12.0 && x1 >= 188.0, "{found:?}");
        // A faint smudge stays out however it is scored.
        let prob = map(w, h, &rects, 0.4);
        let found = postprocess(&prob, w, h, w as u32, h as u32, &DetParams::default());
        assert!(found.is_empty(), "{found:?}");
    }
}
