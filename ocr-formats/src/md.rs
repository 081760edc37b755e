//! Markdown (CommonMark, with GitHub-flavoured tables): headings as `#` lines, paragraphs whose
//! lines are kept as lines, list items, tables as pipe tables (the first row is the header
//! row, which pipe tables require), pages separated by a thematic break (`---`). Text that
//! Markdown would read as markup is escaped.

use std::io::Write;

use ocr_core::{Block, BlockKind, Document, Table};

use crate::ExportError;

/// What the Markdown of a document read for its tables says when it has none.
pub const NO_TABLE: &str = "No table was found in this document.";

pub(crate) fn render(document: &Document, tables_only: bool) -> String {
    if tables_only {
        return tables(document);
    }
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

pub(crate) fn write(
    document: &Document,
    tables_only: bool,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    crate::write_text(&render(document, tables_only), out)
}

/// Every table of the document under a `## Table n (page p)` heading, its caption (when the
/// layout linked one to it) first, or [`NO_TABLE`].
fn tables(document: &Document) -> String {
    let mut out = Vec::new();
    for page in &document.pages {
        for (k, block) in page.blocks.iter().enumerate() {
            let Some(table) = block.table.as_ref().filter(|t| !t.cells.is_empty()) else {
                continue;
            };
            let caption = page
                .blocks
                .iter()
                .find(|b| b.caption_of == Some(k))
                .map(|b| format!("{}\n\n", escape(&b.text().replace('\n', " "))))
                .unwrap_or_default();
            out.push(format!(
                "## Table {} (page {})\n\n{caption}{}",
                out.len() + 1,
                page.index + 1,
                pipe_table(table)
            ));
        }
    }
    if out.is_empty() {
        return NO_TABLE.to_string();
    }
    out.join("\n\n")
}

fn block(block: &Block) -> Option<String> {
    // Running headers, footers and page numbers are not part of the document's text flow.
    if matches!(block.kind, BlockKind::Header | BlockKind::Footer) {
        return None;
    }
    if let Some(table) = block.table.as_ref().filter(|t| !t.cells.is_empty()) {
        return Some(pipe_table(table));
    }
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
        BlockKind::ListItem => list_item(block),
        _ => text.join("\n"),
    })
}

/// A list item: its own number kept (`3. text`), any other marker (bullets, letters, roman
/// numerals) as `- `, the item's lines joined.
fn list_item(block: &Block) -> String {
    let joined = block
        .lines
        .iter()
        .map(|l| l.text.trim())
        .collect::<Vec<_>>()
        .join(" ");
    match ocr_core::layout::list_marker(&joined) {
        Some((marker, rest)) => {
            let number = marker.trim_end_matches(['.', ')']);
            if !number.is_empty() && number.len() <= 3 && number.chars().all(|c| c.is_ascii_digit())
            {
                format!("{number}. {}", escape(rest))
            } else {
                format!("- {}", escape(rest))
            }
        }
        None => format!("- {}", escape(&joined)),
    }
}

/// A pipe table; each cell's text on one line, escaped (pipes included).
fn pipe_table(table: &Table) -> String {
    let grid = crate::csv::grid(table);
    let columns = grid.first().map_or(0, Vec::len).max(1);
    let row = |cells: &[String]| {
        let mut line = String::from("|");
        for c in 0..columns {
            let text = cells.get(c).map_or(String::new(), |t| {
                escape_inline(&t.split_whitespace().collect::<Vec<_>>().join(" "))
            });
            line.push(' ');
            line.push_str(&text);
            line.push_str(" |");
        }
        line
    };
    let mut lines = Vec::with_capacity(grid.len() + 1);
    lines.push(row(grid.first().map_or(&[][..], Vec::as_slice)));
    lines.push(format!("|{}", " --- |".repeat(columns)));
    lines.extend(grid.iter().skip(1).map(|r| row(r)));
    lines.join("\n")
}

/// Escapes what CommonMark would read as markup: inline punctuation everywhere, and the
/// characters that start a heading, list, quote, thematic break or numbered item at the
/// start of a line.
pub(crate) fn escape(line: &str) -> String {
    let mut out = escape_inline(line);
    let digits = out.len() - out.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if out.starts_with(['-', '+', '=']) {
        out.insert(0, '\\');
    } else if digits > 0 && out[digits..].starts_with(['.', ')']) {
        out.insert(digits, '\\');
    }
    out
}

/// The inline part of [`escape`]: what is markup anywhere in a line (a table cell needs no more:
/// a cell's text never starts a line).
fn escape_inline(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        // `&` only where it could start an entity reference (`&amp;`, `&#38;`).
        let entity = c == '&'
            && chars
                .peek()
                .is_some_and(|n| n.is_alphanumeric() || *n == '#');
        if entity
            || matches!(
                c,
                '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~'
            )
        {
            out.push('\\');
        }
        out.push(c);
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
        assert_eq!(escape("AT&T &amp; co"), "AT\\&T \\&amp; co");
        assert_eq!(escape("6𞹵."), "6𞹵.");
    }
}
