//! Ruled tables of born-digital pages: grids drawn with rules, read from the page's vector
//! graphics (the text layer's [`rules`](crate::decode::TextLayer::rules)) instead of its image.
//!
//! Rules are sorted into horizontal and vertical ones and rules that touch are grouped; a group's
//! rows lie between the positions of its horizontal rules and its columns between those of its
//! vertical ones, the group's outer extent closing a frame left open. Two neighbouring cells of
//! that grid with no rule between them are one spanning cell. Outer rows and columns without
//! text are dropped, and a grid is kept as a table only when its text sits in it the way a
//! table's does: in at least two rows and two columns, filling a fair share of its cells, and
//! hardly ever crossed by one of its rules (text that rules cross is prose in a frame, or a chart).
//! Entries set one per line in a ruled row, lined up across its cells, become rows of their own.
//!
//! Tables of shaded cells parted by white are found the same way from the edges of the page's
//! [`shading`](crate::decode::TextLayer::shading), where no table of rules is and unless the
//! shaded grid is a patch of a larger table (a heat map, zebra rows under a plain header).

use super::table_model::{CellBox, TableStructure};
use super::{centre_in, intersection};
use crate::document::{BBox, Block, BlockKind, Line, Table, Word};

/// Rules thicker than this (in points) are shapes, not rules.
const MAX_THICKNESS_PT: f32 = 3.0;
/// Rules shorter than this (in points) are glyph-sized marks, not rules.
const MIN_LENGTH_PT: f32 = 4.0;
/// Rule positions closer than this (in points) are one boundary (double rules, a rule drawn
/// twice, cell borders drawn cell by cell); rules this close touch.
const SNAP_PT: f32 = 3.0;
/// A grid is set aside when more than one cell in this many merges words that are columns apart.
const MAX_MERGED_SHARE: usize = 10;
/// Rules considered at most, each way, for grouping (a hostile page may draw a mesh).
const MAX_RULES: usize = 4_000;

/// A horizontal rule (`pos` its y, running from `from` to `to` in x) or a vertical one
/// (`pos` its x, from `from` to `to` in y).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rule {
    pos: f32,
    from: f32,
    to: f32,
}

/// A grid found among the rules: its box and its cells (row and column spans included), in the
/// rules' pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub bbox: BBox,
    pub structure: TableStructure,
}

/// The grids the rules draw (`px_per_pt`: pixels per point of the page), before any text is
/// looked at: every group of touching rules with at least two rows and two columns.
pub fn find_grids(rules: &[BBox], px_per_pt: f32) -> Vec<Grid> {
    let thick = MAX_THICKNESS_PT * px_per_pt;
    let long = MIN_LENGTH_PT * px_per_pt;
    let snap = SNAP_PT * px_per_pt;
    let (mut hs, mut vs) = (Vec::new(), Vec::new());
    for r in rules {
        let (w, h) = (r.width(), r.height());
        if !(w.is_finite() && h.is_finite()) {
            continue;
        }
        if h <= thick && w >= long.max(2.0 * h) {
            hs.push(Rule {
                pos: (r.y0 + r.y1) / 2.0,
                from: r.x0,
                to: r.x1,
            });
        } else if w <= thick && h >= long.max(2.0 * w) {
            vs.push(Rule {
                pos: (r.x0 + r.x1) / 2.0,
                from: r.y0,
                to: r.y1,
            });
        }
    }
    let (hs, vs) = (join(hs, snap), join(vs, snap));
    if hs.len() > MAX_RULES || vs.len() > MAX_RULES {
        return Vec::new();
    }
    // Groups of touching rules: horizontal k is node k, vertical k is node hs.len() + k.
    let mut groups = UnionFind::new(hs.len() + vs.len());
    for (i, h) in hs.iter().enumerate() {
        for (j, v) in vs.iter().enumerate() {
            if touches(h, v, snap) {
                groups.union(i, hs.len() + j);
            }
        }
    }
    let mut members: Vec<(Vec<Rule>, Vec<Rule>)> = vec![Default::default(); hs.len() + vs.len()];
    for (i, h) in hs.iter().enumerate() {
        members[groups.find(i)].0.push(*h);
    }
    for (j, v) in vs.iter().enumerate() {
        members[groups.find(hs.len() + j)].1.push(*v);
    }
    members
        .into_iter()
        .filter(|(h, v)| !h.is_empty() && !v.is_empty() && h.len() + v.len() >= 4)
        .filter_map(|(h, v)| grid(&h, &v, snap))
        .collect()
}

/// The ruled tables of a page: the grids of [`find_grids`] that hold text as a table does,
/// filled with the words whose centre lies inside them. Returns the table blocks and the page's
/// lines without those words (a line partly inside a table keeps its other words).
///
/// Tables of shaded cells parted by white have no rules: the edges of the `shading` boxes stand
/// for them where no table of rules was found (shading mixed with rules is set off from them by
/// a point or two, and would add slivers of rows and columns).
pub fn ruled_tables(
    lines: Vec<Line>,
    rules: &[BBox],
    shading: &[BBox],
    px_per_pt: f32,
) -> (Vec<Block>, Vec<Line>) {
    if (rules.is_empty() && shading.is_empty()) || lines.is_empty() {
        return (Vec::new(), lines);
    }
    let edges: Vec<BBox> = shading
        .iter()
        .flat_map(|r| {
            let e = 0.5;
            [
                BBox::new(r.x0, r.y0 - e, r.x1, r.y0 + e),
                BBox::new(r.x0, r.y1 - e, r.x1, r.y1 + e),
                BBox::new(r.x0 - e, r.y0, r.x0 + e, r.y1),
                BBox::new(r.x1 - e, r.y0, r.x1 + e, r.y1),
            ]
        })
        .collect();
    // Which table (if any) takes each word, by line and word index.
    let mut owner: Vec<Vec<Option<usize>>> =
        lines.iter().map(|l| vec![None; l.words.len()]).collect();
    // Each table with its box (its cells', after trimming).
    let mut tables: Vec<(Table, BBox)> = Vec::new();
    for (shaded, grid) in find_grids(rules, px_per_pt)
        .into_iter()
        .map(|g| (false, g))
        .chain(find_grids(&edges, px_per_pt).into_iter().map(|g| (true, g)))
    {
        if shaded
            && tables
                .iter()
                .any(|(_, b)| intersection(b, &grid.bbox) > 0.0)
        {
            continue;
        }
        let mut inside = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            for (k, w) in line.words.iter().enumerate() {
                if owner[i][k].is_none() && centre_in(&w.bbox, &grid.bbox) {
                    inside.push((i, k));
                }
            }
        }
        if shaded && text_beside(&lines, &grid) {
            continue;
        }
        let words: Vec<Word> = inside
            .iter()
            .map(|&(i, k)| lines[i].words[k].clone())
            .collect();
        let Some(table) = table_in_grid(&grid.structure, &words) else {
            continue;
        };
        // The trimmed table may leave words of dropped outer rows or columns outside it.
        let bbox = BBox::enclosing(table.cells.iter().map(|c| &c.bbox)).unwrap_or(grid.bbox);
        for (i, k) in inside {
            if centre_in(&lines[i].words[k].bbox, &bbox) {
                owner[i][k] = Some(tables.len());
            }
        }
        tables.push((table, bbox));
    }
    if tables.is_empty() {
        return (Vec::new(), lines);
    }
    let mut table_lines: Vec<Vec<Line>> = vec![Vec::new(); tables.len()];
    let mut rest = Vec::new();
    for (line, owners) in lines.into_iter().zip(owner) {
        if owners.iter().all(Option::is_none) {
            rest.push(line);
            continue;
        }
        let mut parts: Vec<(Option<usize>, Vec<Word>)> = Vec::new();
        for (word, o) in line.words.into_iter().zip(owners) {
            match parts.iter_mut().find(|(p, _)| *p == o) {
                Some((_, words)) => words.push(word),
                None => parts.push((o, vec![word])),
            }
        }
        for (o, words) in parts {
            let part = Line::from_words(words);
            match o {
                Some(t) => table_lines[t].push(part),
                None => rest.push(part),
            }
        }
    }
    let blocks = tables
        .into_iter()
        .zip(table_lines)
        .map(|((table, bbox), lines)| {
            let mut block = Block::from_lines(BlockKind::Table, lines);
            block.bbox = block.bbox.union(&bbox);
            block.table = Some(table);
            block
        })
        .collect();
    (blocks, rest)
}

/// Whether the grid is a patch of a larger table (cells shaded as a heat map, a shaded column,
/// shaded rows under a plain header): words lie beside it, level with it and closer than it is
/// wide; or the words set level right above or below it (within a row and a half) sit in two
/// or more of its columns, hardly ever crossing a column's edge, as a header row's do (a
/// paragraph's words cross them).
fn text_beside(lines: &[Line], grid: &Grid) -> bool {
    let b = &grid.bbox;
    let row = grid
        .structure
        .cells
        .iter()
        .filter(|c| c.row_span == 1)
        .map(|c| c.bbox.height())
        .fold(f32::INFINITY, f32::min)
        .min(b.height());
    let words = || lines.iter().flat_map(|l| &l.words);
    let level = words().any(|w| {
        let cy = (w.bbox.y0 + w.bbox.y1) / 2.0;
        let gap = (b.x0 - w.bbox.x1).max(w.bbox.x0 - b.x1);
        cy > b.y0 && cy < b.y1 && gap > 0.0 && gap < b.width()
    });
    if level {
        return true;
    }
    let near: Vec<&Word> = words()
        .filter(|w| {
            let cx = (w.bbox.x0 + w.bbox.x1) / 2.0;
            let gap = (b.y0 - w.bbox.y1).max(w.bbox.y0 - b.y1);
            // Set level (turned headings are taller than a row).
            cx > b.x0 && cx < b.x1 && gap > 0.0 && gap < 1.5 * row && w.bbox.height() <= row
        })
        .collect();
    let mut edges: Vec<f32> = grid
        .structure
        .cells
        .iter()
        .flat_map(|c| [c.bbox.x0, c.bbox.x1])
        .filter(|&x| x > b.x0 + 1.0 && x < b.x1 - 1.0)
        .collect();
    edges.sort_by(f32::total_cmp);
    edges.dedup_by(|a, b| (*a - *b).abs() < 1.0);
    let crossed = near
        .iter()
        .filter(|w| {
            edges
                .iter()
                .any(|&x| x > w.bbox.x0 + 1.0 && x < w.bbox.x1 - 1.0)
        })
        .count();
    let mut columns: Vec<usize> = near
        .iter()
        .map(|w| {
            let cx = (w.bbox.x0 + w.bbox.x1) / 2.0;
            edges.iter().filter(|&&x| x < cx).count()
        })
        .collect();
    columns.sort_unstable();
    columns.dedup();
    crossed * 4 <= near.len() && columns.len() >= 2
}

/// `structure` filled with `words` (those inside its box), its outer rows and columns without
/// text dropped, when the text sits in it as in a table; `None` otherwise.
fn table_in_grid(structure: &TableStructure, words: &[Word]) -> Option<Table> {
    // Words set apart in columns inside one cell: the rules draw only part of the structure
    // (a frame, a ruled header over rows ruled apart alone), which the image model reads better.
    if structure.merged_cells(words) * MAX_MERGED_SHARE > structure.cells.len() {
        return None;
    }
    let filled = split_stacked_rows(structure, words).fill(words);
    let full: Vec<bool> = filled
        .cells
        .iter()
        .map(|c| !c.text.trim().is_empty())
        .collect();
    // The rows and columns some filled cell covers, to trim the empty outer ones.
    let used = |row: bool, k: usize| {
        filled.cells.iter().zip(&full).any(|(c, &f)| {
            let (start, span) = if row {
                (c.row, c.row_span)
            } else {
                (c.column, c.column_span)
            };
            f && start <= k && k < start + span
        })
    };
    let r0 = (0..filled.rows).find(|&r| used(true, r))?;
    let r1 = (0..filled.rows).rev().find(|&r| used(true, r))?;
    let c0 = (0..filled.columns).find(|&c| used(false, c))?;
    let c1 = (0..filled.columns).rev().find(|&c| used(false, c))?;
    let (rows, columns) = (r1 + 1 - r0, c1 + 1 - c0);
    let mut cells = Vec::new();
    for (cell, &f) in filled.cells.iter().zip(&full) {
        let (a, b) = (cell.row.max(r0), (cell.row + cell.row_span).min(r1 + 1));
        let (c, d) = (
            cell.column.max(c0),
            (cell.column + cell.column_span).min(c1 + 1),
        );
        if a >= b || c >= d {
            continue;
        }
        let mut cell = cell.clone();
        cell.row = a - r0;
        cell.row_span = b - a;
        cell.column = c - c0;
        cell.column_span = d - c;
        if !f {
            cell.text.clear();
        }
        cells.push(cell);
    }
    // The header: the first row, and the rows its cells span down over (a header cell spanning
    // two rows above a row of sub-headings), unless that is half the table (a row label).
    let spanned = cells
        .iter()
        .filter(|c| c.row == 0)
        .map(|c| c.row_span)
        .max()
        .unwrap_or(1);
    let header_rows = if spanned * 2 <= rows { spanned } else { 1 };
    for cell in &mut cells {
        cell.header = cell.row < header_rows && rows > 1;
    }
    let nonempty: Vec<_> = cells.iter().filter(|c| !c.text.is_empty()).collect();
    let distinct = |key: fn(&&crate::document::Cell) -> usize| {
        let mut k: Vec<usize> = nonempty.iter().map(key).collect();
        k.sort_unstable();
        k.dedup();
        k.len()
    };
    if rows < 2
        || columns < 2
        || nonempty.len() < 3
        || nonempty.len() * 5 < cells.len()
        || distinct(|c| c.row) < 2
        || distinct(|c| c.column) < 2
    {
        return None;
    }
    // Words a rule of the grid cuts through, more than a quarter of their width on each side.
    let cut = words
        .iter()
        .filter(|w| {
            cells.iter().any(|c| {
                let (x0, x1) = (w.bbox.x0, w.bbox.x1);
                let margin = 0.25 * (x1 - x0);
                let cy = (w.bbox.y0 + w.bbox.y1) / 2.0;
                cy > c.bbox.y0
                    && cy < c.bbox.y1
                    && [c.bbox.x0, c.bbox.x1]
                        .iter()
                        .any(|&x| x > x0 + margin && x < x1 - margin)
            })
        })
        .count();
    if cut * 10 > words.len() {
        return None;
    }
    Some(Table {
        rows,
        columns,
        cells,
    })
}

/// The centre height of a word.
fn mid_y(w: &Word) -> f32 {
    (w.bbox.y0 + w.bbox.y1) / 2.0
}

/// Rows the rules leave unruled: a grid row whose filled cells each hold several lines that line
/// up with the other cells' (entries set one per line, without rules between them) becomes one
/// row per line. A gap between lines counts when at least two cells of the row are filled, every
/// filled one (spanning no other row) has text above and below it, no word crosses it, and every
/// such cell's line just above it is short: wrapped text fills most of its cell's width, an entry
/// of a column of entries does not.
fn split_stacked_rows(s: &TableStructure, words: &[Word]) -> TableStructure {
    let assigned = s.assign(words);
    let mut cuts: Vec<Vec<f32>> = vec![Vec::new(); s.rows];
    for (row, cuts) in cuts.iter_mut().enumerate() {
        let cells: Vec<(&CellBox, &Vec<&Word>)> = s
            .cells
            .iter()
            .zip(&assigned)
            .filter(|(c, w)| c.row == row && c.row_span == 1 && !w.is_empty())
            .collect();
        if cells.len() < 2 {
            continue;
        }
        // The row's text bands (words shrunk a little: lines may touch) and the gaps between.
        let mut bands: Vec<(f32, f32)> = cells
            .iter()
            .flat_map(|(_, ws)| ws.iter())
            .map(|w| {
                let m = 0.1 * w.bbox.height();
                (w.bbox.y0 + m, w.bbox.y1 - m)
            })
            .collect();
        bands.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut end = bands[0].1;
        for &(a, b) in &bands[1..] {
            if a > end {
                let g = (end + a) / 2.0;
                let straddled = cells.iter().all(|(_, ws)| {
                    ws.iter().any(|w| mid_y(w) < g) && ws.iter().any(|w| mid_y(w) > g)
                });
                let short = cells.iter().all(|(c, ws)| {
                    let above: Vec<&&Word> = ws.iter().filter(|w| mid_y(w) < g).collect();
                    let last = above.iter().map(|w| mid_y(w)).fold(f32::MIN, f32::max);
                    let line = above
                        .iter()
                        .filter(|w| last - mid_y(w) < 0.5 * w.bbox.height())
                        .map(|w| (w.bbox.x0, w.bbox.x1));
                    let (x0, x1) = line.fold((f32::MAX, f32::MIN), |(a, b), (x0, x1)| {
                        (a.min(x0), b.max(x1))
                    });
                    x1 - x0 < 0.6 * c.bbox.width()
                });
                if straddled && short {
                    cuts.push(g);
                }
            }
            end = end.max(b);
        }
    }
    if cuts.iter().all(Vec::is_empty) {
        return s.clone();
    }
    // The new index of each old row's first row (and the new row count last).
    let mut first = Vec::with_capacity(s.rows + 1);
    let mut n = 0;
    for c in &cuts {
        first.push(n);
        n += c.len() + 1;
    }
    first.push(n);
    let mut cells = Vec::new();
    for c in &s.cells {
        let (r0, r1) = (c.row, c.row + c.row_span);
        if c.row_span == 1 && !cuts[r0].is_empty() {
            let mut ys = vec![c.bbox.y0];
            ys.extend(&cuts[r0]);
            ys.push(c.bbox.y1);
            for (k, y) in ys.windows(2).enumerate() {
                cells.push(CellBox {
                    row: first[r0] + k,
                    row_span: 1,
                    bbox: BBox::new(c.bbox.x0, y[0], c.bbox.x1, y[1]),
                    ..c.clone()
                });
            }
        } else {
            cells.push(CellBox {
                row: first[r0],
                row_span: first[r1] - first[r0],
                ..c.clone()
            });
        }
    }
    cells.sort_by_key(|c| (c.row, c.column));
    TableStructure {
        rows: n,
        cells,
        ..s.clone()
    }
}

/// Joins rules on one line (positions within `snap`) whose extents overlap or nearly meet.
fn join(mut rules: Vec<Rule>, snap: f32) -> Vec<Rule> {
    rules.sort_by(|a, b| a.pos.total_cmp(&b.pos).then(a.from.total_cmp(&b.from)));
    let mut lines: Vec<Vec<Rule>> = Vec::new();
    for r in rules {
        match lines.last_mut() {
            Some(line) if r.pos - line[0].pos <= snap / 2.0 => line.push(r),
            _ => lines.push(vec![r]),
        }
    }
    let mut out = Vec::new();
    for mut line in lines {
        line.sort_by(|a, b| a.from.total_cmp(&b.from));
        let mut current: Option<(Rule, usize)> = None;
        for r in line {
            current = match current {
                Some((c, n)) if r.from <= c.to + snap => Some((
                    Rule {
                        pos: c.pos + (r.pos - c.pos) / (n + 1) as f32,
                        from: c.from,
                        to: c.to.max(r.to),
                    },
                    n + 1,
                )),
                Some((c, _)) => {
                    out.push(c);
                    Some((r, 1))
                }
                None => Some((r, 1)),
            };
        }
        out.extend(current.map(|(c, _)| c));
    }
    out
}

/// A horizontal and a vertical rule meet (or nearly do).
fn touches(h: &Rule, v: &Rule, snap: f32) -> bool {
    v.pos >= h.from - snap && v.pos <= h.to + snap && h.pos >= v.from - snap && h.pos <= v.to + snap
}

/// The grid of one group of touching rules, with at least two rows and two columns.
fn grid(hs: &[Rule], vs: &[Rule], snap: f32) -> Option<Grid> {
    let x_extent = (
        hs.iter().map(|r| r.from).fold(f32::INFINITY, f32::min),
        hs.iter().map(|r| r.to).fold(f32::NEG_INFINITY, f32::max),
    );
    let y_extent = (
        vs.iter().map(|r| r.from).fold(f32::INFINITY, f32::min),
        vs.iter().map(|r| r.to).fold(f32::NEG_INFINITY, f32::max),
    );
    let xs = boundaries(vs.iter().map(|r| r.pos), x_extent, snap);
    let ys = boundaries(hs.iter().map(|r| r.pos), y_extent, snap);
    let (rows, columns) = (ys.len().checked_sub(1)?, xs.len().checked_sub(1)?);
    if rows < 2 || columns < 2 || rows * columns > 10_000 {
        return None;
    }
    // Whether a rule runs along boundary `at` over most of the span from `a` to `b`.
    let ruled = |rules: &[Rule], at: f32, a: f32, b: f32| {
        rules
            .iter()
            .any(|r| (r.pos - at).abs() <= snap && r.to.min(b) - r.from.max(a) >= 0.5 * (b - a))
    };
    let mut cells = UnionFind::new(rows * columns);
    for i in 0..rows {
        for j in 0..columns {
            if j + 1 < columns && !ruled(vs, xs[j + 1], ys[i], ys[i + 1]) {
                cells.union(i * columns + j, i * columns + j + 1);
            }
            if i + 1 < rows && !ruled(hs, ys[i + 1], xs[j], xs[j + 1]) {
                cells.union(i * columns + j, (i + 1) * columns + j);
            }
        }
    }
    // Each group of joined grid cells: its first and last rows and columns, and how many cells
    // it has.
    type Span = (usize, usize, usize, usize, usize);
    let mut spans: Vec<Option<Span>> = vec![None; rows * columns];
    for i in 0..rows {
        for j in 0..columns {
            let g = cells.find(i * columns + j);
            let s = spans[g].get_or_insert((i, i, j, j, 0));
            *s = (s.0.min(i), s.1.max(i), s.2.min(j), s.3.max(j), s.4 + 1);
        }
    }
    let mut out = Vec::new();
    let cell = |r0: usize, r1: usize, c0: usize, c1: usize| CellBox {
        row: r0,
        column: c0,
        row_span: r1 + 1 - r0,
        column_span: c1 + 1 - c0,
        header: false,
        bbox: BBox::new(xs[c0], ys[r0], xs[c1 + 1], ys[r1 + 1]),
    };
    for i in 0..rows {
        for j in 0..columns {
            let g = cells.find(i * columns + j);
            let Some((r0, r1, c0, c1, n)) = spans[g] else {
                continue;
            };
            if n == (r1 + 1 - r0) * (c1 + 1 - c0) {
                // A rectangle: one spanning cell, emitted at its top-left grid cell.
                if (i, j) == (r0, c0) {
                    out.push(cell(r0, r1, c0, c1));
                }
            } else {
                // Not a rectangle (rules ending mid-cell): its grid cells stay apart.
                out.push(cell(i, i, j, j));
            }
        }
    }
    if out.len() < 2 {
        return None;
    }
    out.sort_by_key(|c| (c.row, c.column));
    Some(Grid {
        bbox: BBox::new(xs[0], ys[0], xs[columns], ys[rows]),
        structure: TableStructure {
            rows,
            columns,
            cells: out,
            score: 1.0,
            complete: true,
        },
    })
}

/// Sorted boundary positions: the rules' positions and the group's extent, those within `snap`
/// of each other taken as one (their mean).
fn boundaries(positions: impl Iterator<Item = f32>, extent: (f32, f32), snap: f32) -> Vec<f32> {
    let mut all: Vec<f32> = positions
        .chain([extent.0, extent.1])
        .filter(|p| p.is_finite())
        .collect();
    all.sort_by(f32::total_cmp);
    let mut clusters: Vec<(f32, f32, usize)> = Vec::new();
    for p in all {
        match clusters.last_mut() {
            Some((last, sum, n)) if p - *last <= snap => {
                *last = p;
                *sum += p;
                *n += 1;
            }
            _ => clusters.push((p, p, 1)),
        }
    }
    clusters
        .into_iter()
        .map(|(_, sum, n)| sum / n as f32)
        .collect()
}

/// Disjoint sets over `0..n`, with path halving.
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.parent[a.max(b)] = a.min(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stroke one pixel wide from (x0, y0) to (x1, y1), as the text device records it.
    fn rule(x0: f32, y0: f32, x1: f32, y1: f32) -> BBox {
        if y0 == y1 {
            BBox::new(x0, y0 - 0.5, x1, y0 + 0.5)
        } else {
            BBox::new(x0 - 0.5, y0, x0 + 0.5, y1)
        }
    }

    fn word(text: &str, x: f32, y: f32) -> Word {
        Word {
            text: text.into(),
            bbox: BBox::new(x, y, x + 8.0 * text.len() as f32, y + 12.0),
            confidence: 1.0,
        }
    }

    fn line(words: Vec<Word>) -> Line {
        Line::from_words(words)
    }

    /// A line of words at height `y`, each at its x.
    fn at(y: f32, words: &[(&str, f32)]) -> Line {
        line(words.iter().map(|&(t, x)| word(t, x, y)).collect())
    }

    /// A grid from x 100 to 400 (columns at 200 and 300) and y 100 to 190 (rows at 130, 160);
    /// the header row has no rule between its last two columns.
    fn grid_rules() -> Vec<BBox> {
        let mut r = Vec::new();
        for y in [100.0, 130.0, 160.0, 190.0] {
            r.push(rule(100.0, y, 400.0, y));
        }
        r.push(rule(100.0, 100.0, 100.0, 190.0));
        r.push(rule(200.0, 100.0, 200.0, 190.0));
        r.push(rule(300.0, 130.0, 300.0, 190.0));
        r.push(rule(400.0, 100.0, 400.0, 190.0));
        r
    }

    fn cells(table: &Table) -> Vec<(usize, usize, usize, usize, String)> {
        table
            .cells
            .iter()
            .map(|c| (c.row, c.column, c.row_span, c.column_span, c.text.clone()))
            .collect()
    }

    #[test]
    fn rules_make_a_grid_with_spans() {
        let grids = find_grids(&grid_rules(), 1.0);
        assert_eq!(grids.len(), 1);
        let s = &grids[0].structure;
        assert_eq!((s.rows, s.columns), (3, 3));
        let spans: Vec<_> = s
            .cells
            .iter()
            .map(|c| (c.row, c.column, c.row_span, c.column_span))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, 0, 1, 1),
                (0, 1, 1, 2),
                (1, 0, 1, 1),
                (1, 1, 1, 1),
                (1, 2, 1, 1),
                (2, 0, 1, 1),
                (2, 1, 1, 1),
                (2, 2, 1, 1),
            ]
        );
        assert_eq!(grids[0].bbox, BBox::new(100.0, 100.0, 400.0, 190.0));
    }

    #[test]
    fn rules_drawn_cell_by_cell_and_open_frames_still_make_one_grid() {
        // Each cell its own rectangle (edges drawn twice, a pixel apart), and no outer frame
        // on the left: the horizontal rules' extent closes it.
        let mut r = Vec::new();
        for (i, x) in [100.0f32, 200.0, 300.0].iter().enumerate() {
            for y in [100.0f32, 130.0] {
                let d = i as f32 * 0.7;
                r.push(rule(x + d, y, x + 100.0, y));
                r.push(rule(x + d, y + 30.0, x + 100.0, y + 30.0));
                if *x > 100.0 {
                    r.push(rule(x + d, y, x + d, y + 30.0));
                }
                r.push(rule(x + 100.0, y, x + 100.0, y + 30.0));
            }
        }
        let grids = find_grids(&r, 1.0);
        assert_eq!(grids.len(), 1);
        let s = &grids[0].structure;
        assert_eq!((s.rows, s.columns, s.cells.len()), (2, 3, 6));
    }

    #[test]
    fn a_ruled_table_takes_its_words_and_leaves_the_rest() {
        let lines = vec![
            at(60.0, &[("Intro", 100.0)]),
            at(108.0, &[("Name", 110.0), ("Scores", 210.0)]),
            line(vec![
                word("Ann", 110.0, 138.0),
                word("12", 210.0, 138.0),
                word("14", 310.0, 138.0),
                // A word beside the table on the same text line stays outside it.
                word("margin", 420.0, 138.0),
            ]),
            at(168.0, &[("Bob", 110.0), ("9", 210.0), ("11", 310.0)]),
            at(220.0, &[("After", 100.0)]),
        ];
        let (tables, rest) = ruled_tables(lines, &grid_rules(), &[], 1.0);
        assert_eq!(tables.len(), 1);
        let table = tables[0].table.as_ref().expect("a table");
        assert_eq!(tables[0].kind, BlockKind::Table);
        assert_eq!(
            cells(table),
            vec![
                (0, 0, 1, 1, "Name".into()),
                (0, 1, 1, 2, "Scores".into()),
                (1, 0, 1, 1, "Ann".into()),
                (1, 1, 1, 1, "12".into()),
                (1, 2, 1, 1, "14".into()),
                (2, 0, 1, 1, "Bob".into()),
                (2, 1, 1, 1, "9".into()),
                (2, 2, 1, 1, "11".into()),
            ]
        );
        assert!(table.cells.iter().all(|c| c.header == (c.row == 0)));
        let rest: Vec<&str> = rest.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(rest, vec!["Intro", "margin", "After"]);
    }

    #[test]
    fn empty_outer_rows_and_columns_are_dropped() {
        // A rule running far right of the table adds an empty column; an empty last row.
        let mut r = grid_rules();
        r.push(rule(100.0, 220.0, 600.0, 220.0));
        r.push(rule(400.0, 190.0, 400.0, 220.0));
        let lines = vec![
            at(108.0, &[("a", 110.0), ("b", 210.0)]),
            at(138.0, &[("c", 110.0), ("d", 210.0), ("e", 310.0)]),
            at(168.0, &[("f", 110.0), ("g", 310.0)]),
        ];
        let (tables, _) = ruled_tables(lines, &r, &[], 1.0);
        let table = tables[0].table.as_ref().expect("a table");
        assert_eq!((table.rows, table.columns), (3, 3));
    }

    #[test]
    fn prose_in_a_frame_or_crossed_by_rules_is_no_table() {
        // A boxed paragraph split by a rule through its words.
        let mut r = vec![
            rule(100.0, 100.0, 400.0, 100.0),
            rule(100.0, 160.0, 400.0, 160.0),
            rule(100.0, 190.0, 400.0, 190.0),
            rule(100.0, 100.0, 100.0, 190.0),
            rule(400.0, 100.0, 400.0, 190.0),
        ];
        r.push(rule(250.0, 100.0, 250.0, 190.0));
        let lines = vec![
            at(
                108.0,
                &[("Prose", 110.0), ("crossing", 220.0), ("over", 300.0)],
            ),
            at(128.0, &[("the", 110.0), ("boundary", 220.0)]),
            at(168.0, &[("and", 110.0), ("more", 230.0)]),
        ];
        let (tables, rest) = ruled_tables(lines.clone(), &r, &[], 1.0);
        assert!(tables.is_empty());
        assert_eq!(rest, lines);
        // Columns ruled only at the frame: words set apart inside one cell.
        let r = vec![
            rule(100.0, 100.0, 400.0, 100.0),
            rule(100.0, 130.0, 400.0, 130.0),
            rule(100.0, 160.0, 400.0, 160.0),
            rule(100.0, 100.0, 100.0, 160.0),
            rule(400.0, 100.0, 400.0, 160.0),
            rule(250.0, 100.0, 250.0, 130.0),
        ];
        let lines = vec![
            at(108.0, &[("Head", 110.0), ("Other", 260.0)]),
            at(138.0, &[("x", 110.0), ("1", 200.0), ("2", 330.0)]),
        ];
        assert!(ruled_tables(lines, &r, &[], 1.0).0.is_empty());
    }

    #[test]
    fn entries_stacked_in_one_ruled_row_become_rows() {
        // Columns ruled, body rows not: three entries a line each in every cell.
        let r = vec![
            rule(100.0, 100.0, 400.0, 100.0),
            rule(100.0, 130.0, 400.0, 130.0),
            rule(100.0, 220.0, 400.0, 220.0),
            rule(100.0, 100.0, 100.0, 220.0),
            rule(200.0, 100.0, 200.0, 220.0),
            rule(300.0, 100.0, 300.0, 220.0),
            rule(400.0, 100.0, 400.0, 220.0),
        ];
        let mut lines = vec![at(108.0, &[("Age", 110.0), ("A", 210.0), ("B", 310.0)])];
        for (k, (label, a, b)) in [("3y", "15", "10"), ("4y", "12", "8"), ("All", "27", "18")]
            .into_iter()
            .enumerate()
        {
            let y = 138.0 + 25.0 * k as f32;
            lines.push(line(vec![
                word(label, 110.0, y),
                word(a, 210.0, y),
                word(b, 310.0, y),
            ]));
        }
        let (tables, _) = ruled_tables(lines, &r, &[], 1.0);
        let table = tables[0].table.as_ref().expect("a table");
        assert_eq!((table.rows, table.columns), (4, 3));
        let row = |r: usize| -> Vec<String> {
            table
                .cells
                .iter()
                .filter(|c| c.row == r)
                .map(|c| c.text.clone())
                .collect()
        };
        assert_eq!(row(2), vec!["4y", "12", "8"]);
        // Wrapped text in a cell (its line fills the cell) does not split a row.
        let lines = vec![
            at(108.0, &[("Item", 110.0), ("Note", 210.0)]),
            at(
                138.0,
                &[("Fees", 110.0), ("abcdefghijk", 205.0), ("long", 310.0)],
            ),
            at(163.0, &[("and", 110.0), ("wrapped", 210.0), ("x", 310.0)]),
        ];
        let (tables, _) = ruled_tables(lines, &r, &[], 1.0);
        let table = tables[0].table.as_ref().expect("a table");
        assert_eq!(table.rows, 2);
    }

    #[test]
    fn shaded_cells_parted_by_white_make_a_table() {
        // Three rows of two shaded cells, 2 px of white between them, no rules at all.
        let mut shading = Vec::new();
        for r in 0..3 {
            let y = 100.0 + 30.0 * r as f32;
            shading.push(BBox::new(100.0, y, 198.0, y + 28.0));
            shading.push(BBox::new(200.0, y, 298.0, y + 28.0));
        }
        let lines: Vec<Line> = [("Program", "Budget"), ("Data", "$0.9M"), ("Total", "$8M")]
            .iter()
            .enumerate()
            .map(|(r, (a, b))| {
                let y = 108.0 + 30.0 * r as f32;
                line(vec![word(a, 105.0, y), word(b, 205.0, y)])
            })
            .collect();
        let (tables, rest) = ruled_tables(lines.clone(), &[], &shading, 1.0);
        assert!(rest.is_empty());
        let table = tables[0].table.as_ref().expect("a table");
        assert_eq!((table.rows, table.columns), (3, 2));
        assert_eq!(table.cells[3].text, "$0.9M");
        // Where rules draw the table, shading set a little off them adds nothing.
        let shifted: Vec<BBox> = shading
            .iter()
            .map(|b| BBox::new(b.x0 + 5.0, b.y0 + 4.0, b.x1 + 5.0, b.y1 + 4.0))
            .collect();
        let words = vec![
            at(108.0, &[("a", 110.0), ("b", 210.0)]),
            at(138.0, &[("c", 110.0), ("d", 210.0), ("e", 310.0)]),
            at(168.0, &[("f", 110.0), ("g", 310.0)]),
        ];
        let with = ruled_tables(words.clone(), &grid_rules(), &shifted, 1.0);
        let without = ruled_tables(words, &grid_rules(), &[], 1.0);
        assert_eq!(with, without);
    }

    #[test]
    fn shaded_patches_of_a_larger_table_are_no_table() {
        // A heat map: a 3 x 2 block of shaded cells inside rows that go on left and right.
        let mut shading = Vec::new();
        for r in 0..3 {
            let y = 100.0 + 30.0 * r as f32;
            shading.push(BBox::new(200.0, y, 260.0, y + 30.0));
            shading.push(BBox::new(260.0, y, 320.0, y + 30.0));
        }
        let lines: Vec<Line> = (0..3)
            .map(|r| {
                let y = 108.0 + 30.0 * r as f32;
                line(vec![
                    word("row", 100.0, y),
                    word("0.8", 210.0, y),
                    word("0.2", 270.0, y),
                    word("0.0", 330.0, y),
                ])
            })
            .collect();
        let (tables, rest) = ruled_tables(lines.clone(), &[], &shading, 1.0);
        assert!(tables.is_empty());
        assert_eq!(rest, lines);
        // Shaded rows under a plain header row just above them.
        let shading: Vec<BBox> = shading
            .iter()
            .map(|b| BBox::new(b.x0 - 100.0, b.y0, b.x1 + 60.0, b.y1))
            .collect();
        let mut lines: Vec<Line> = lines;
        lines.insert(0, at(86.0, &[("Name", 105.0), ("Score", 210.0)]));
        let (tables, _) = ruled_tables(lines, &[], &shading, 1.0);
        assert!(tables.is_empty());
    }

    #[test]
    fn a_mesh_of_rules_is_bounded() {
        // 5 000 rules each way: more than are grouped; nothing is found, quickly.
        let mut r = Vec::new();
        for k in 0..5_000 {
            let p = 10.0 * k as f32;
            r.push(rule(0.0, p, 50_000.0, p));
            r.push(rule(p, 0.0, p, 50_000.0));
        }
        assert!(find_grids(&r, 1.0).is_empty());
    }
}
