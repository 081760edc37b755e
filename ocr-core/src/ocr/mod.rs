//! The `cpu` tier: PP-OCRv6 detection and recognition with PP-LCNet
//! orientation classifiers, run by the engine's own runtime ([`crate::nn`]).
//!
//! Stages, each public for debugging: [`OcrModels::load`], page orientation
//! ([`OcrModels::page_orientation`]), [`det::detect`], crops
//! ([`geometry::warp_quad`]), [`rec::recognize`], text-line orientation
//! for the lines read with doubt ([`OcrModels::fix_upside_down`], with
//! [`OcrModels::line_flips`]), and
//! [`OcrModels::read_page`] which chains them into lines with words.

pub mod curve;
pub mod det;
pub mod geometry;
pub mod lang;
pub mod order;
pub mod rec;
pub mod trace;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::document::{BBox, Line, Rotation, Word};
use crate::error::{Error, Result};
use crate::nn::Graph;
use det::{DetParams, Detection};
use geometry::{Quad, warp_quad};

/// Which size of the models to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelSize {
    /// PP-OCRv6 small: the accurate default.
    #[default]
    Small,
    /// PP-OCRv6 tiny: several times faster, less accurate, no Japanese kana.
    Tiny,
}

impl ModelSize {
    pub fn name(self) -> &'static str {
        match self {
            ModelSize::Small => "small",
            ModelSize::Tiny => "tiny",
        }
    }

    /// How much wider than its height-scaled size an image of one line, read
    /// on its own ([`OcrModels::read_line`]), is fed to the recogniser.
    ///
    /// The small recogniser drops and confuses fewer characters of such an
    /// image when each character gets more time steps. Over the public line
    /// images, through the same network on onnxruntime, a 1.2× stretch took
    /// CER from 0.36% to 0.34% on printed lines, 7.1% to 6.6% on typed lines
    /// and 38.5% to 37.3% on handwritten ones; 1.1 and 1.35 did no better
    /// overall and 1.5 worse. Crops a page's detector cut out read worse
    /// stretched (typed pages 8.1% → 8.5%, receipts 31.9% → 32.3%), so
    /// pages are read unstretched. The tiny recogniser gained on typed lines
    /// but lost on printed and handwritten ones: it reads unstretched.
    pub fn line_stretch(self) -> f32 {
        match self {
            ModelSize::Small => 1.2,
            ModelSize::Tiny => 1.0,
        }
    }
}

impl std::str::FromStr for ModelSize {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "small" => Ok(ModelSize::Small),
            "tiny" => Ok(ModelSize::Tiny),
            other => Err(format!(
                "unknown model size {other:?}: expected small or tiny"
            )),
        }
    }
}

/// The folder of model files: `$OCR_MODELS_DIR`, else `models/` beside the
/// executable, else the repository's `models/` this crate was built from.
pub fn default_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OCR_MODELS_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent().map(|d| d.join("models"))
        && dir.join("PP-OCRv6_det_small.onnx").is_file()
    {
        return dir;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models"))
}

/// The loaded networks of one size.
#[derive(Debug)]
pub struct OcrModels {
    pub size: ModelSize,
    pub det: Graph,
    pub rec: Graph,
    /// Whether `rec` ends before its softmax ([`Graph::from_onnx_without_final_softmax`]).
    pub rec_logits: bool,
    /// `alphabet[i]` is the text of recogniser class `i + 1` (class 0 is the CTC blank).
    pub alphabet: Vec<String>,
    pub textline: Graph,
    pub page: Graph,
    pub det_params: DetParams,
    pub rec_batch: usize,
}

impl OcrModels {
    /// Loads the models of `size` from `dir`.
    pub fn load(dir: &Path, size: ModelSize) -> Result<OcrModels> {
        let read = |file: &str| model_file(&dir.join(file), Graph::from_onnx);
        let name = size.name();
        let det = read(&format!("PP-OCRv6_det_{name}.onnx"))?;
        // The recogniser without its softmax: decoding needs each step's best class and its
        // probability, not a second copy of a steps × 18k-classes tensor per batch.
        let (rec, rec_logits) = model_file(
            &dir.join(format!("PP-OCRv6_rec_{name}.onnx")),
            Graph::from_onnx_without_final_softmax,
        )?;
        let mut alphabet: Vec<String> = match rec.metadata.get("character") {
            Some(chars) => chars.lines().map(str::to_string).collect(),
            None => {
                let path = dir.join(format!("ppocrv6_{name}_dict.txt"));
                std::fs::read_to_string(&path)
                    .map_err(|e| Error::Internal(format!("alphabet {}: {e}", path.display())))?
                    .lines()
                    .map(|l| l.trim_end_matches('\r').to_string())
                    .collect()
            }
        };
        // The space is the last class.
        alphabet.push(" ".to_string());
        let textline = read("PP-LCNet_textline_ori.onnx")?;
        let page = read("PP-LCNet_page_ori.onnx")?;
        Ok(OcrModels {
            size,
            det,
            rec,
            rec_logits,
            alphabet,
            textline,
            page,
            det_params: DetParams::default(),
            rec_batch: 6,
        })
    }

    /// Loads from [`default_models_dir`].
    pub fn load_default(size: ModelSize) -> Result<OcrModels> {
        Self::load(&default_models_dir(), size)
    }
}

/// ImageNet statistics, RGB order, for the PP-LCNet classifiers.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A recognised line before layout: its outline and decoded characters.
#[derive(Debug, Clone)]
pub struct RawLine {
    pub quad: Quad,
    pub det_score: f32,
    pub line: Line,
}

/// Confidence below which a recognised line is dropped as noise.
pub const MIN_LINE_CONFIDENCE: f32 = 0.5;

/// Confidence below which a line read as cropped is doubted: only those go
/// to the text-line orientation classifier. Lines read upside down score
/// well below it (0.56 to 0.74 on the public corpus's scanned PDFs, against
/// 0.99 and more once turned), and skipping the classifier on the other
/// lines also avoids its false alarms on them (short receipt tokens such as
/// `*S` or `99999` that read as well either way up).
pub const DOUBTFUL_LINE_CONFIDENCE: f32 = 0.9;

impl OcrModels {
    /// The page's rotation as the classifier sees it (clockwise degrees the
    /// content is turned by) and its probability.
    pub fn page_orientation(&self, image: &RgbImage) -> Result<(Rotation, f32)> {
        // Short side to 256, centre crop 224.
        let (w, h) = (image.width() as f32, image.height() as f32);
        let s = 256.0 / w.min(h);
        let (rw, rh) = (
            ((w * s).round() as u32).max(224),
            ((h * s).round() as u32).max(224),
        );
        let resized = image::imageops::resize(image, rw, rh, image::imageops::FilterType::Triangle);
        let (x0, y0) = ((rw - 224) / 2, (rh - 224) / 2);
        let crop = image::imageops::crop_imm(&resized, x0, y0, 224, 224).to_image();
        let mut input = vec![0f32; 3 * 224 * 224];
        geometry::resize_normalize(
            &crop,
            224,
            224,
            IMAGENET_MEAN,
            IMAGENET_STD,
            false,
            &mut input,
            224,
        );
        let probs = self.classify(&self.page, input, (1, 3, 224, 224))?;
        let (k, p) = argmax(&probs);
        let rot = [Rotation::R0, Rotation::R90, Rotation::R180, Rotation::R270][k.min(3)];
        Ok((rot, p))
    }

    /// For each crop, whether it is upside down (with probability above 0.9).
    pub fn line_flips(&self, crops: &[RgbImage]) -> Result<Vec<bool>> {
        let mut flips = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(16) {
            let mut input = vec![0f32; chunk.len() * 3 * 80 * 160];
            for (k, crop) in chunk.iter().enumerate() {
                // PaddleX's preprocessing: a plain resize to 160×80.
                let dst = &mut input[k * 3 * 80 * 160..][..3 * 80 * 160];
                geometry::resize_normalize(
                    crop,
                    160,
                    80,
                    IMAGENET_MEAN,
                    IMAGENET_STD,
                    false,
                    dst,
                    160,
                );
            }
            let probs = self.classify(&self.textline, input, (chunk.len(), 3, 80, 160))?;
            for row in probs.chunks(2) {
                flips.push(row.len() == 2 && row[1] > 0.9);
            }
        }
        Ok(flips)
    }

    /// Turns the lines that read better upside down. Only lines read with
    /// less than [`DOUBTFUL_LINE_CONFIDENCE`] are classified; a line the
    /// classifier calls upside down is read again turned, and the turned
    /// reading replaces the first only if it is the more confident. Quads
    /// are turned with their crops, so words keep their place on the page.
    pub fn fix_upside_down(
        &self,
        crops: &mut [RgbImage],
        quads: &mut [(Quad, Found)],
        results: &mut [rec::RecResult],
    ) -> Result<()> {
        let doubtful: Vec<usize> = (0..crops.len())
            .filter(|&i| results[i].confidence() < DOUBTFUL_LINE_CONFIDENCE)
            .collect();
        if doubtful.is_empty() {
            return Ok(());
        }
        let doubtful_crops: Vec<RgbImage> = doubtful.iter().map(|&i| crops[i].clone()).collect();
        let flips = self.line_flips(&doubtful_crops)?;
        let turned: Vec<usize> = doubtful
            .into_iter()
            .zip(flips)
            .filter_map(|(i, flip)| flip.then_some(i))
            .collect();
        if turned.is_empty() {
            return Ok(());
        }
        let turned_crops: Vec<RgbImage> = turned
            .iter()
            .map(|&i| image::imageops::rotate180(&crops[i]))
            .collect();
        let again = self.recognize(&turned_crops, self.rec_batch, 1.0)?;
        for ((i, crop), res) in turned.into_iter().zip(turned_crops).zip(again) {
            if res.confidence() > results[i].confidence() {
                let [tl, tr, br, bl] = quads[i].0.0;
                quads[i].0 = Quad([br, bl, tl, tr]);
                if let Some(pieces) = &mut quads[i].1.pieces {
                    *pieces = curve::turned(pieces);
                }
                crops[i] = crop;
                results[i] = res;
            }
        }
        Ok(())
    }

    fn classify(
        &self,
        model: &Graph,
        input: Vec<f32>,
        dims: (usize, usize, usize, usize),
    ) -> Result<Vec<f32>> {
        let x = Tensor::from_vec(input, dims, &Device::Cpu).map_err(internal)?;
        let y = model.run(x).map_err(internal)?;
        y.flatten_all().and_then(|t| t.to_vec1()).map_err(internal)
    }

    /// Recognises line crops, `batch` at a time, each `stretch` times wider
    /// than scaled (see [`rec::recognize`]).
    fn recognize(
        &self,
        crops: &[RgbImage],
        batch: usize,
        stretch: f32,
    ) -> Result<Vec<rec::RecResult>> {
        rec::recognize(
            &self.rec,
            self.rec_logits,
            &self.alphabet,
            crops,
            batch,
            stretch,
        )
        .map_err(internal)
    }

    /// Reads an image that holds one line of text (no detection), stretched
    /// by [`ModelSize::line_stretch`].
    pub fn read_line(&self, image: &RgbImage) -> Result<Vec<RawLine>> {
        let quad = Quad::from_rect(0.0, 0.0, image.width() as f32, image.height() as f32);
        let results = self.recognize(std::slice::from_ref(image), 1, self.size.line_stretch())?;
        Ok(results
            .first()
            .and_then(|res| line_from_result(&quad, None, res))
            .map(|line| RawLine {
                quad,
                det_score: 1.0,
                line,
            })
            .into_iter()
            .collect())
    }

    /// Detects, crops, orients and recognises the text lines of an upright
    /// page image. Lines come back in reading order.
    pub fn read_page(&self, image: &RgbImage) -> Result<Vec<RawLine>> {
        let mut clock = trace::Clock::start();
        let detections: Vec<Detection> =
            det::detect(&self.det, image, &self.det_params).map_err(internal)?;
        let mut quads: Vec<(Quad, Found)> = detections
            .into_iter()
            .map(|d| {
                let found = Found {
                    score: d.score,
                    pieces: d.pieces,
                };
                (d.quad, found)
            })
            .collect();
        clock.lap("detect");
        order::sort_quads(&mut quads);
        if trace::enabled() {
            for (quad, found) in quads.iter().filter(|(_, f)| f.pieces.is_some()) {
                let pieces = found.pieces.as_ref().map_or(0, Vec::len);
                let at = quad.bounds().map(f32::round);
                eprintln!("[trace] curved line at {at:?} in {pieces} pieces");
            }
        }
        for (quad, _) in quads.iter_mut().filter(|(_, found)| found.pieces.is_none()) {
            if quad.height().round().max(1.0) >= 1.5 * quad.width().round().max(1.0) {
                // A vertical line: read it turned 90° counter-clockwise.
                let [tl, tr, br, bl] = quad.0;
                *quad = Quad([tr, br, bl, tl]);
            }
        }
        let mut crops: Vec<RgbImage> = {
            use rayon::prelude::*;
            quads
                .par_iter()
                .map(|(quad, found)| {
                    if let Some(pieces) = &found.pieces {
                        return curve::warp_pieces(image, pieces);
                    }
                    let (w, h) = (
                        quad.width().round().max(1.0) as u32,
                        quad.height().round().max(1.0) as u32,
                    );
                    warp_quad(image, quad, w, h)
                })
                .collect()
        };
        clock.lap("crop");
        let mut results = self.recognize(&crops, self.rec_batch, 1.0)?;
        clock.lap("recognise");
        self.fix_upside_down(&mut crops, &mut quads, &mut results)?;
        clock.lap("line orientation");
        let mut lines = Vec::new();
        for ((quad, found), res) in quads.into_iter().zip(results) {
            if res.chars.is_empty() || res.confidence() < MIN_LINE_CONFIDENCE {
                if trace::enabled() {
                    eprintln!(
                        "[trace] line dropped at {:?} (confidence {:.2}): {}",
                        quad.bounds().map(f32::round),
                        res.confidence(),
                        res.text()
                    );
                }
                continue;
            }
            if let Some(line) = line_from_result(&quad, found.pieces.as_deref(), &res) {
                lines.push(RawLine {
                    quad,
                    det_score: found.score,
                    line,
                });
            }
        }
        Ok(lines)
    }
}

/// Reads a model file and compiles it with `compile`; either failing names the file.
fn model_file<T>(
    path: &Path,
    compile: impl FnOnce(&[u8]) -> std::result::Result<T, crate::nn::GraphError>,
) -> Result<T> {
    let failed =
        |e: &dyn std::fmt::Display| Error::Internal(format!("model file {}: {e}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| failed(&e))?;
    compile(&bytes).map_err(|e| failed(&e))
}

/// What detection found of a line besides its rectangle.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub score: f32,
    /// A curved line's pieces ([`curve::pieces`]).
    pub pieces: Option<Vec<Quad>>,
}

/// Builds a [`Line`] with words from one decoded crop: each word's box is
/// the slice of the line's quad (or, for a curved line, of its `pieces` set
/// side by side) between its first and last character steps.
pub fn line_from_result(
    quad: &Quad,
    pieces: Option<&[Quad]>,
    res: &rec::RecResult,
) -> Option<Line> {
    let content = res.content_px.max(1.0);
    let to_u = |step: f32| (step * res.step_px / content).clamp(0.0, 1.0);
    let mut words = Vec::new();
    let mut current: Vec<&rec::CharHit> = Vec::new();
    let mut flush = |chars: &mut Vec<&rec::CharHit>| {
        if chars.is_empty() {
            return;
        }
        let text: String = chars.iter().map(|c| c.ch.as_str()).collect();
        let conf = chars.iter().map(|c| c.prob).sum::<f32>() / chars.len() as f32;
        // A character's steps are where the network fires, roughly its
        // middle; widen by half a step and a bit on each side.
        let first = chars[0].steps.0 as f32 - 0.6;
        let last = chars[chars.len() - 1].steps.1 as f32 + 1.6;
        let [x0, y0, x1, y1] = match pieces {
            Some(pieces) => curve::slice_bounds(pieces, to_u(first), to_u(last)),
            None => quad.slice(to_u(first), to_u(last)).bounds(),
        };
        words.push(Word {
            text,
            bbox: BBox::new(x0, y0, x1, y1),
            confidence: conf,
        });
        chars.clear();
    };
    for c in &res.chars {
        if c.ch.trim().is_empty() {
            flush(&mut current);
        } else {
            current.push(c);
        }
    }
    flush(&mut current);
    if words.is_empty() {
        return None;
    }
    let mut line = Line::from_words(words);
    let [x0, y0, x1, y1] = quad.bounds();
    line.bbox = BBox::new(x0, y0, x1, y1);
    line.confidence = res.confidence();
    if let Some(pieces) = pieces {
        line.polygon = Some(curve::outline(pieces));
    } else if quad.angle().abs() > 2.0 {
        line.polygon = Some(quad.0.to_vec());
    }
    Some(line)
}

fn argmax(v: &[f32]) -> (usize, f32) {
    v.iter()
        .enumerate()
        .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("recognition: {e}"))
}
