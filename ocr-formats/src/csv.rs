//! CSV: every table of the document, in reading order, separated by a blank line.
//!
//! A table's cells go into its grid; a cell spanning several rows or columns fills its top-left
//! position and leaves the others empty. Quoting follows RFC 4180: a field holding a comma,
//! quote, line break or leading/trailing space is quoted, quotes doubled; lines end with CRLF.
//!
//! A document without tables gives the text of its lines instead, under the header
//! `page,line,text` (`page` 1-based, `line` numbered within the page), so the file is never
//! empty and says what it holds; read for its tables alone (`tool=extract-tables`), it gives one
//! `note` column saying that no table was found.

use std::io::Write;

use ocr_core::{Document, Table};

use crate::ExportError;

pub(crate) fn write(
    document: &Document,
    tables_only: bool,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let tables: Vec<&Table> = document
        .pages
        .iter()
        .flat_map(|p| p.blocks.iter())
        .filter_map(|b| b.table.as_ref())
        .collect();
    if tables.is_empty() {
        if tables_only {
            write_record(&["note".to_string()], out)?;
            return write_record(&["no table was found in this document".to_string()], out);
        }
        return write_lines(document, out);
    }
    for (i, table) in tables.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b"\r\n")?;
        }
        for row in grid(table) {
            write_record(&row, out)?;
        }
    }
    Ok(())
}

fn write_lines(document: &Document, out: &mut dyn Write) -> Result<(), ExportError> {
    write_record(&["page", "line", "text"].map(String::from), out)?;
    for page in &document.pages {
        for (n, line) in page.lines().enumerate() {
            write_record(
                &[
                    (page.index + 1).to_string(),
                    (n + 1).to_string(),
                    line.text.clone(),
                ],
                out,
            )?;
        }
    }
    Ok(())
}

/// The table as `rows × columns` strings; cells outside the declared size grow it.
/// Text of cells that claim the same position is joined by a space.
pub(crate) fn grid(table: &Table) -> Vec<Vec<String>> {
    // The declared size counts up to a bound: empty trailing rows or columns are kept, but a
    // corrupt size cannot make the grid huge.
    const DECLARED_MAX: usize = 4096;
    let rows = table
        .cells
        .iter()
        .map(|c| c.row + 1)
        .chain([table.rows.min(DECLARED_MAX)])
        .max()
        .unwrap_or(0);
    let columns = table
        .cells
        .iter()
        .map(|c| c.column + 1)
        .chain([table.columns.min(DECLARED_MAX)])
        .max()
        .unwrap_or(0);
    let mut grid = vec![vec![String::new(); columns]; rows];
    for cell in &table.cells {
        let slot = &mut grid[cell.row][cell.column];
        if !slot.is_empty() {
            slot.push(' ');
        }
        slot.push_str(&cell.text);
    }
    grid
}

fn write_record(fields: &[String], out: &mut dyn Write) -> Result<(), ExportError> {
    let record = fields
        .iter()
        .map(|f| quote(f))
        .collect::<Vec<_>>()
        .join(",");
    out.write_all(record.as_bytes())?;
    out.write_all(b"\r\n")?;
    Ok(())
}

fn quote(field: &str) -> String {
    let needs = field.contains([',', '"', '\n', '\r'])
        || field.starts_with(char::is_whitespace)
        || field.ends_with(char::is_whitespace);
    if needs {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("two\nlines"), "\"two\nlines\"");
        assert_eq!(quote(" padded"), "\" padded\"");
    }
}
