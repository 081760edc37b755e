//! Layout: grouping lines (already in reading order) into blocks, and telling headings by size.
//!
//! This is the geometric baseline every page gets; the layout model of a later stage refines
//! block kinds and reading order where it pays off.

use crate::document::{Block, BlockKind, Line};

/// Groups consecutive lines into paragraphs: a line joins the block above it when it is close
/// below it, overlaps it horizontally and has a similar size. Lines clearly larger than the
/// page's body text become headings (level 1 for the largest sizes, 2 and 3 below).
pub fn blocks_from_lines(lines: Vec<Line>) -> Vec<Block> {
    let body = median_height(&lines);
    let mut blocks: Vec<(Vec<Line>, f32)> = Vec::new();
    for line in lines {
        let h = line.bbox.height().max(1.0);
        let joins = blocks
            .last()
            .and_then(|(ls, _)| ls.last())
            .is_some_and(|prev| {
                let ph = prev.bbox.height().max(1.0);
                let gap = line.bbox.y0 - prev.bbox.y1;
                let overlap = line.bbox.x1.min(prev.bbox.x1) - line.bbox.x0.max(prev.bbox.x0);
                let similar = h.max(ph) / h.min(ph) < 1.3;
                similar && gap > -0.5 * ph && gap < 0.8 * ph.max(h) && overlap > 0.0
            });
        match blocks.last_mut() {
            Some((ls, _)) if joins => ls.push(line),
            _ => blocks.push((vec![line], h)),
        }
    }
    blocks
        .into_iter()
        .map(|(lines, h)| {
            let kind = heading_level(h, body, &lines)
                .map_or(BlockKind::Paragraph, |level| BlockKind::Heading { level });
            Block::from_lines(kind, lines)
        })
        .collect()
}

fn median_height(lines: &[Line]) -> f32 {
    let mut hs: Vec<f32> = lines.iter().map(|l| l.bbox.height()).collect();
    if hs.is_empty() {
        return 0.0;
    }
    hs.sort_by(f32::total_cmp);
    hs[hs.len() / 2]
}

/// A short block (at most three lines) of clearly larger text than the body is a heading.
fn heading_level(height: f32, body: f32, lines: &[Line]) -> Option<u8> {
    if body <= 0.0 || lines.len() > 3 {
        return None;
    }
    let words: usize = lines.iter().map(|l| l.words.len()).sum();
    if words > 20 {
        return None;
    }
    let ratio = height / body;
    match ratio {
        r if r >= 1.8 => Some(1),
        r if r >= 1.4 => Some(2),
        r if r >= 1.2 => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{BBox, Word};

    fn line(text: &str, x0: f32, y0: f32, height: f32) -> Line {
        Line::from_words(vec![Word {
            text: text.into(),
            bbox: BBox::new(x0, y0, x0 + 200.0, y0 + height),
            confidence: 1.0,
        }])
    }

    #[test]
    fn close_lines_form_paragraphs_and_large_lines_headings() {
        let lines = vec![
            line("Title", 0.0, 0.0, 40.0),
            line("one", 0.0, 60.0, 20.0),
            line("two", 0.0, 84.0, 20.0),
            line("three", 0.0, 150.0, 20.0),
        ];
        let blocks = blocks_from_lines(lines);
        let shape: Vec<(BlockKind, usize)> =
            blocks.iter().map(|b| (b.kind, b.lines.len())).collect();
        assert_eq!(
            shape,
            [
                (BlockKind::Heading { level: 1 }, 1),
                (BlockKind::Paragraph, 2),
                (BlockKind::Paragraph, 1)
            ]
        );
    }
}
