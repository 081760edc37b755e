//! A table as HTML (`table.html` in the JSON): `<table>`, the header rows in `<thead>`, the others
//! in `<tbody>`, one `<td>` per cell in its first row, with `rowspan`/`colspan` where it spans;
//! the convention of PubTabNet's annotations, which TEDS compares against.

use ocr_core::Table;

use crate::xml::escape;

/// `table` as one line of HTML.
pub(crate) fn table(table: &Table) -> String {
    let mut cells: Vec<&ocr_core::Cell> = table.cells.iter().collect();
    cells.sort_by_key(|c| (c.row, c.column));
    let rows = cells
        .iter()
        .map(|c| c.row + 1)
        .chain([table.rows.min(4096)])
        .max()
        .unwrap_or(0);
    // Leading rows whose cells are all header cells form the head.
    let head = (0..rows)
        .take_while(|&r| {
            let mut row = cells.iter().filter(|c| c.row == r).peekable();
            row.peek().is_some() && row.all(|c| c.header)
        })
        .count();
    let mut out = String::from("<table>");
    for (section, range) in [("thead", 0..head), ("tbody", head..rows)] {
        if range.is_empty() {
            continue;
        }
        out.push_str(&format!("<{section}>"));
        for r in range {
            out.push_str("<tr>");
            for c in cells.iter().filter(|c| c.row == r) {
                out.push_str("<td");
                if c.row_span > 1 {
                    out.push_str(&format!(" rowspan=\"{}\"", c.row_span));
                }
                if c.column_span > 1 {
                    out.push_str(&format!(" colspan=\"{}\"", c.column_span));
                }
                out.push('>');
                out.push_str(&escape(&c.text));
                out.push_str("</td>");
            }
            out.push_str("</tr>");
        }
        out.push_str(&format!("</{section}>"));
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use ocr_core::{BBox, Cell, Table};

    #[test]
    fn head_body_and_spans() {
        let cell = |row, column, row_span, column_span, header, text: &str| Cell {
            row,
            column,
            row_span,
            column_span,
            header,
            text: text.into(),
            bbox: BBox::default(),
        };
        let t = Table {
            rows: 3,
            columns: 2,
            cells: vec![
                cell(0, 0, 1, 2, true, "Size & weight"),
                cell(1, 0, 2, 1, false, "a"),
                cell(1, 1, 1, 1, false, "<1"),
                cell(2, 1, 1, 1, false, ""),
            ],
        };
        assert_eq!(
            super::table(&t),
            "<table><thead><tr><td colspan=\"2\">Size &amp; weight</td></tr></thead>\
             <tbody><tr><td rowspan=\"2\">a</td><td>&lt;1</td></tr><tr><td></td></tr></tbody></table>"
        );
    }
}
