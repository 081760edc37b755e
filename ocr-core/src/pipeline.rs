//! The engine: from an opened file to a [`Document`], page by page.
//!
//! A born-digital PDF page with a usable text layer is read from that layer (confidence 1)
//! unless OCR is forced. Every other page goes through the `cpu` tier ([`crate::ocr`]):
//! page orientation, detection, recognition, orientation of doubtful lines, then layout. An engine built
//! without models reports such pages as failed with a clear reason instead of returning
//! them empty.

use std::sync::Arc;

use image::RgbImage;

use crate::decode::{DecodedPage, InputFile, PageParts};
use crate::document::{
    BBox, Block, BlockKind, Document, Line, Page, PageOutcome, Rotation, TextSource, Word,
};
use crate::error::{Error, Result};
use crate::layout::regions::{LayoutModel, MIN_REGION_SCORE, Region, RegionKind};
use crate::layout::rules::ruled_tables;
use crate::layout::table_model::TableModel;
use crate::layout::{
    blocks_from_lines, blocks_in_regions, intersection, link_captions, mark_page_numbers,
};
use crate::ocr::{self, ModelSize, OcrModels};

/// Why a page that needs OCR has no text when the engine has no models: every such reason
/// starts with this.
pub const NO_ENGINE: &str = "no recognition engine loaded";

/// Per-call options of the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecognizeOptions {
    /// Recognise born-digital pages from their image even when they have a text layer.
    pub force_ocr: bool,
    /// The 0-based pages to read, in order; `None` for all.
    pub pages: Option<Vec<usize>>,
    /// The language requested (`None` or `auto` to detect the script per page).
    pub language: Option<String>,
    /// Skip the page orientation classifier (pages known to be upright).
    pub no_page_rotation: bool,
    /// Each page is one line of text: recognise it whole, without detection.
    pub single_line: bool,
    /// Skip the layout model even when it is loaded: blocks by geometry alone.
    pub no_layout: bool,
    /// Skip the table-structure model even when it is loaded: table cells from the words'
    /// positions alone.
    pub no_table_model: bool,
    /// The document is read for its tables (`tool=extract-tables`): a scanned page or image the
    /// layout model finds no table on is also tried whole, as one table (a table photographed or
    /// cropped on its own), and kept as such when the table-structure model sees a filled grid
    /// in it. (A born-digital page is not: the layout model reads those pages reliably.)
    pub extract_tables: bool,
}

/// The OCR engine: the loaded models (if any) and the per-page logic.
#[derive(Debug, Default, Clone)]
pub struct Engine {
    models: Option<Arc<OcrModels>>,
    layout: Option<Arc<LayoutModel>>,
    tables: Option<Arc<TableModel>>,
}

/// The model's structure is set aside when more than one cell in this many merges words that
/// are columns apart.
const MAX_MERGED_SHARE: usize = 10;

/// Replaces, for each table region, its table blocks by one whose cells the table-structure model
/// reads from the region's image, filled with the blocks' words. A region the model sees fewer
/// than two cells in, cannot finish (too many rows), merges columns in (words a column gap
/// apart in one cell) or fails on keeps the grid its words' positions gave.
fn read_tables(tables: &TableModel, image: &RgbImage, regions: &[Region], blocks: &mut Vec<Block>) {
    let (w, h) = (image.width() as f32, image.height() as f32);
    for region in regions.iter().filter(|r| r.kind == RegionKind::Table) {
        let inside = |b: &Block| {
            let (cx, cy) = ((b.bbox.x0 + b.bbox.x1) / 2.0, (b.bbox.y0 + b.bbox.y1) / 2.0);
            b.kind == BlockKind::Table
                && cx >= region.bbox.x0
                && cx <= region.bbox.x1
                && cy >= region.bbox.y0
                && cy <= region.bbox.y1
        };
        let Some(first) = blocks.iter().position(inside) else {
            continue;
        };
        let lines: Vec<Line> = blocks
            .iter()
            .filter(|b| inside(b))
            .flat_map(|b| b.lines.iter().cloned())
            .collect();
        let words: Vec<Word> = lines.iter().flat_map(|l| l.words.iter().cloned()).collect();
        let Some(body) = BBox::enclosing(lines.iter().map(|l| &l.bbox)) else {
            continue;
        };
        // The region and its words, with a margin of half a line: the model was trained on
        // table crops with a little white around them.
        let mut heights: Vec<f32> = lines.iter().map(|l| l.bbox.height()).collect();
        heights.sort_by(f32::total_cmp);
        let margin = heights[heights.len() / 2] * 0.5;
        let b = region.bbox.union(&body);
        let (x0, y0) = (
            (b.x0 - margin).max(0.0).floor(),
            (b.y0 - margin).max(0.0).floor(),
        );
        let (x1, y1) = ((b.x1 + margin).min(w).ceil(), (b.y1 + margin).min(h).ceil());
        if x1 - x0 < 2.0 || y1 - y0 < 2.0 {
            continue;
        }
        let crop = image::imageops::crop_imm(
            image,
            x0 as u32,
            y0 as u32,
            (x1 - x0) as u32,
            (y1 - y0) as u32,
        )
        .to_image();
        let Ok(mut structure) = tables.structure(&crop) else {
            continue;
        };
        // A table longer than the decoder can spell out keeps its geometric grid rather than
        // losing its last rows; so does one whose cells merge words set apart in columns.
        if structure.cells.len() < 2
            || !structure.complete
            || structure.merged_cells(&words) * MAX_MERGED_SHARE > structure.cells.len()
        {
            continue;
        }
        for c in &mut structure.cells {
            c.bbox = BBox::new(
                c.bbox.x0 + x0,
                c.bbox.y0 + y0,
                c.bbox.x1 + x0,
                c.bbox.y1 + y0,
            );
        }
        let mut block = Block::from_lines(BlockKind::Table, lines);
        block.table = Some(structure.fill(&words));
        let mut k = 0;
        blocks.retain(|b| {
            k += 1;
            k - 1 == first || !inside(b)
        });
        blocks[first] = block;
    }
}

/// Puts each of `tables` before the first block that starts below its top and shares some of
/// its width (else before the first block below it, else last).
fn insert_in_reading_order(blocks: &mut Vec<Block>, tables: Vec<Block>) {
    for table in tables {
        let t = table.bbox;
        let at = blocks
            .iter()
            .position(|b| b.bbox.y0 >= t.y0 && b.bbox.x1.min(t.x1) > b.bbox.x0.max(t.x0))
            .or_else(|| blocks.iter().position(|b| b.bbox.y0 >= t.y1))
            .unwrap_or(blocks.len());
        blocks.insert(at, table);
    }
}

/// The whole page as one table, when the table-structure model sees at least two rows and two
/// columns in it and the page's words fill most of its cells (at least half of them, and two
/// cells in each of two rows): a page of prose fails that.
fn whole_page_table(tables: &TableModel, image: &RgbImage, blocks: &[Block]) -> Option<Block> {
    let lines: Vec<Line> = blocks
        .iter()
        .flat_map(|b| b.lines.iter().cloned())
        .collect();
    let words: Vec<Word> = lines.iter().flat_map(|l| l.words.iter().cloned()).collect();
    if words.len() < 4 {
        return None;
    }
    let structure = tables.structure(image).ok()?;
    if structure.rows < 2 || structure.columns < 2 || !structure.complete {
        return None;
    }
    let table = structure.fill(&words);
    let filled = table.cells.iter().filter(|c| !c.text.is_empty()).count();
    let mut per_row = vec![0usize; table.rows];
    for c in table.cells.iter().filter(|c| !c.text.is_empty()) {
        per_row[c.row] += 1;
    }
    let rows_with_two = per_row.iter().filter(|&&n| n >= 2).count();
    if 2 * filled < table.cells.len() || rows_with_two < 2 {
        return None;
    }
    let mut block = Block::from_lines(BlockKind::Table, lines);
    block.table = Some(table);
    Some(block)
}

/// Probability the page classifier needs before a page is turned.
const PAGE_ROTATION_CONFIDENCE: f32 = 0.85;

impl Engine {
    /// An engine without recognition models: text layers only.
    pub fn new() -> Self {
        Self {
            models: None,
            layout: None,
            tables: None,
        }
    }

    /// An engine that recognises with `models`.
    pub fn with_models(models: OcrModels) -> Self {
        Self {
            models: Some(Arc::new(models)),
            layout: None,
            tables: None,
        }
    }

    /// This engine, also finding layout regions (headers, footers, titles, captions, tables,
    /// columns) with `layout` on every page, born-digital ones included.
    pub fn with_layout(mut self, layout: LayoutModel) -> Self {
        self.layout = Some(Arc::new(layout));
        self
    }

    /// This engine, also reading the structure of the tables the layout model finds with
    /// `tables` (rows, columns, spans, header rows), instead of from the words' positions alone.
    pub fn with_table_model(mut self, tables: TableModel) -> Self {
        self.tables = Some(Arc::new(tables));
        self
    }

    /// Loads the shipped models of `size`, the layout model and the table-structure model, from
    /// [`ocr::default_models_dir`].
    pub fn load_default(size: ModelSize) -> Result<Self> {
        let dir = ocr::default_models_dir();
        Ok(Self::with_models(OcrModels::load(&dir, size)?)
            .with_layout(LayoutModel::load(&dir)?)
            .with_table_model(TableModel::load(&dir)?))
    }

    /// The layout model, when loaded.
    pub fn layout(&self) -> Option<&LayoutModel> {
        self.layout.as_deref()
    }

    /// Blocks from lines in reading order: within the layout model's regions when it is loaded
    /// (it looks at `image`), by geometry alone otherwise; table regions read by the
    /// table-structure model when it is loaded. `scanned`: the lines were recognised from the
    /// image (not taken from a text layer).
    ///
    ///
    /// `ruled`: a born-digital page's tables already read from its rules or shading (their words
    /// are no longer among `lines`); they join the blocks in reading order.
    fn blocks(
        &self,
        lines: Vec<Line>,
        ruled: Vec<Block>,
        image: Option<&RgbImage>,
        page_height: f32,
        options: &RecognizeOptions,
        scanned: bool,
    ) -> Vec<Block> {
        if let (Some(layout), Some(image)) = (&self.layout, image)
            && !lines.is_empty()
            && !options.no_layout
        {
            // The layout model failing is not the page failing: its blocks are then made by
            // geometry alone.
            let mut clock = ocr::trace::Clock::start();
            let found = layout.detect(image, MIN_REGION_SCORE);
            clock.lap("layout");
            if let Ok(mut regions) = found {
                if ocr::trace::enabled() {
                    for r in &regions {
                        eprintln!("[trace] region {:?} {:.2} {:?}", r.kind, r.score, r.bbox);
                    }
                }
                // A table region mostly over a ruled table is that table, already read.
                regions.retain(|r| {
                    r.kind != RegionKind::Table
                        || !ruled.iter().any(|t| {
                            intersection(&r.bbox, &t.bbox) > 0.5 * r.bbox.width() * r.bbox.height()
                        })
                });
                let mut blocks = blocks_in_regions(lines, &regions, page_height);
                if let Some(tables) = self.tables.as_deref().filter(|_| !options.no_table_model) {
                    read_tables(tables, image, &regions, &mut blocks);
                    if options.extract_tables
                        && scanned
                        && !blocks.iter().any(|b| b.table.is_some())
                        && let Some(block) = whole_page_table(tables, image, &blocks)
                    {
                        return vec![block];
                    }
                }
                insert_in_reading_order(&mut blocks, ruled);
                link_captions(&mut blocks);
                return blocks;
            }
        }
        let mut blocks = blocks_from_lines(lines);
        mark_page_numbers(&mut blocks, page_height);
        if !ruled.is_empty() {
            insert_in_reading_order(&mut blocks, ruled);
            link_captions(&mut blocks);
        }
        blocks
    }

    pub fn models(&self) -> Option<&OcrModels> {
        self.models.as_deref()
    }

    /// Checks `options` against the loaded models: a language the models cannot read is
    /// an error naming the supported ones.
    pub fn check_options(&self, options: &RecognizeOptions) -> Result<()> {
        if let (Some(models), Some(lang)) = (&self.models, &options.language) {
            ocr::lang::check(lang, models.size).map_err(Error::Unsupported)?;
        }
        Ok(())
    }

    /// Reads one page. Never fails: a page that cannot be read is a page with a failed outcome.
    pub fn recognize_page(
        &self,
        file: &InputFile,
        index: usize,
        options: &RecognizeOptions,
    ) -> Page {
        self.read_page(file, index, options, false).0
    }

    /// [`Engine::recognize_page`], also returning the image the page's boxes refer to: the
    /// decoded (or rendered) page turned upright as the engine turned it. `None` for a page
    /// whose recognition failed (the searchable PDF leaves it blank).
    pub fn recognize_page_with_image(
        &self,
        file: &InputFile,
        index: usize,
        options: &RecognizeOptions,
    ) -> (Page, Option<RgbImage>) {
        self.read_page(file, index, options, true)
    }

    fn read_page(
        &self,
        file: &InputFile,
        index: usize,
        options: &RecognizeOptions,
        want_image: bool,
    ) -> (Page, Option<RgbImage>) {
        let is_pdf = file.kind() == crate::decode::FileKind::Pdf;
        if is_pdf && !options.force_ocr {
            let parts = PageParts {
                // The layout model looks at the rendered page.
                image: want_image || (self.layout.is_some() && !options.no_layout),
                text_layer: true,
            };
            match file.page(index, parts) {
                Ok(mut decoded) if decoded.text_layer.as_ref().is_some_and(|l| l.is_usable()) => {
                    let image = decoded.image.take().map(|i| i.pixels);
                    let page = self.page_from_text_layer(decoded, image.as_ref(), options);
                    return (page, image.filter(|_| want_image));
                }
                Ok(_) => {}
                Err(e) => return (Page::failed(index, e.to_string()), None),
            }
        }
        match file.page(index, PageParts::IMAGE) {
            Ok(decoded) => self.page_from_image(decoded, is_pdf, options, want_image),
            Err(e) => (Page::failed(index, e.to_string()), None),
        }
    }

    fn page_from_text_layer(
        &self,
        decoded: DecodedPage,
        image: Option<&RgbImage>,
        options: &RecognizeOptions,
    ) -> Page {
        let mut page = empty_page(&decoded);
        if let Some(layer) = decoded.text_layer {
            page.language = ocr::lang::detect_script(
                &layer
                    .lines
                    .iter()
                    .map(|l| l.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .map(str::to_string);
            let (ruled, lines) = ruled_tables(
                layer.lines,
                &layer.rules,
                &layer.shading,
                decoded.dpi / 72.0,
            );
            page.blocks = self.blocks(lines, ruled, image, page.height as f32, options, false);
        }
        page.outcome = PageOutcome::Done {
            source: TextSource::TextLayer,
        };
        page
    }

    fn page_from_image(
        &self,
        decoded: DecodedPage,
        is_pdf: bool,
        options: &RecognizeOptions,
        want_image: bool,
    ) -> (Page, Option<RgbImage>) {
        let mut page = empty_page(&decoded);
        let Some(models) = &self.models else {
            page.outcome = PageOutcome::Failed {
                reason: if is_pdf {
                    format!("{NO_ENGINE}: this pdf page has no usable text layer and needs OCR")
                } else {
                    format!("{NO_ENGINE}: image pages need OCR")
                },
            };
            return (
                page,
                want_image
                    .then(|| decoded.image.map(|i| i.pixels))
                    .flatten(),
            );
        };
        let Some(image) = decoded.image else {
            page.outcome = PageOutcome::Failed {
                reason: "the page has no image".into(),
            };
            return (page, None);
        };
        match read_image(models, image.pixels, options) {
            Ok((image, rotation, lines)) => {
                page.width = image.width();
                page.height = image.height();
                if rotation != Rotation::R0 {
                    page.rotation = rotation;
                }
                let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
                page.language = match options.language.as_deref() {
                    Some(l) if !l.eq_ignore_ascii_case("auto") => Some(l.to_string()),
                    _ => ocr::lang::detect_script(&text.join(" ")).map(str::to_string),
                };
                page.blocks = if options.single_line {
                    blocks_from_lines(lines)
                } else {
                    self.blocks(
                        lines,
                        Vec::new(),
                        Some(&image),
                        image.height() as f32,
                        options,
                        true,
                    )
                };
                page.outcome = PageOutcome::Done {
                    source: TextSource::Recognition,
                };
                (page, want_image.then_some(image))
            }
            Err(e) => {
                page.outcome = PageOutcome::Failed {
                    reason: e.to_string(),
                };
                // The image went into the failed attempt: the page is left without one.
                (page, None)
            }
        }
    }

    /// Reads the selected pages of `file` in order, calling `progress(done, total)` after each.
    pub fn recognize(
        &self,
        file: &InputFile,
        options: &RecognizeOptions,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Document> {
        self.recognize_pages(file, options, false, |done, total, _, _| {
            progress(done, total)
        })
    }

    /// [`Engine::recognize`], also handing each page's image (as
    /// [`Engine::recognize_page_with_image`] returns it) to `each(done, total, page, image)`,
    /// for exports that need the pixels, such as a searchable PDF.
    pub fn recognize_with_images(
        &self,
        file: &InputFile,
        options: &RecognizeOptions,
        each: impl FnMut(usize, usize, &Page, Option<RgbImage>),
    ) -> Result<Document> {
        self.recognize_pages(file, options, true, each)
    }

    fn recognize_pages(
        &self,
        file: &InputFile,
        options: &RecognizeOptions,
        want_images: bool,
        mut each: impl FnMut(usize, usize, &Page, Option<RgbImage>),
    ) -> Result<Document> {
        let count = file.page_count();
        let indices: Vec<usize> = match &options.pages {
            Some(p) => {
                if let Some(&bad) = p.iter().find(|&&i| i >= count) {
                    return Err(Error::PageOutOfRange {
                        requested: bad + 1,
                        count,
                    });
                }
                p.clone()
            }
            None => (0..count).collect(),
        };
        let mut pages = Vec::with_capacity(indices.len());
        for (done, &index) in indices.iter().enumerate() {
            let (page, image) = self.read_page(file, index, options, want_images);
            each(done + 1, indices.len(), &page, image);
            pages.push(page);
        }
        Ok(Document { pages })
    }
}

fn empty_page(decoded: &DecodedPage) -> Page {
    Page {
        index: decoded.index,
        width: decoded.width,
        height: decoded.height,
        dpi: decoded.dpi,
        rotation: decoded.rotation,
        language: None,
        blocks: Vec::new(),
        outcome: PageOutcome::Failed {
            reason: String::new(),
        },
    }
}

/// Turns a page upright (when the classifier is sure), then reads its lines in reading
/// order. Returns the upright image, the rotation that was undone, and the lines.
pub fn read_image(
    models: &OcrModels,
    image: RgbImage,
    options: &RecognizeOptions,
) -> Result<(RgbImage, Rotation, Vec<Line>)> {
    if options.single_line {
        let lines = models
            .read_line(&image)?
            .into_iter()
            .map(|l| l.line)
            .collect();
        return Ok((image, Rotation::R0, lines));
    }
    let (mut image, mut rotation) = (image, Rotation::R0);
    let mut clock = ocr::trace::Clock::start();
    if !options.no_page_rotation {
        let (rot, p) = models.page_orientation(&image)?;
        if rot != Rotation::R0 && p >= PAGE_ROTATION_CONFIDENCE {
            // The content is turned `rot` clockwise: turn it back.
            image = match rot {
                Rotation::R90 => image::imageops::rotate270(&image),
                Rotation::R180 => image::imageops::rotate180(&image),
                Rotation::R270 => image::imageops::rotate90(&image),
                Rotation::R0 => image,
            };
            rotation = rot;
        }
    }
    clock.lap("page orientation");
    let raw = models.read_page(&image)?;
    let lines = ocr::order::reading_order(raw);
    Ok((image, rotation, lines))
}

/// Parses a 1-based page selection such as `1-3,7` into sorted, distinct 0-based indices.
/// Open ranges (`5-`) run to `count`.
pub fn parse_page_selection(spec: &str, count: usize) -> Result<Vec<usize>> {
    let bad = || Error::PageSelection(spec.to_string());
    let mut pages = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let (from, to) = match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = if b.trim().is_empty() {
                    count
                } else {
                    b.trim().parse().map_err(|_| bad())?
                };
                (a, b)
            }
            None => {
                let n: usize = part.parse().map_err(|_| bad())?;
                (n, n)
            }
        };
        if from == 0 || to < from {
            return Err(bad());
        }
        if to > count {
            return Err(Error::PageOutOfRange {
                requested: to,
                count,
            });
        }
        pages.extend(from - 1..to);
    }
    pages.sort_unstable();
    pages.dedup();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_selections_parse_to_sorted_zero_based_indices() {
        assert_eq!(
            parse_page_selection("1-3,7", 10).ok(),
            Some(vec![0, 1, 2, 6])
        );
        assert_eq!(parse_page_selection("7, 2,2", 10).ok(), Some(vec![1, 6]));
        assert_eq!(parse_page_selection("9-", 10).ok(), Some(vec![8, 9]));
        for bad in ["", "0", "3-1", "a", "1-x", "-"] {
            assert!(
                matches!(parse_page_selection(bad, 10), Err(Error::PageSelection(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_page_selection("11", 10),
            Err(Error::PageOutOfRange {
                requested: 11,
                count: 10
            })
        ));
    }
}
