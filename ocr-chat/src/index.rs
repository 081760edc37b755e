//! The document cut into chunks that remember where they come from, and hybrid search over them.
//!
//! A page's text is exactly [`ocr_core::Page::text`] (what the API returns as the page's `text`),
//! so a chunk is a byte range of it and anything cut from a chunk is a literal substring of the
//! page. Chunks follow blocks: small blocks (receipt rows, form fields) are gathered until a chunk
//! holds enough words, long blocks are cut at line boundaries with one line of overlap.
//!
//! Ranking: BM25 (k1 1.2, b 0.75) over [`crate::text::terms`], and the cosine of MiniLM sentence
//! embeddings where an [`Embedder`] is given; the two rankings are fused by reciprocal rank
//! (k = 60), which needs no calibration between their scales; each ranking's best chunk is moved
//! up among the first three, since fusion can sink a chunk that one method alone finds.

use std::collections::HashMap;

use ocr_core::{BBox, BlockKind, Document};

use crate::ChatError;
use crate::embed::Embedder;
use crate::text::terms;

/// A chunk stops growing at a block boundary once it has this many words...
const MIN_WORDS: usize = 40;
/// ...and is cut inside a block at a line boundary once it has this many.
const MAX_WORDS: usize = 110;
const RRF_K: f32 = 60.0;

/// One line of a page: its byte range in the page text and its box.
#[derive(Debug, Clone)]
struct LineSpan {
    start: usize,
    end: usize,
    bbox: BBox,
    block: usize,
}

/// A page's text and where each line of it sits.
#[derive(Debug, Clone)]
pub struct PageText {
    /// 1-based page number, as citations give it.
    pub number: usize,
    pub text: String,
    lines: Vec<LineSpan>,
}

/// A piece of one page's text.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Position of the page in [`DocIndex::pages`].
    pub page: usize,
    /// Byte range in the page's text.
    pub start: usize,
    pub end: usize,
    /// The box around the chunk's lines, in page pixels.
    pub bbox: BBox,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub chunk: usize,
    /// The fused score (higher is better).
    pub score: f32,
    /// The BM25 score alone (0 when no query term occurs in the chunk).
    pub bm25: f32,
    /// The cosine between question and chunk, when embeddings are in use.
    pub cosine: Option<f32>,
}

#[derive(Debug, Clone, Default)]
struct Bm25 {
    /// Per chunk: term frequencies and length in terms.
    docs: Vec<(HashMap<String, u32>, usize)>,
    df: HashMap<String, usize>,
    avg_len: f32,
}

impl Bm25 {
    fn new(texts: &[&str]) -> Self {
        let mut df: HashMap<String, usize> = HashMap::new();
        let docs: Vec<_> = texts
            .iter()
            .map(|t| {
                let ts = terms(t);
                let mut tf: HashMap<String, u32> = HashMap::new();
                for term in &ts {
                    *tf.entry(term.clone()).or_default() += 1;
                }
                for term in tf.keys() {
                    *df.entry(term.clone()).or_default() += 1;
                }
                (tf, ts.len())
            })
            .collect();
        let total: usize = docs.iter().map(|(_, n)| n).sum();
        let avg_len = if docs.is_empty() {
            1.0
        } else {
            (total as f32 / docs.len() as f32).max(1.0)
        };
        Self { docs, df, avg_len }
    }

    /// Inverse document frequency (the non-negative BM25+ form).
    fn idf(&self, term: &str) -> f32 {
        let n = self.docs.len() as f32;
        let df = self.df.get(term).copied().unwrap_or(0) as f32;
        ((n - df + 0.5) / (df + 0.5) + 1.0).ln()
    }

    fn scores(&self, query: &[String]) -> Vec<f32> {
        let (k1, b) = (1.2f32, 0.75f32);
        let mut unique = query.to_vec();
        unique.sort();
        unique.dedup();
        let idfs: Vec<f32> = unique.iter().map(|t| self.idf(t)).collect();
        self.docs
            .iter()
            .map(|(tf, len)| {
                unique
                    .iter()
                    .zip(&idfs)
                    .map(|(t, idf)| {
                        let f = tf.get(t).copied().unwrap_or(0) as f32;
                        if f == 0.0 {
                            0.0
                        } else {
                            idf * f * (k1 + 1.0)
                                / (f + k1 * (1.0 - b + b * *len as f32 / self.avg_len))
                        }
                    })
                    .sum()
            })
            .collect()
    }
}

/// A recognised document ready for questions.
#[derive(Debug, Clone)]
pub struct DocIndex {
    pub pages: Vec<PageText>,
    pub chunks: Vec<Chunk>,
    bm25: Bm25,
    /// Unit-length chunk embeddings, when built with an embedder.
    embeddings: Option<Vec<Vec<f32>>>,
}

impl DocIndex {
    /// Cuts the document into chunks and indexes them; with an embedder, embeds every chunk.
    /// Failed pages and empty pages contribute nothing. Page headers and footers stay in the
    /// page text but are not chunked: they answer nothing and would crowd every search.
    pub fn build(doc: &Document, embedder: Option<&Embedder>) -> Result<Self, ChatError> {
        let mut pages = Vec::new();
        let mut chunks = Vec::new();
        for page in doc.pages.iter().filter(|p| !p.is_failed()) {
            let (text, lines, skip) = page_layout(page);
            if text.trim().is_empty() {
                continue;
            }
            let at = pages.len();
            chunks.extend(chunk_page(at, &text, &lines, &skip));
            pages.push(PageText {
                number: page.index + 1,
                text,
                lines,
            });
        }
        let texts: Vec<&str> = chunks
            .iter()
            .map(|c| &pages[c.page].text[c.start..c.end])
            .collect();
        let bm25 = Bm25::new(&texts);
        let embeddings = match embedder {
            Some(e) => Some(e.embed(&texts)?),
            None => None,
        };
        Ok(Self {
            pages,
            chunks,
            bm25,
            embeddings,
        })
    }

    pub fn chunk_text(&self, chunk: &Chunk) -> &str {
        &self.pages[chunk.page].text[chunk.start..chunk.end]
    }

    /// The chunk's text for a reader: its lines in order, except that short fragments side by
    /// side on one visual row, one of them with a digit (a receipt's label and its amount in
    /// another block, a form's field and its date), are joined into one line, left to right, two
    /// spaces apart. Recognition keeps such columns in separate blocks, which parts a label from
    /// its value in the page text.
    pub fn chunk_rows(&self, chunk: &Chunk) -> String {
        let page = &self.pages[chunk.page];
        let text = |l: &LineSpan| &page.text[l.start..l.end];
        let fragment = |l: &LineSpan| text(l).split_whitespace().count() <= ROW_FRAGMENT_WORDS;
        let has_digit = |l: &LineSpan| text(l).chars().any(|c| c.is_ascii_digit());
        let mut rows: Vec<Vec<&LineSpan>> = Vec::new();
        for line in page
            .lines
            .iter()
            .filter(|l| l.start >= chunk.start && l.end <= chunk.end && l.start < l.end)
        {
            let joins = |row: &Vec<&LineSpan>| {
                fragment(line)
                    && (has_digit(line) || row.iter().any(|o| has_digit(o)))
                    && row.iter().all(|o| {
                        o.block != line.block && fragment(o) && same_row(&o.bbox, &line.bbox)
                    })
            };
            match rows.iter_mut().find(|row| joins(row)) {
                Some(row) => row.push(line),
                None => rows.push(vec![line]),
            }
        }
        rows.iter_mut()
            .map(|row| {
                row.sort_by(|a, b| a.bbox.x0.total_cmp(&b.bbox.x0));
                row.iter().map(|l| text(l)).collect::<Vec<_>>().join("  ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether chunk embeddings were built.
    pub fn has_embeddings(&self) -> bool {
        self.embeddings.is_some()
    }

    /// The text of the page with this 1-based number.
    pub fn page(&self, number: usize) -> Option<&PageText> {
        self.pages.iter().find(|p| p.number == number)
    }

    /// The box around the lines that a byte range of a page's text touches.
    pub fn bbox_of(&self, page: usize, start: usize, end: usize) -> Option<BBox> {
        let lines = &self.pages.get(page)?.lines;
        BBox::enclosing(
            lines
                .iter()
                .filter(|l| l.start < end && l.end > start)
                .map(|l| &l.bbox),
        )
    }

    /// Inverse document frequency of a term over the chunks (0 for a term in every chunk).
    pub fn idf(&self, term: &str) -> f32 {
        self.bm25.idf(term)
    }

    /// The `k` best chunks for `query`, best first. With an embedder (and chunk embeddings), the
    /// BM25 and cosine rankings are fused; otherwise BM25 alone ranks, and chunks sharing no term
    /// with the query are left out.
    pub fn search(
        &self,
        query: &str,
        k: usize,
        embedder: Option<&Embedder>,
    ) -> Result<Vec<Hit>, ChatError> {
        let n = self.chunks.len();
        if n == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let bm25 = self.bm25.scores(&terms(query));
        let cosines = match (embedder, &self.embeddings) {
            (Some(e), Some(vectors)) => {
                let q = e.embed(&[query])?.remove(0);
                Some(vectors.iter().map(|v| dot(&q, v)).collect::<Vec<f32>>())
            }
            _ => None,
        };
        let (order, fused) = fuse(&bm25, cosines.as_deref());
        Ok(order
            .into_iter()
            .take(k)
            .map(|i| Hit {
                chunk: i,
                score: fused[i],
                bm25: bm25[i],
                cosine: cosines.as_ref().map(|c| c[i]),
            })
            .collect())
    }
}

/// Where each ranking's best chunk is moved up to when fusion ranks it lower (0-based).
const LEADER_RANK: usize = 2;

/// Chunk positions, best first, and their fused scores: reciprocal-rank fusion of the BM25
/// scores (chunks with none left out) and, where given, the cosines; then each ranking's best
/// chunk is moved up to [`LEADER_RANK`] if fusion left it lower. One method alone is often right
/// where the other is lost (a rare word the embedding blurs, a paraphrase BM25 cannot see), and
/// fusion would rank such a chunk below ones both methods find middling. Moved no higher, it
/// leaves the fused order of the first chunks alone: the language model reads the excerpts in
/// this order, and its answers depend on it.
fn fuse(bm25: &[f32], cosines: Option<&[f32]>) -> (Vec<usize>, Vec<f32>) {
    let n = bm25.len();
    let by = |score: &[f32], keep: &dyn Fn(usize) -> bool| {
        let mut ranked: Vec<usize> = (0..n).filter(|&i| keep(i)).collect();
        ranked.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
        ranked
    };
    let mut rankings = vec![by(bm25, &|i| bm25[i] > 0.0)];
    if let Some(cos) = cosines {
        rankings.push(by(cos, &|_| true));
    }
    let mut fused = vec![0f32; n];
    for ranked in &rankings {
        for (rank, &i) in ranked.iter().enumerate() {
            fused[i] += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    let mut order = by(&fused, &|i| fused[i] > 0.0);
    for leader in rankings.iter().filter_map(|r| r.first().copied()) {
        if let Some(at) = order.iter().position(|&i| i == leader)
            && at > LEADER_RANK
        {
            order.remove(at);
            order.insert(LEADER_RANK, leader);
        }
    }
    (order, fused)
}

/// Lines longer than this (in words) are never parts of a row: lines of narrow columns of
/// running text have five words or more.
const ROW_FRAGMENT_WORDS: usize = 4;

/// Two boxes side by side on one row: they overlap vertically by at least half the smaller
/// height, and not horizontally.
fn same_row(a: &BBox, b: &BBox) -> bool {
    let overlap = a.y1.min(b.y1) - a.y0.max(b.y0);
    overlap >= 0.5 * a.height().min(b.height()) && (a.x1 <= b.x0 || b.x1 <= a.x0)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The page text exactly as [`ocr_core::Page::text`] builds it, with every line's byte range,
/// and for each block whether chunking leaves it out.
fn page_layout(page: &ocr_core::Page) -> (String, Vec<LineSpan>, Vec<bool>) {
    let mut text = String::new();
    let mut lines = Vec::new();
    let mut skip = Vec::new();
    for block in &page.blocks {
        let block_text = block.text();
        if block_text.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let b = skip.len();
        skip.push(matches!(block.kind, BlockKind::Header | BlockKind::Footer));
        for (i, line) in block.lines.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            let start = text.len();
            text.push_str(&line.text);
            lines.push(LineSpan {
                start,
                end: text.len(),
                bbox: line.bbox,
                block: b,
            });
        }
    }
    debug_assert_eq!(text, page.text());
    (text, lines, skip)
}

fn chunk_page(page: usize, text: &str, lines: &[LineSpan], skip: &[bool]) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current: Vec<&LineSpan> = Vec::new();
    let mut words = 0usize;
    let finish = |current: &mut Vec<&LineSpan>, chunks: &mut Vec<Chunk>| {
        let (Some(first), Some(last)) = (current.first(), current.last()) else {
            return;
        };
        let bbox = BBox::enclosing(current.iter().map(|l| &l.bbox)).unwrap_or_default();
        chunks.push(Chunk {
            page,
            start: first.start,
            end: last.end,
            bbox,
        });
        current.clear();
    };
    for (i, line) in lines.iter().enumerate() {
        if skip[line.block] || line.start == line.end {
            continue;
        }
        current.push(line);
        words += text[line.start..line.end].split_whitespace().count();
        let block_ends = lines.get(i + 1).is_none_or(|n| n.block != line.block);
        if (block_ends && words >= MIN_WORDS) || words >= MAX_WORDS {
            let overlap = (!block_ends).then_some(line);
            finish(&mut current, &mut chunks);
            words = 0;
            if let Some(l) = overlap {
                current.push(l);
                words = text[l.start..l.end].split_whitespace().count();
            }
        }
    }
    // A last chunk made only of the overlap line adds nothing new.
    let only_overlap = current.len() == 1
        && chunks
            .last()
            .is_some_and(|c: &Chunk| c.end == current[0].end);
    if !only_overlap {
        finish(&mut current, &mut chunks);
    }
    chunks
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ocr_core::{Block, Line, Page, PageOutcome, Rotation, TextSource, Word};

    pub(crate) fn line(text: &str, y: f32) -> Line {
        let words: Vec<Word> = text
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| Word {
                text: w.into(),
                bbox: BBox::new(i as f32 * 50.0, y, i as f32 * 50.0 + 40.0, y + 10.0),
                confidence: 0.9,
            })
            .collect();
        if words.is_empty() {
            return Line {
                text: String::new(),
                bbox: BBox::new(0.0, y, 1.0, y + 10.0),
                polygon: None,
                confidence: 1.0,
                words,
            };
        }
        Line::from_words(words)
    }

    pub(crate) fn page(index: usize, blocks: &[(BlockKind, &[&str])]) -> Page {
        let mut y = 0.0;
        Page {
            index,
            width: 1000,
            height: 1400,
            dpi: 150.0,
            rotation: Rotation::R0,
            language: Some("en".into()),
            blocks: blocks
                .iter()
                .map(|(kind, lines)| {
                    Block::from_lines(
                        *kind,
                        lines
                            .iter()
                            .map(|t| {
                                y += 20.0;
                                line(t, y)
                            })
                            .collect(),
                    )
                })
                .collect(),
            outcome: PageOutcome::Done {
                source: TextSource::Recognition,
            },
        }
    }

    pub(crate) fn sample() -> Document {
        let p = BlockKind::Paragraph;
        Document {
            pages: vec![
                page(
                    0,
                    &[
                        (BlockKind::Header, &["ACME CORP - CONFIDENTIAL"]),
                        (BlockKind::Heading { level: 1 }, &["Invoice 2024-117"]),
                        (p, &["Bill to: Northwind Traders, 12 Harbour Road, Leith."]),
                        (
                            p,
                            &["Item: 40 oak chairs at 55.00 each.", "Subtotal 2200.00"],
                        ),
                        (p, &["Total due: 2,420.00 EUR", "Due date: March 3, 2025"]),
                    ],
                ),
                page(
                    1,
                    &[
                        (p, &["Terms and conditions"]),
                        (
                            p,
                            &[
                                "Late payments incur interest of 4 percent per month.",
                                "Goods remain the property of Acme until paid in full.",
                            ],
                        ),
                        (BlockKind::Footer, &["Page 2"]),
                    ],
                ),
                Page::failed(2, "unreadable"),
            ],
        }
    }

    #[test]
    fn chunks_are_ranges_of_the_page_text_and_skip_headers() {
        let doc = sample();
        let index = DocIndex::build(&doc, None).expect("index");
        assert_eq!(index.pages.len(), 2);
        assert_eq!(index.pages[0].text, doc.pages[0].text());
        for chunk in &index.chunks {
            let text = index.chunk_text(chunk);
            assert!(index.pages[chunk.page].text.contains(text));
            assert!(!text.contains("CONFIDENTIAL"));
            assert!(!text.contains("Page 2"));
        }
        assert_eq!(index.pages[1].number, 2);
    }

    #[test]
    fn long_blocks_are_cut_with_overlap() {
        let long: Vec<String> = (0..30)
            .map(|i| format!("line {i} has some eight words in it"))
            .collect();
        let refs: Vec<&str> = long.iter().map(String::as_str).collect();
        let doc = Document {
            pages: vec![page(0, &[(BlockKind::Paragraph, &refs)])],
        };
        let index = DocIndex::build(&doc, None).expect("index");
        assert!(index.chunks.len() >= 2, "{:?}", index.chunks);
        for pair in index.chunks.windows(2) {
            assert!(pair[1].start < pair[0].end, "overlap");
        }
        assert_eq!(
            index.chunks.last().map(|c| c.end),
            Some(index.pages[0].text.len())
        );
    }

    fn line_at(text: &str, x: f32, y: f32) -> Line {
        let mut l = line(text, y);
        for w in &mut l.words {
            w.bbox = BBox::new(w.bbox.x0 + x, w.bbox.y0, w.bbox.x1 + x, w.bbox.y1);
        }
        l.bbox = BBox::new(l.bbox.x0 + x, l.bbox.y0, l.bbox.x1 + x, l.bbox.y1);
        l
    }

    #[test]
    fn side_by_side_fragments_read_as_rows() {
        let block = |lines: Vec<Line>| Block::from_lines(BlockKind::Paragraph, lines);
        let mut receipt = page(0, &[]);
        receipt.blocks = vec![
            block(vec![
                line_at("TOTAL", 0.0, 20.0),
                line_at("CASH", 0.0, 40.0),
                line_at("CHANGE", 0.0, 60.0),
            ]),
            // A little lower, as a scan's columns are.
            block(vec![
                line_at("RM 57.40", 600.0, 23.0),
                line_at("RM 100.00", 600.0, 43.0),
                line_at("RM 42.60", 600.0, 63.0),
            ]),
            // Two columns of running text stay apart.
            block(vec![line_at(
                "one two three four five six seven",
                0.0,
                100.0,
            )]),
            block(vec![line_at(
                "eight nine ten eleven twelve thirteen fourteen",
                600.0,
                100.0,
            )]),
        ];
        let index = DocIndex::build(
            &Document {
                pages: vec![receipt],
            },
            None,
        )
        .expect("index");
        assert_eq!(index.chunks.len(), 1);
        assert_eq!(
            index.chunk_rows(&index.chunks[0]),
            "TOTAL  RM 57.40\nCASH  RM 100.00\nCHANGE  RM 42.60\n\
             one two three four five six seven\neight nine ten eleven twelve thirteen fourteen"
        );
    }

    #[test]
    fn each_rankings_best_chunk_moves_up_to_third_place() {
        // Chunk 3 is BM25's best and the embedding's worst, chunk 2 the embedding's best with no
        // term in common: fused, they come second and last, behind chunk 0, middling in both.
        // Chunk 2 moves up to third place; chunk 3 stays second.
        let bm25 = [2.0, 1.9, 0.0, 9.0, 1.0];
        let cos = [0.50, 0.49, 0.90, 0.05, 0.30];
        let (order, fused) = fuse(&bm25, Some(&cos));
        assert!(fused[0] > fused[3] && fused.iter().all(|&f| f >= fused[2]));
        assert_eq!(order, vec![0, 3, 2, 1, 4]);
        // BM25 alone: chunks without a term are left out, the order is BM25's.
        let (order, _) = fuse(&bm25, None);
        assert_eq!(order, vec![3, 0, 1, 4]);
    }

    #[test]
    fn bm25_finds_the_chunk_with_the_rare_terms() {
        let index = DocIndex::build(&sample(), None).expect("index");
        let hits = index
            .search("What interest is charged on late payment?", 3, None)
            .expect("search");
        let best = &index.chunks[hits[0].chunk];
        assert_eq!(index.pages[best.page].number, 2);
        assert!(index.chunk_text(best).contains("4 percent"));
        assert!(
            index
                .search("zebra giraffe", 3, None)
                .expect("search")
                .is_empty()
        );
    }
}
