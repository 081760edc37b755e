//! Layout: grouping lines (already in reading order) into blocks, and telling headings by size
//! ([`blocks_from_lines`]), then, where the layout model found regions on the page
//! ([`regions`]), giving blocks the region's kind and keeping each region's lines together
//! ([`blocks_in_regions`]).

pub mod regions;
pub mod rules;
pub mod table;
pub mod table_model;

use crate::document::{BBox, Block, BlockKind, Line};
use regions::{Region, RegionKind};

/// Groups consecutive lines into paragraphs: a line joins the block above it when it is close
/// below it, overlaps it horizontally and has a similar size. Lines clearly larger than the
/// page's body text become headings (level 1 for the largest sizes, 2 and 3 below). A line that
/// starts with a bullet or an item number (`•`, `-`, `1.`, `2)`, `(c)`, `iv.`) starts a list
/// item; the lines below it join the item while they are not left of its text.
pub fn blocks_from_lines(lines: Vec<Line>) -> Vec<Block> {
    let body = median_height(&lines);
    paragraphs(lines, body)
}

/// [`blocks_from_lines`] with the body text height given (the page's, for a region's lines).
fn paragraphs(lines: Vec<Line>, body: f32) -> Vec<Block> {
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
        let item = list_marker(&line.text).is_some();
        // An item's continuation lines are indented at least to the item's first line.
        let joins = joins
            && !item
            && blocks.last().is_none_or(|(ls, _)| {
                list_marker(&ls[0].text).is_none() || line.bbox.x0 >= ls[0].bbox.x0 + 0.3 * h
            });
        match blocks.last_mut() {
            Some((ls, _)) if joins => ls.push(line),
            _ => blocks.push((vec![line], h)),
        }
    }
    blocks
        .into_iter()
        .map(|(lines, h)| {
            let kind = if list_marker(&lines[0].text).is_some() {
                BlockKind::ListItem
            } else {
                heading_level(h, body, &lines)
                    .map_or(BlockKind::Paragraph, |level| BlockKind::Heading { level })
            };
            Block::from_lines(kind, lines)
        })
        .collect()
}

/// Share of a line's area a region must cover to hold the line.
const MIN_LINE_COVER: f32 = 0.5;

/// Links each caption to the table or figure it belongs to ([`Block::caption_of`]): the nearest
/// one above or below it that overlaps it horizontally, a table for a caption starting "Table"
/// or "Tab.", a figure for one starting "Fig"; each table or figure takes one caption at most,
/// the nearest first. Call it when the page's blocks are final: the link is an index.
pub fn link_captions(blocks: &mut [Block]) {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, caption) in blocks.iter().enumerate() {
        if caption.kind != BlockKind::Caption {
            continue;
        }
        let head = caption.text().trim_start().to_lowercase();
        let wants = if head.starts_with("tab") {
            Some(BlockKind::Table)
        } else if head.starts_with("fig") {
            Some(BlockKind::Figure)
        } else {
            None
        };
        for (j, target) in blocks.iter().enumerate() {
            let fits = match wants {
                Some(kind) => target.kind == kind,
                None => matches!(target.kind, BlockKind::Table | BlockKind::Figure),
            };
            let (a, b) = (&caption.bbox, &target.bbox);
            let overlap = a.x1.min(b.x1) - a.x0.max(b.x0);
            if !fits || overlap <= 0.0 {
                continue;
            }
            let gap = (b.y0 - a.y1).max(a.y0 - b.y1).max(0.0);
            pairs.push((gap, i, j));
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut taken = vec![false; blocks.len()];
    for (_, i, j) in pairs {
        if blocks[i].caption_of.is_none() && !taken[j] {
            blocks[i].caption_of = Some(j);
            taken[j] = true;
        }
    }
}

/// Blocks of a page whose layout regions are known. Each line goes to the region covering most of
/// it (at least half; among equals the smaller, more specific region). The lines of one region
/// stay together, placed where its first line falls in the given reading order, so that a column,
/// sidebar or caption is not interleaved with its neighbours; page headers come first and footers
/// last (a header or footer region whose text is larger than the body is a heading, and keeps its
/// place, unless it is a page number). A region whose own lines stand in several columns (a
/// layout model's one box around three text columns) is no reading unit: it is cut wherever the
/// reading order leaves it for a line outside it, so its columns are read each in its turn.
/// Lines of a region are cut into paragraphs as [`blocks_from_lines`] does, and take the region's
/// kind: header, footer, caption, formula, figure, table (one block, with the cell grid its
/// words' geometry gives, [`table::grid_from_lines`]), or a heading for a title (levels by size
/// against the page's body text). Lines in no region keep their place and are grouped by
/// geometry alone; a lone page number at the top or bottom of the page is marked as a header or
/// footer either way.
pub fn blocks_in_regions(lines: Vec<Line>, regions: &[Region], page_height: f32) -> Vec<Block> {
    let body = median_height(&lines);
    // The region of each line.
    let owner: Vec<Option<usize>> = lines
        .iter()
        .map(|line| {
            let area = (line.bbox.width() * line.bbox.height()).max(1e-3);
            // Region boxes are loose at their edges (a first line's ascenders, a last line's
            // descenders fall outside): each is widened by half a body line.
            let m = 0.5 * body;
            regions
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let b = &r.bbox;
                    let wide = BBox::new(b.x0 - m, b.y0 - m, b.x1 + m, b.y1 + m);
                    (i, intersection(&line.bbox, &wide) / area, r)
                })
                .filter(|(_, cover, _)| *cover >= MIN_LINE_COVER)
                .max_by(|a, b| {
                    let size = |r: &Region| r.bbox.width() * r.bbox.height();
                    // Covers within 10% of each other count as equal: the smaller region wins.
                    if (a.1 - b.1).abs() > 0.1 {
                        a.1.total_cmp(&b.1)
                    } else {
                        size(b.2).total_cmp(&size(a.2))
                    }
                })
                .map(|(i, _, _)| i)
        })
        .collect();
    let columned: Vec<bool> = (0..regions.len())
        .map(|r| {
            regions[r].kind != RegionKind::Table && {
                let own: Vec<&BBox> = (0..lines.len())
                    .filter(|&i| owner[i] == Some(r))
                    .map(|i| &lines[i].bbox)
                    .collect();
                own.iter()
                    .any(|a| own.iter().any(|b| side_by_side(a, b, body)))
            }
        })
        .collect();
    // Whether the reading order left region `r` between lines `from` and `to`: a line in
    // between lies outside the region.
    let strayed = |r: usize, from: usize, to: usize| {
        lines[from + 1..to]
            .iter()
            .any(|l| !centre_in(&l.bbox, &regions[r].bbox))
    };
    let breaks: Vec<bool> = {
        let mut last: Vec<Option<usize>> = vec![None; regions.len()];
        (0..lines.len())
            .map(|i| match owner[i] {
                Some(r) => {
                    let cut = columned[r] && last[r].is_some_and(|p| strayed(r, p, i));
                    last[r] = Some(i);
                    cut
                }
                None => false,
            })
            .collect()
    };
    // Units: a region's lines, or a run of consecutive lines in no region.
    let mut units: Vec<(Option<RegionKind>, Vec<Line>)> = Vec::new();
    let mut unit_of_region: Vec<Option<usize>> = vec![None; regions.len()];
    for ((line, owner), cut) in lines.into_iter().zip(owner).zip(breaks) {
        match owner {
            Some(r) => match unit_of_region[r] {
                Some(u) if !cut => units[u].1.push(line),
                _ => {
                    unit_of_region[r] = Some(units.len());
                    units.push((Some(regions[r].kind), vec![line]));
                }
            },
            None => match page_number_place(&line, page_height) {
                Some(kind) => units.push((Some(kind), vec![line])),
                None => match units.last_mut() {
                    Some((None, ls)) => ls.push(line),
                    _ => units.push((None, vec![line])),
                },
            },
        }
    }
    // Headers first, footers last, the rest in the order of their first lines. A header or
    // footer region larger than the body text is a heading (unless it is a page number): it
    // stays where it is read.
    let rank = |(kind, lines): &(Option<RegionKind>, Vec<Line>)| match kind {
        Some(RegionKind::Header | RegionKind::Footer)
            if heading_level(median_height(lines), body, lines).is_some()
                && !(lines.len() == 1 && is_page_number(&lines[0].text)) =>
        {
            1
        }
        Some(RegionKind::Header) => 0,
        Some(RegionKind::Footer) => 2,
        _ => 1,
    };
    units.sort_by_key(rank);
    let mut blocks = Vec::new();
    for (kind, lines) in units {
        if kind == Some(RegionKind::Table)
            && let Some(grid) = table::grid_from_lines(&lines)
        {
            let mut block = Block::from_lines(BlockKind::Table, lines);
            block.table = Some(grid);
            blocks.push(block);
            continue;
        }
        let mut these = paragraphs(lines, body);
        for block in &mut these {
            let h = median_height(&block.lines);
            let words: usize = block.lines.iter().map(|l| l.words.len()).sum();
            // Larger than the body text: a heading, whatever the region says (a section title
            // at the top of a page is easily taken for a running header).
            let larger = heading_level(h, body, &block.lines);
            block.kind = match kind {
                Some(RegionKind::Header | RegionKind::Footer) if larger.is_some() => block.kind,
                Some(RegionKind::Header) => BlockKind::Header,
                Some(RegionKind::Footer) => BlockKind::Footer,
                Some(RegionKind::FigureCaption | RegionKind::TableCaption) => BlockKind::Caption,
                Some(RegionKind::Equation) => BlockKind::Formula,
                Some(RegionKind::Figure) => BlockKind::Figure,
                Some(RegionKind::Table) => BlockKind::Table,
                // A title region's block is a heading when it is larger than the body text, or
                // one short line (a bold run-in title at body size); else the region is wrong.
                Some(RegionKind::Title) => match larger {
                    Some(level) => BlockKind::Heading { level },
                    None if block.lines.len() == 1 && words <= 12 => {
                        BlockKind::Heading { level: 3 }
                    }
                    None => block.kind,
                },
                Some(RegionKind::Text | RegionKind::Reference) | None => block.kind,
            };
        }
        blocks.extend(these);
    }
    blocks
}

/// Whether the centre of `w` lies inside `b`.
pub(crate) fn centre_in(w: &BBox, b: &BBox) -> bool {
    let (cx, cy) = ((w.x0 + w.x1) / 2.0, (w.y0 + w.y1) / 2.0);
    cx > b.x0 && cx < b.x1 && cy > b.y0 && cy < b.y1
}

/// Two lines side by side: level with each other, and apart by more than a line height and a
/// half (columns, not words of one row).
fn side_by_side(a: &BBox, b: &BBox, body: f32) -> bool {
    let overlap = a.y1.min(b.y1) - a.y0.max(b.y0);
    let gap = (b.x0 - a.x1).max(a.x0 - b.x1);
    overlap > 0.5 * a.height().min(b.height()) && gap > 1.5 * body
}

/// Header or footer, for a line that is only a page number in the top or bottom tenth of the page.
fn page_number_place(line: &Line, page_height: f32) -> Option<RegionKind> {
    if page_height <= 0.0 || !is_page_number(&line.text) {
        None
    } else if line.bbox.y1 <= 0.1 * page_height {
        Some(RegionKind::Header)
    } else if line.bbox.y0 >= 0.9 * page_height {
        Some(RegionKind::Footer)
    } else {
        None
    }
}

/// A block that is only a page number ("7", "- 7 -", "Page 7", "vii", "7 of 20") in the top or
/// bottom tenth of the page is a header or footer.
pub fn mark_page_numbers(blocks: &mut [Block], page_height: f32) {
    for block in blocks.iter_mut() {
        if block.lines.len() != 1 || !matches!(block.kind, BlockKind::Paragraph) {
            continue;
        }
        match page_number_place(&block.lines[0], page_height) {
            Some(RegionKind::Header) => block.kind = BlockKind::Header,
            Some(_) => block.kind = BlockKind::Footer,
            None => {}
        }
    }
}

fn is_page_number(text: &str) -> bool {
    let t = text
        .trim()
        .trim_matches(|c: char| c == '-' || c == '–' || c == '—' || c.is_whitespace());
    let t = t
        .strip_prefix("Page ")
        .or_else(|| t.strip_prefix("page "))
        .or_else(|| t.strip_prefix("p. "))
        .unwrap_or(t);
    let mut parts = t.split(" of ");
    let number = |p: &str| {
        let p = p.trim();
        (!p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
            || (!p.is_empty()
                && p.len() <= 6
                && p.chars().all(|c| matches!(c, 'i' | 'v' | 'x' | 'l' | 'c')))
    };
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), None, _) => number(a),
        (Some(a), Some(b), None) => number(a) && number(b),
        _ => false,
    }
}

/// The list marker a line starts with, and the text after it: a bullet (`•`, `◦`, `▪`, `‣`,
/// `·`, `-`, `–`, `*`, ``) followed by a space, or an item number (`1.`, `12)`, `(3)`, `a.`,
/// `(b)`, `iv.`) followed by a space and more text.
pub fn list_marker(text: &str) -> Option<(&str, &str)> {
    let t = text.trim_start();
    let (marker, rest) = t.split_once(' ')?;
    let rest = rest.trim_start();
    if rest.is_empty() {
        return None;
    }
    let bullet = matches!(
        marker,
        "•" | "◦"
            | "▪"
            | "‣"
            | "·"
            | "-"
            | "–"
            | "*"
            | "\u{f0b7}"
            | "●"
            | "○"
            | "■"
            | "□"
            | "➢"
            | "►"
    );
    let numbered = {
        let inner = marker
            .strip_prefix('(')
            .and_then(|m| m.strip_suffix(')'))
            .or_else(|| marker.strip_suffix('.'))
            .or_else(|| marker.strip_suffix(')'));
        inner.is_some_and(|n| {
            (!n.is_empty() && n.len() <= 3 && n.chars().all(|c| c.is_ascii_digit()))
                || (n.len() == 1 && n.chars().all(|c| c.is_ascii_lowercase()))
                || (!n.is_empty()
                    && n.len() <= 4
                    && n.chars().all(|c| matches!(c, 'i' | 'v' | 'x')))
        })
    };
    (bullet || numbered).then_some((marker, rest))
}

/// The area two boxes share.
pub(crate) fn intersection(a: &BBox, b: &BBox) -> f32 {
    (a.x1.min(b.x1) - a.x0.max(b.x0)).max(0.0) * (a.y1.min(b.y1) - a.y0.max(b.y0)).max(0.0)
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

    /// A figure, its caption below it, then a table with its caption above it: each caption goes
    /// to its own kind, even where the other is nearer; a caption beside nothing links nowhere.
    #[test]
    fn captions_link_to_their_table_or_figure() {
        let block = |kind, text: &str, y0: f32, y1: f32| {
            let mut b = Block::from_lines(kind, vec![line(text, 0.0, y0, y1 - y0)]);
            b.bbox = BBox::new(0.0, y0, 400.0, y1);
            b
        };
        let mut blocks = vec![
            block(BlockKind::Figure, "", 0.0, 300.0),
            block(BlockKind::Caption, "Figure 1: the set-up", 310.0, 330.0),
            block(BlockKind::Caption, "Table 1: results", 335.0, 355.0),
            block(BlockKind::Table, "a b", 360.0, 500.0),
            block(BlockKind::Caption, "Source: our survey", 2000.0, 2020.0),
        ];
        blocks[4].bbox = BBox::new(1000.0, 2000.0, 1200.0, 2020.0);
        link_captions(&mut blocks);
        let links: Vec<Option<usize>> = blocks.iter().map(|b| b.caption_of).collect();
        assert_eq!(links, vec![None, Some(0), Some(3), None, None]);
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

    fn region(kind: RegionKind, x0: f32, y0: f32, x1: f32, y1: f32) -> Region {
        Region {
            kind,
            bbox: BBox::new(x0, y0, x1, y1),
            score: 0.9,
        }
    }

    #[test]
    fn regions_give_kinds_keep_columns_together_and_put_headers_first() {
        // Lines as a row-by-row reading would give them: the two columns interleaved, the
        // running header in the middle of the list, the page number last but one.
        let lines = vec![
            line("left one", 0.0, 100.0, 20.0),
            line("right one", 300.0, 100.0, 20.0),
            line("Running head", 0.0, 10.0, 14.0),
            line("left two", 0.0, 124.0, 20.0),
            line("right two", 300.0, 124.0, 20.0),
            line("12", 250.0, 960.0, 14.0),
            line("Figure 1: a caption", 0.0, 400.0, 20.0),
        ];
        let regions = [
            region(RegionKind::Text, 0.0, 95.0, 210.0, 150.0),
            region(RegionKind::Text, 295.0, 95.0, 510.0, 150.0),
            region(RegionKind::Header, 0.0, 5.0, 210.0, 30.0),
            region(RegionKind::FigureCaption, 0.0, 395.0, 210.0, 425.0),
        ];
        let blocks = blocks_in_regions(lines, &regions, 1000.0);
        let got: Vec<(BlockKind, String)> = blocks.iter().map(|b| (b.kind, b.text())).collect();
        assert_eq!(
            got,
            [
                (BlockKind::Header, "Running head".to_string()),
                (BlockKind::Paragraph, "left one\nleft two".to_string()),
                (BlockKind::Paragraph, "right one\nright two".to_string()),
                (BlockKind::Caption, "Figure 1: a caption".to_string()),
                (BlockKind::Footer, "12".to_string()),
            ]
        );
    }

    #[test]
    fn a_region_around_several_columns_is_read_column_by_column() {
        // Columns in reading order, each under its heading; the layout model put one figure
        // box round both columns' text and called the second heading a running header.
        let lines = vec![
            line("Why", 0.0, 10.0, 40.0),
            line("First", 0.0, 80.0, 40.0),
            line("first one", 0.0, 150.0, 20.0),
            line("first two", 0.0, 174.0, 20.0),
            line("Second", 300.0, 80.0, 40.0),
            line("second one", 300.0, 150.0, 20.0),
            line("second two", 300.0, 174.0, 20.0),
            line("second three", 300.0, 198.0, 20.0),
        ];
        let regions = [
            region(RegionKind::Header, 0.0, 5.0, 210.0, 55.0),
            region(RegionKind::Title, 0.0, 75.0, 210.0, 125.0),
            region(RegionKind::Header, 295.0, 75.0, 510.0, 125.0),
            region(RegionKind::Figure, 0.0, 145.0, 510.0, 225.0),
        ];
        let blocks = blocks_in_regions(lines, &regions, 1000.0);
        let got: Vec<String> = blocks.iter().map(|b| b.text()).collect();
        assert_eq!(
            got,
            [
                "Why",
                "First",
                "first one\nfirst two",
                "Second",
                "second one\nsecond two\nsecond three"
            ]
        );
        assert!(matches!(blocks[3].kind, BlockKind::Heading { .. }));
    }

    #[test]
    fn bullets_and_numbers_start_list_items_that_keep_their_indented_lines() {
        let lines = vec![
            line("Steps:", 0.0, 0.0, 20.0),
            line("1. Open the valve", 0.0, 24.0, 20.0),
            line("slowly.", 20.0, 48.0, 20.0),
            line("2. Close it", 0.0, 72.0, 20.0),
            line("• a bullet", 0.0, 96.0, 20.0),
            line("Then the text goes on.", 0.0, 120.0, 20.0),
        ];
        let blocks = blocks_from_lines(lines);
        let got: Vec<(BlockKind, String)> = blocks.iter().map(|b| (b.kind, b.text())).collect();
        assert_eq!(
            got,
            [
                (BlockKind::Paragraph, "Steps:".to_string()),
                (
                    BlockKind::ListItem,
                    "1. Open the valve\nslowly.".to_string()
                ),
                (BlockKind::ListItem, "2. Close it".to_string()),
                (BlockKind::ListItem, "• a bullet".to_string()),
                (BlockKind::Paragraph, "Then the text goes on.".to_string()),
            ]
        );
        for no in ["2024. A year", "1.5 litres", "-", "Total 12", "e.g. this"] {
            assert!(list_marker(no).is_none(), "{no}");
        }
    }

    #[test]
    fn page_numbers_are_told_from_numbers_in_the_text() {
        for yes in ["7", "- 7 -", "Page 7", "vii", "7 of 20", "page 12 of 30"] {
            assert!(is_page_number(yes), "{yes}");
        }
        for no in ["7 apples", "2024-117", "Total 12", "", "Chapter 7"] {
            assert!(!is_page_number(no), "{no}");
        }
    }
}
