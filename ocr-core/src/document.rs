//! The document model every stage produces and every exporter reads.
//!
//! A [`Document`] is a list of [`Page`]s; a page holds [`Block`]s in reading order, a block holds
//! [`Line`]s, a line holds [`Word`]s. Every element has a box in pixels of the page image the
//! engine saw and a confidence in `[0, 1]`. A page that could not be read is still a page: its
//! [`PageOutcome`] says why, so one bad page never loses the rest of a document.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in page pixels: `x0 <= x1`, `y0 <= y1`, origin at the top left.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BBox {
    /// A box from two corners in any order.
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self {
            x0: x0.min(x1),
            y0: y0.min(y1),
            x1: x0.max(x1),
            y1: y0.max(y1),
        }
    }

    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }

    /// The smallest box holding both.
    pub fn union(&self, other: &BBox) -> BBox {
        BBox {
            x0: self.x0.min(other.x0),
            y0: self.y0.min(other.y0),
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
        }
    }

    /// The smallest box holding all of `boxes`, or `None` for an empty iterator.
    pub fn enclosing<'a>(boxes: impl IntoIterator<Item = &'a BBox>) -> Option<BBox> {
        boxes.into_iter().fold(None, |acc, b| match acc {
            None => Some(*b),
            Some(a) => Some(a.union(b)),
        })
    }

    /// This box clipped to `[0, width] x [0, height]`.
    pub fn clamp_to(&self, width: f32, height: f32) -> BBox {
        BBox {
            x0: self.x0.clamp(0.0, width),
            y0: self.y0.clamp(0.0, height),
            x1: self.x1.clamp(0.0, width),
            y1: self.y1.clamp(0.0, height),
        }
    }

    /// `[x0, y0, x1, y1]`, the order the wire format uses.
    pub fn to_array(&self) -> [f32; 4] {
        [self.x0, self.y0, self.x1, self.y1]
    }
}

/// A word: the smallest unit with its own box and confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub text: String,
    pub bbox: BBox,
    pub confidence: f32,
}

/// A line of text in reading order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub text: String,
    pub bbox: BBox,
    /// The detected outline when the line is not axis-aligned (rotated or curved text).
    pub polygon: Option<Vec<[f32; 2]>>,
    pub confidence: f32,
    pub words: Vec<Word>,
}

impl Line {
    /// A line made of `words`, its text the words joined by single spaces, its box and
    /// confidence derived from theirs.
    pub fn from_words(words: Vec<Word>) -> Self {
        let text = words
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let bbox = BBox::enclosing(words.iter().map(|w| &w.bbox)).unwrap_or_default();
        let confidence = mean_confidence(words.iter().map(|w| (w.confidence, w.text.len())));
        Self {
            text,
            bbox,
            polygon: None,
            confidence,
            words,
        }
    }
}

/// What a block is, as far as the engine can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    #[default]
    Paragraph,
    Heading {
        level: u8,
    },
    ListItem,
    Table,
    Caption,
    Header,
    Footer,
    Formula,
    Figure,
}

/// A table's cell grid; cells hold their text and span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub rows: usize,
    pub columns: usize,
    pub cells: Vec<Cell>,
}

/// One cell of a [`Table`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub row: usize,
    pub column: usize,
    pub row_span: usize,
    pub column_span: usize,
    pub header: bool,
    pub text: String,
    pub bbox: BBox,
}

/// A group of lines read together: a paragraph, a heading, a table, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub kind: BlockKind,
    pub bbox: BBox,
    pub lines: Vec<Line>,
    pub table: Option<Table>,
    /// For a caption: the index, among its page's blocks, of the table or figure it captions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption_of: Option<usize>,
}

impl Block {
    /// A block of `kind` made of `lines`, its box derived from theirs.
    pub fn from_lines(kind: BlockKind, lines: Vec<Line>) -> Self {
        let bbox = BBox::enclosing(lines.iter().map(|l| &l.bbox)).unwrap_or_default();
        Self {
            kind,
            bbox,
            lines,
            table: None,
            caption_of: None,
        }
    }

    /// The block's lines joined by newlines.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Mean confidence over the block's characters.
    pub fn confidence(&self) -> f32 {
        mean_confidence(self.lines.iter().map(|l| (l.confidence, l.text.len())))
    }
}

/// Clockwise rotation of a page, in degrees, as found in the file or detected by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Rotation {
    #[default]
    R0,
    R90,
    R180,
    R270,
}

impl Rotation {
    pub fn degrees(self) -> u16 {
        match self {
            Rotation::R0 => 0,
            Rotation::R90 => 90,
            Rotation::R180 => 180,
            Rotation::R270 => 270,
        }
    }
}

/// Where a page's text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSource {
    /// The text layer of a born-digital PDF page (confidence 1).
    TextLayer,
    /// Recognised from the page image.
    Recognition,
}

/// Whether a page was read, and if not, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageOutcome {
    Done { source: TextSource },
    Failed { reason: String },
}

/// One page of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// 0-based position of the page in its file.
    pub index: usize,
    /// Size in pixels of the page image the boxes refer to.
    pub width: u32,
    pub height: u32,
    pub dpi: f32,
    pub rotation: Rotation,
    /// The language or script detected or requested for the page, if known.
    pub language: Option<String>,
    pub blocks: Vec<Block>,
    pub outcome: PageOutcome,
}

impl Page {
    /// A page that could not be read, with the reason.
    pub fn failed(index: usize, reason: impl Into<String>) -> Self {
        Self {
            index,
            width: 0,
            height: 0,
            dpi: 0.0,
            rotation: Rotation::R0,
            language: None,
            blocks: Vec::new(),
            outcome: PageOutcome::Failed {
                reason: reason.into(),
            },
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.outcome, PageOutcome::Failed { .. })
    }

    /// The page's text: lines joined by newlines, blocks separated by a blank line.
    pub fn text(&self) -> String {
        self.blocks
            .iter()
            .map(Block::text)
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    /// Mean confidence over the page's characters; `None` for a page without text.
    pub fn mean_confidence(&self) -> Option<f32> {
        weighted_mean(self.lines().map(|l| (l.confidence, l.text.len())))
    }

    /// All lines of the page in reading order.
    pub fn lines(&self) -> impl Iterator<Item = &Line> {
        self.blocks.iter().flat_map(|b| b.lines.iter())
    }
}

/// A recognised file: its pages in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Document {
    pub pages: Vec<Page>,
}

impl Document {
    /// Mean confidence over all recognised characters; `None` when nothing was recognised.
    pub fn mean_confidence(&self) -> Option<f32> {
        weighted_mean(
            self.pages
                .iter()
                .flat_map(|p| p.lines())
                .map(|l| (l.confidence, l.text.len())),
        )
    }
}

fn weighted_mean(items: impl Iterator<Item = (f32, usize)>) -> Option<f32> {
    let (sum, weight) = items.fold((0.0f64, 0usize), |(s, w), (c, n)| {
        (s + f64::from(c) * n as f64, w + n)
    });
    (weight > 0).then(|| (sum / weight as f64) as f32)
}

/// The mean of confidences weighted by text length, 1 for no text (nothing was doubtful).
fn mean_confidence(items: impl Iterator<Item = (f32, usize)>) -> f32 {
    weighted_mean(items).unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, x0: f32, confidence: f32) -> Word {
        Word {
            text: text.into(),
            bbox: BBox::new(x0, 10.0, x0 + 10.0 * text.len() as f32, 20.0),
            confidence,
        }
    }

    #[test]
    fn line_derives_text_box_and_confidence_from_words() {
        let line = Line::from_words(vec![word("ab", 0.0, 1.0), word("cdef", 30.0, 0.25)]);
        assert_eq!(line.text, "ab cdef");
        assert_eq!(line.bbox, BBox::new(0.0, 10.0, 70.0, 20.0));
        // Weighted by characters: (2 * 1.0 + 4 * 0.25) / 6 = 0.5.
        assert!((line.confidence - 0.5).abs() < 1e-6);
    }

    #[test]
    fn page_without_text_has_no_mean_confidence() {
        let page = Page::failed(3, "broken");
        assert_eq!(page.mean_confidence(), None);
        assert!(page.is_failed());
        assert_eq!(page.text(), "");
    }

    #[test]
    fn bbox_new_orders_corners() {
        assert_eq!(BBox::new(5.0, 6.0, 1.0, 2.0), BBox::new(1.0, 2.0, 5.0, 6.0));
    }
}
