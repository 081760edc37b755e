//! A table's cell grid from the geometry of its words, for the lines the layout model put in a
//! table region (scans and born-digital pages alike).
//!
//! Rows are lines whose vertical spans overlap. Within a row, words separated by a gap wider
//! than a body line's height are in different cells. Columns come from the rows with the most
//! cells: where their cells line up (overlapping x ranges) is one column. Every cell then takes
//! the columns it overlaps (more than one: a column span). The first row is the header row.

use crate::document::{BBox, Cell, Line, Table, Word};

/// A cell grid for `lines`, or `None` when they do not form one (fewer than two rows or two
/// columns).
pub fn grid_from_lines(lines: &[Line]) -> Option<Table> {
    let mut heights: Vec<f32> = lines.iter().map(|l| l.bbox.height()).collect();
    heights.sort_by(f32::total_cmp);
    let h = heights.get(heights.len() / 2).copied()?.max(1.0);

    // Rows, top to bottom.
    let mut sorted: Vec<&Line> = lines.iter().filter(|l| !l.words.is_empty()).collect();
    sorted.sort_by(|a, b| a.bbox.y0.total_cmp(&b.bbox.y0));
    let mut rows: Vec<(f32, f32, Vec<&Word>)> = Vec::new();
    for line in sorted {
        let (y0, y1) = (line.bbox.y0, line.bbox.y1);
        let same = rows.last().is_some_and(|(r0, r1, _)| {
            let overlap = r1.min(y1) - r0.max(y0);
            overlap > 0.5 * (y1 - y0).min(r1 - r0)
        });
        match rows.last_mut() {
            Some((r0, r1, words)) if same => {
                *r0 = r0.min(y0);
                *r1 = r1.max(y1);
                words.extend(&line.words);
            }
            _ => rows.push((y0, y1, line.words.iter().collect())),
        }
    }
    if rows.len() < 2 {
        return None;
    }

    // Cells of each row: words split at wide gaps.
    let segments: Vec<Vec<(BBox, String)>> = rows
        .iter_mut()
        .map(|(_, _, words)| {
            words.sort_by(|a, b| a.bbox.x0.total_cmp(&b.bbox.x0));
            let mut cells: Vec<(BBox, String)> = Vec::new();
            for w in words.iter() {
                match cells.last_mut() {
                    Some((b, text)) if w.bbox.x0 - b.x1 < h => {
                        *b = b.union(&w.bbox);
                        text.push(' ');
                        text.push_str(&w.text);
                    }
                    _ => cells.push((w.bbox, w.text.clone())),
                }
            }
            cells
        })
        .collect();

    // Column bands from the rows with the most cells.
    let most = segments.iter().map(Vec::len).max().unwrap_or(0);
    if most < 2 {
        return None;
    }
    let mut bands: Vec<(f32, f32)> = segments
        .iter()
        .filter(|s| s.len() == most)
        .flatten()
        .map(|(b, _)| (b.x0, b.x1))
        .collect();
    bands.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut columns: Vec<(f32, f32)> = Vec::new();
    for (x0, x1) in bands {
        match columns.last_mut() {
            Some((_, c1)) if x0 <= *c1 => *c1 = c1.max(x1),
            _ => columns.push((x0, x1)),
        }
    }
    if columns.len() < 2 {
        return None;
    }

    let mut cells = Vec::new();
    for (r, row) in segments.into_iter().enumerate() {
        let mut taken = vec![false; columns.len()];
        for (bbox, text) in row {
            // The columns this cell overlaps; one in no band goes to the nearest.
            let hit: Vec<usize> = (0..columns.len())
                .filter(|&c| bbox.x1.min(columns[c].1) - bbox.x0.max(columns[c].0) > 0.0)
                .collect();
            let (first, last) = match (hit.first(), hit.last()) {
                (Some(&a), Some(&b)) => (a, b),
                _ => {
                    let centre = (bbox.x0 + bbox.x1) / 2.0;
                    let nearest = (0..columns.len())
                        .min_by(|&a, &b| {
                            let d = |c: usize| (centre - (columns[c].0 + columns[c].1) / 2.0).abs();
                            d(a).total_cmp(&d(b))
                        })
                        .unwrap_or(0);
                    (nearest, nearest)
                }
            };
            // Two cells of a row in one column: the text joins the cell already there.
            if taken[first]
                && let Some(cell) = cells
                    .iter_mut()
                    .rev()
                    .find(|c: &&mut Cell| c.row == r && c.column == first)
            {
                cell.text.push(' ');
                cell.text.push_str(&text);
                cell.bbox = cell.bbox.union(&bbox);
                continue;
            }
            taken[first..=last].iter_mut().for_each(|t| *t = true);
            cells.push(Cell {
                row: r,
                column: first,
                row_span: 1,
                column_span: last - first + 1,
                header: r == 0,
                text,
                bbox,
            });
        }
    }
    Some(Table {
        rows: rows.len(),
        columns: columns.len(),
        cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of `cells`, each `(x0, text)`, words 8 px per character, one space apart.
    fn row(y: f32, cells: &[(f32, &str)]) -> Line {
        let mut words = Vec::new();
        for &(x, text) in cells {
            let mut x = x;
            for w in text.split(' ') {
                let width = 8.0 * w.chars().count() as f32;
                words.push(Word {
                    text: w.into(),
                    bbox: BBox::new(x, y, x + width, y + 16.0),
                    confidence: 1.0,
                });
                x += width + 5.0;
            }
        }
        Line::from_words(words)
    }

    #[test]
    fn rows_and_columns_from_word_gaps_with_a_spanning_cell() {
        let lines = vec![
            row(0.0, &[(0.0, "Name"), (150.0, "Unit price"), (300.0, "Qty")]),
            row(24.0, &[(0.0, "Blue pen"), (150.0, "1.20"), (300.0, "3")]),
            row(
                48.0,
                &[(0.0, "Total for all items ordered today"), (300.0, "3")],
            ),
        ];
        let t = grid_from_lines(&lines).unwrap_or_else(|| panic!("a grid"));
        assert_eq!((t.rows, t.columns), (3, 3));
        let got: Vec<(usize, usize, usize, bool, &str)> = t
            .cells
            .iter()
            .map(|c| (c.row, c.column, c.column_span, c.header, c.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, 0, 1, true, "Name"),
                (0, 1, 1, true, "Unit price"),
                (0, 2, 1, true, "Qty"),
                (1, 0, 1, false, "Blue pen"),
                (1, 1, 1, false, "1.20"),
                (1, 2, 1, false, "3"),
                (2, 0, 2, false, "Total for all items ordered today"),
                (2, 2, 1, false, "3"),
            ]
        );
    }

    #[test]
    fn one_column_of_text_is_not_a_table() {
        let lines = vec![
            row(0.0, &[(0.0, "just text")]),
            row(24.0, &[(0.0, "more text")]),
        ];
        assert!(grid_from_lines(&lines).is_none());
    }
}
