//! `ocr-formats`: every output format, written from the [`ocr_core::Document`] model.
//!
//! One function, [`export`], one module per format. Exporters read only the document model
//! (and, for the searchable PDF, the page images the caller hands over through
//! [`ExportOptions::images`]); the JSON wire shape is defined here, not derived from core types,
//! so the engine can change its internals without breaking clients.
//!
//! | format | what it holds |
//! |---|---|
//! | `txt` | the text in reading order, blocks separated by a blank line, pages by a form feed |
//! | `md` | Markdown: headings, paragraphs, list items, tables, `---` between pages |
//! | `json` | the job object of the REST API, with pages, blocks, lines and words |
//! | `docx` | a Word document: headings, paragraphs, tables, page breaks |
//! | `pdf` | the page images under an invisible, searchable text layer |
//! | `csv` | the document's tables (or, without tables, its lines) |
//! | `hocr` | hOCR 1.2 XHTML with boxes and word confidences |
//! | `alto` | ALTO 4.4 XML with boxes and word confidences |
//!
//! ```
//! use ocr_core::Document;
//! use ocr_formats::{ExportOptions, Format, export};
//!
//! let mut out = Vec::new();
//! export(&Document::default(), Format::Txt, &ExportOptions::default(), &mut out).unwrap();
//! assert!(out.is_empty());
//! ```

mod alto;
mod csv;
mod docx;
mod font;
mod hocr;
mod html;
mod json;
mod md;
mod pdf;
mod pdf_copy;
mod text;
mod txt;
mod xml;

use std::io::Write;
use std::str::FromStr;

use ocr_core::Document;

pub use json::JobMeta;
pub use pdf::{PageImage, PageImages, PageSources};

/// The formats an exported document can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Txt,
    Md,
    Json,
    Docx,
    Pdf,
    Csv,
    Hocr,
    Alto,
}

impl Format {
    /// Every format, in the order help texts list them.
    pub const ALL: [Format; 8] = [
        Format::Txt,
        Format::Md,
        Format::Json,
        Format::Docx,
        Format::Pdf,
        Format::Csv,
        Format::Hocr,
        Format::Alto,
    ];

    /// The name clients ask for, which is also the file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Md => "md",
            Format::Json => "json",
            Format::Docx => "docx",
            Format::Pdf => "pdf",
            Format::Csv => "csv",
            Format::Hocr => "hocr",
            Format::Alto => "alto",
        }
    }

    /// The file name suffix: the extension, except that hOCR is HTML and ALTO is XML.
    pub fn file_suffix(self) -> &'static str {
        match self {
            Format::Hocr => "hocr.html",
            Format::Alto => "alto.xml",
            other => other.extension(),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Txt => "text/plain; charset=utf-8",
            Format::Md => "text/markdown; charset=utf-8",
            Format::Json => "application/json",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Format::Pdf => "application/pdf",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Hocr => "application/xhtml+xml; charset=utf-8",
            Format::Alto => "application/xml; charset=utf-8",
        }
    }

    /// Whether the output is binary (not text for a terminal).
    pub fn is_binary(self) -> bool {
        matches!(self, Format::Docx | Format::Pdf)
    }
}

impl FromStr for Format {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| {
                f.extension().eq_ignore_ascii_case(s) || (s == "markdown" && *f == Format::Md)
            })
            .ok_or_else(|| ExportError::UnknownFormat(s.to_string()))
    }
}

/// Options shared by the exporters.
#[derive(Clone, Copy, Default)]
pub struct ExportOptions<'a> {
    /// Pretty-print JSON.
    pub pretty: bool,
    /// The page images for the searchable PDF; without them its pages are blank (the text layer
    /// is still there).
    pub images: Option<&'a dyn PageImages>,
    /// The job the document belongs to, for the JSON job object.
    pub job: Option<&'a JobMeta>,
    /// The document was read for its tables (`tool=extract-tables`): Markdown and CSV carry its
    /// tables alone, and say so when it has none.
    pub tables_only: bool,
}

impl std::fmt::Debug for ExportOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportOptions")
            .field("pretty", &self.pretty)
            .field("images", &self.images.is_some())
            .field("job", &self.job)
            .field("tables_only", &self.tables_only)
            .finish()
    }
}

/// What can go wrong while exporting.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("unknown format {0:?}: expected one of txt, md, json, docx, pdf, csv, hocr, alto")]
    UnknownFormat(String),
    #[error("writing the output failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding json failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes `document` in `format` to `out`.
pub fn export(
    document: &Document,
    format: Format,
    options: &ExportOptions<'_>,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    match format {
        Format::Txt => txt::write(document, out),
        Format::Md => md::write(document, options.tables_only, out),
        Format::Json => json::write(document, options, out),
        Format::Docx => docx::write(document, out),
        Format::Pdf => pdf::write(document, options, out),
        Format::Csv => csv::write(document, options.tables_only, out),
        Format::Hocr => hocr::write(document, out),
        Format::Alto => alto::write(document, out),
    }
}

/// Writes a text export, ending it with a newline unless it is empty.
fn write_text(text: &str, out: &mut dyn Write) -> Result<(), ExportError> {
    out.write_all(text.as_bytes())?;
    if !text.is_empty() {
        out.write_all(b"\n")?;
    }
    Ok(())
}
