//! Plain text: blocks in reading order separated by a blank line, pages by a form feed.

use std::io::Write;

use ocr_core::Document;

use crate::ExportError;

pub(crate) fn render(document: &Document) -> String {
    document
        .pages
        .iter()
        .map(|p| p.text())
        .collect::<Vec<_>>()
        .join("\n\u{c}")
}

pub(crate) fn write(document: &Document, out: &mut dyn Write) -> Result<(), ExportError> {
    crate::write_text(&render(document), out)
}
