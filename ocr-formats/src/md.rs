//! Markdown: headings as `#` lines, paragraphs, pages separated by a thematic break.

use std::io::Write;

use ocr_core::{Block, BlockKind, Document};

use crate::ExportError;

pub(crate) fn render(document: &Document) -> String {
    document
        .pages
        .iter()
        .map(|page| {
            page.blocks
                .iter()
                .filter_map(block)
                .collect::<Vec<_>>()
                .join("\n\n")
        })
        .collect::<Vec<_>>()
        .join("\n\n---\n\n")
}

pub(crate) fn write(document: &Document, out: &mut dyn Write) -> Result<(), ExportError> {
    crate::write_text(&render(document), out)
}

fn block(block: &Block) -> Option<String> {
    let text = block
        .lines
        .iter()
        .map(|l| escape(&l.text))
        .collect::<Vec<_>>();
    if text.is_empty() {
        return None;
    }
    Some(match block.kind {
        BlockKind::Heading { level } => {
            format!(
                "{} {}",
                "#".repeat(usize::from(level.clamp(1, 6))),
                text.join(" ")
            )
        }
        BlockKind::ListItem => format!("- {}", text.join(" ")),
        _ => text.join("\n"),
    })
}

/// Escapes what CommonMark would read as markup: inline punctuation everywhere, and the
/// characters that start a heading, list, quote, thematic break or numbered item at the
/// start of a line.
pub(crate) fn escape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.trim().chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    let starts_block = out.starts_with(['-', '+', '='])
        || out
            .find(|c: char| !c.is_ascii_digit())
            .is_some_and(|i| i > 0 && matches!(&out[i..i + 1], "." | ")"));
    if starts_block {
        let pos = out
            .find(|c: char| !c.is_ascii_digit())
            .filter(|&i| i > 0)
            .unwrap_or(0);
        out.insert(pos, '\\');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn line_starts_that_would_be_markup_are_escaped() {
        assert_eq!(escape("# not a heading"), "\\# not a heading");
        assert_eq!(escape("- dash"), "\\- dash");
        assert_eq!(escape("1. one"), "1\\. one");
        assert_eq!(escape("a*b_c"), "a\\*b\\_c");
        assert_eq!(escape("2024 was"), "2024 was");
    }
}
