//! Reading order of detected lines.
//!
//! Recursive XY-cut over the line boxes ([`reading_order`]): columns split
//! at wide vertical gutters, bands at horizontal gaps; lines whose vertical
//! centres lie within half a line height of each other are on the same row
//! and read left to right ([`sort_quads`]).

use super::RawLine;
use super::geometry::Quad;
use crate::document::Line;

/// Orders recognised lines for reading: recursive XY-cut over the line
/// boxes. A vertical cut needs a gutter that runs the full height of the
/// lines being cut, at least 1.5 line heights wide, with substantial text
/// on both sides (3+ lines, lines at least 15% of the width being cut) set
/// side by side (at least two lines on each side level with a line on the
/// other): narrow columns of figures (prices on a receipt, table cells)
/// stay on their rows, and blocks that are only left and right of each
/// other at different heights are read top to bottom. Otherwise the lines are cut at the widest horizontal gap;
/// lines sharing a row are read left to right.
pub fn reading_order(lines: Vec<RawLine>) -> Vec<Line> {
    let boxes: Vec<[f32; 4]> = lines.iter().map(|l| l.quad.bounds()).collect();
    let mut heights: Vec<f32> = lines.iter().map(|l| l.quad.height()).collect();
    heights.sort_by(f32::total_cmp);
    let median_h = heights
        .get(heights.len() / 2)
        .copied()
        .unwrap_or(10.0)
        .max(1.0);
    let mut order = Vec::with_capacity(lines.len());
    xy_cut((0..lines.len()).collect(), &boxes, median_h, &mut order);
    let mut slots: Vec<Option<RawLine>> = lines.into_iter().map(Some).collect();
    let ordered: Vec<Line> = order
        .into_iter()
        .filter_map(|i| slots[i].take())
        .map(|l| l.line)
        .collect();
    merge_rows(ordered)
}

/// Joins pieces of one text row that detection split at a wide space: the
/// next line starts to the right of this one, on the same row (vertical
/// overlap over half the smaller height), within three line heights.
fn merge_rows(lines: Vec<Line>) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::with_capacity(lines.len());
    for line in lines {
        if let Some(prev) = out.last_mut() {
            let (a, b) = (&prev.bbox, &line.bbox);
            let h = a.height().min(b.height()).max(1.0);
            let overlap = a.y1.min(b.y1) - a.y0.max(b.y0);
            let gap = b.x0 - a.x1;
            if prev.polygon.is_none()
                && line.polygon.is_none()
                && overlap > 0.5 * h
                && gap > -0.25 * h
                && gap < 3.0 * h
            {
                let n_prev = prev.text.chars().count() as f32;
                let n_line = line.text.chars().count() as f32;
                prev.confidence = (prev.confidence * n_prev + line.confidence * n_line)
                    / (n_prev + n_line).max(1.0);
                prev.text = format!("{} {}", prev.text, line.text);
                prev.bbox = prev.bbox.union(&line.bbox);
                prev.words.extend(line.words);
                continue;
            }
        }
        out.push(line);
    }
    out
}

fn xy_cut(items: Vec<usize>, boxes: &[[f32; 4]], median_h: f32, out: &mut Vec<usize>) {
    if items.len() <= 1 {
        out.extend(items);
        return;
    }
    let span = |axis: usize| -> Vec<(f32, f32, Vec<usize>)> {
        let mut sorted = items.clone();
        sorted.sort_by(|&a, &b| boxes[a][axis].total_cmp(&boxes[b][axis]));
        let mut groups: Vec<(f32, f32, Vec<usize>)> = Vec::new();
        for i in sorted {
            let (s, e) = (boxes[i][axis], boxes[i][axis + 2]);
            match groups.last_mut() {
                Some(g) if s < g.1 => {
                    g.1 = g.1.max(e);
                    g.2.push(i);
                }
                _ => groups.push((s, e, vec![i])),
            }
        }
        groups
    };
    // Vertical cut: columns separated by a wide gutter.
    let cols = span(0);
    if cols.len() > 1 {
        let x0 = cols[0].0;
        let x1 = cols.iter().map(|c| c.1).fold(f32::MIN, f32::max);
        let width = (x1 - x0).max(1.0);
        for k in 1..cols.len() {
            if cols[k].0 - cols[k - 1].1 < 1.5 * median_h {
                continue;
            }
            let left: Vec<usize> = cols[..k].iter().flat_map(|c| c.2.iter().copied()).collect();
            let right: Vec<usize> = cols[k..].iter().flat_map(|c| c.2.iter().copied()).collect();
            let substantial = |side: &[usize]| {
                let mut ws: Vec<f32> = side.iter().map(|&i| boxes[i][2] - boxes[i][0]).collect();
                ws.sort_by(f32::total_cmp);
                side.len() >= 3 && ws[ws.len() / 2] >= 0.15 * width
            };
            // Columns stand side by side: lines of each face lines of the
            // other. Blocks that only sit left and right of each other at
            // different heights (a letter's sender and recipient) are read
            // top to bottom by the horizontal cuts instead.
            let facing = |side: &[usize], other: &[usize]| {
                side.iter()
                    .filter(|&&i| {
                        other.iter().any(|&j| {
                            let overlap =
                                boxes[i][3].min(boxes[j][3]) - boxes[i][1].max(boxes[j][1]);
                            let h = (boxes[i][3] - boxes[i][1]).min(boxes[j][3] - boxes[j][1]);
                            overlap > 0.3 * h.max(1.0)
                        })
                    })
                    .count()
            };
            let side_by_side = facing(&left, &right) >= 2 && facing(&right, &left) >= 2;
            if side_by_side && substantial(&left) && substantial(&right) {
                xy_cut(left, boxes, median_h, out);
                xy_cut(right, boxes, median_h, out);
                return;
            }
        }
    }
    // Horizontal cut at the widest gap between rows.
    let rows = span(1);
    if rows.len() > 1 {
        let (k, _) = (1..rows.len())
            .map(|k| (k, rows[k].0 - rows[k - 1].1))
            .fold((1, f32::MIN), |b, (k, g)| if g > b.1 { (k, g) } else { b });
        let top: Vec<usize> = rows[..k].iter().flat_map(|r| r.2.iter().copied()).collect();
        let bottom: Vec<usize> = rows[k..].iter().flat_map(|r| r.2.iter().copied()).collect();
        xy_cut(top, boxes, median_h, out);
        xy_cut(bottom, boxes, median_h, out);
        return;
    }
    // One band of overlapping lines: rows by centre, left to right.
    let mut quads: Vec<(Quad, usize)> = items
        .iter()
        .map(|&i| {
            (
                Quad::from_rect(boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3]),
                i,
            )
        })
        .collect();
    sort_quads(&mut quads);
    out.extend(quads.into_iter().map(|q| q.1));
}

/// Sorts quads (with a payload) into rows, top to bottom, left to right.
pub fn sort_quads<T>(items: &mut [(Quad, T)]) {
    items.sort_by(|a, b| {
        a.0.center()[1]
            .total_cmp(&b.0.center()[1])
            .then(a.0.center()[0].total_cmp(&b.0.center()[0]))
    });
    // Bubble neighbours on the same row into left-to-right order.
    for _ in 0..items.len() {
        let mut changed = false;
        for i in 0..items.len().saturating_sub(1) {
            let (a, b) = (&items[i].0, &items[i + 1].0);
            let h = a.height().min(b.height()).max(1.0);
            if (a.center()[1] - b.center()[1]).abs() < 0.5 * h && b.bounds()[0] < a.bounds()[0] {
                items.swap(i, i + 1);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_row_sorts_left_to_right() {
        let mut items = vec![
            (Quad::from_rect(100.0, 12.0, 200.0, 30.0), 'b'),
            (Quad::from_rect(0.0, 10.0, 90.0, 28.0), 'a'),
            (Quad::from_rect(0.0, 40.0, 90.0, 58.0), 'c'),
        ];
        sort_quads(&mut items);
        let order: String = items.iter().map(|i| i.1).collect();
        assert_eq!(order, "abc");
    }

    fn cut(boxes: &[[f32; 4]]) -> Vec<usize> {
        let mut out = Vec::new();
        xy_cut((0..boxes.len()).collect(), boxes, 20.0, &mut out);
        out
    }

    #[test]
    fn columns_side_by_side_are_read_one_after_the_other() {
        // Two columns of four lines each, then a full-width footer.
        let mut boxes = Vec::new();
        for row in 0..4 {
            let y = 100.0 + 30.0 * row as f32;
            boxes.push([50.0, y, 400.0, y + 20.0]);
        }
        for row in 0..4 {
            let y = 104.0 + 30.0 * row as f32;
            boxes.push([500.0, y, 850.0, y + 20.0]);
        }
        boxes.push([50.0, 300.0, 850.0, 320.0]);
        assert_eq!(cut(&boxes), vec![0, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn letter_blocks_at_different_heights_are_read_top_to_bottom() {
        // A stray mark top left, the sender's address top right, the
        // recipient's lower left, then the body across the page.
        let boxes = [
            [90.0, 60.0, 100.0, 80.0],    // 0: mark
            [520.0, 130.0, 780.0, 150.0], // 1: sender
            [540.0, 155.0, 750.0, 175.0], // 2
            [570.0, 190.0, 800.0, 210.0], // 3
            [100.0, 230.0, 160.0, 250.0], // 4: recipient
            [145.0, 250.0, 480.0, 270.0], // 5
            [180.0, 270.0, 330.0, 290.0], // 6
            [190.0, 290.0, 310.0, 310.0], // 7
            [100.0, 340.0, 220.0, 360.0], // 8: body
            [100.0, 380.0, 830.0, 400.0], // 9
        ];
        assert_eq!(cut(&boxes), (0..10).collect::<Vec<_>>());
    }
}
