//! `ocr-formats`: every output format, written from the [`ocr_core::Document`] model.
//!
//! One function, [`export`], one module per format. Exporters read only the document model;
//! the JSON wire shape is defined here, not derived from core types, so the engine can change
//! its internals without breaking clients.
//!
//! ```
//! use ocr_core::Document;
//! use ocr_formats::{ExportOptions, Format, export};
//!
//! let mut out = Vec::new();
//! export(&Document::default(), Format::Txt, &ExportOptions::default(), &mut out).unwrap();
//! assert!(out.is_empty());
//! ```

mod json;
mod md;
mod txt;

use std::io::Write;
use std::str::FromStr;

use ocr_core::Document;

/// The formats an exported document can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Txt,
    Md,
    Json,
}

impl Format {
    /// Every format, in the order help texts list them.
    pub const ALL: [Format; 3] = [Format::Txt, Format::Md, Format::Json];

    pub fn extension(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Md => "md",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Txt => "text/plain; charset=utf-8",
            Format::Md => "text/markdown; charset=utf-8",
            Format::Json => "application/json",
        }
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportOptions {
    /// Pretty-print JSON.
    pub pretty: bool,
}

/// What can go wrong while exporting.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("unknown format {0:?}: expected one of txt, md, json")]
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
    options: &ExportOptions,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    match format {
        Format::Txt => txt::write(document, out),
        Format::Md => md::write(document, out),
        Format::Json => json::write(document, options, out),
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
