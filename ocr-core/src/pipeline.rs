//! The engine: from an opened file to a [`Document`], page by page.
//!
//! A born-digital PDF page with a usable text layer is read from that layer (confidence 1)
//! unless OCR is forced. Every other page needs recognition; until the `cpu` tier lands, such
//! a page is reported as failed with a clear reason instead of silently coming back empty.

use crate::decode::{DecodedPage, InputFile, PageParts};
use crate::document::{Document, Page, PageOutcome, TextSource};
use crate::error::{Error, Result};
use crate::layout::blocks_from_lines;

/// Why a page that needs OCR has no text yet: every such reason starts with this.
pub const NO_ENGINE: &str = "no recognition engine yet";

/// Per-call options of the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecognizeOptions {
    /// Recognise born-digital pages from their image even when they have a text layer.
    pub force_ocr: bool,
    /// The 0-based pages to read, in order; `None` for all.
    pub pages: Option<Vec<usize>>,
}

/// The OCR engine. Stateless for now; the recognition models will live here.
#[derive(Debug, Default, Clone)]
pub struct Engine {}

impl Engine {
    pub fn new() -> Self {
        Self {}
    }

    /// Reads one page. Never fails: a page that cannot be read is a page with a failed outcome.
    pub fn recognize_page(
        &self,
        file: &InputFile,
        index: usize,
        options: &RecognizeOptions,
    ) -> Page {
        let parts = if file.kind() == crate::decode::FileKind::Pdf && !options.force_ocr {
            PageParts::TEXT_LAYER
        } else {
            PageParts::IMAGE
        };
        match file.page(index, parts) {
            Ok(decoded) => self.page_from_decoded(decoded),
            Err(e) => Page::failed(index, e.to_string()),
        }
    }

    fn page_from_decoded(&self, decoded: DecodedPage) -> Page {
        let mut page = Page {
            index: decoded.index,
            width: decoded.width,
            height: decoded.height,
            dpi: decoded.dpi,
            rotation: decoded.rotation,
            language: None,
            blocks: Vec::new(),
            outcome: PageOutcome::Failed {
                reason: if decoded.text_layer.is_some() {
                    format!("{NO_ENGINE}: this pdf page has no usable text layer and needs OCR")
                } else {
                    format!("{NO_ENGINE}: image pages need OCR")
                },
            },
        };
        if let Some(layer) = decoded.text_layer.filter(|l| l.is_usable()) {
            page.blocks = blocks_from_lines(layer.lines);
            page.outcome = PageOutcome::Done {
                source: TextSource::TextLayer,
            };
        }
        page
    }

    /// Reads the selected pages of `file` in order, calling `progress(done, total)` after each.
    pub fn recognize(
        &self,
        file: &InputFile,
        options: &RecognizeOptions,
        mut progress: impl FnMut(usize, usize),
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
        for (done, index) in indices.iter().enumerate() {
            pages.push(self.recognize_page(file, *index, options));
            progress(done + 1, indices.len());
        }
        Ok(Document { pages })
    }
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
