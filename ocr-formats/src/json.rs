//! JSON: the job object of the REST API (the `pages` breakdown with blocks, lines and words).

use std::io::Write;

use ocr_core::{BBox, Block, BlockKind, Document, Line, Page, PageOutcome, TextSource, Word};
use serde::Serialize;

use crate::{ExportError, ExportOptions};

/// What a server knows about a job beside its document: written into the JSON job object (the
/// REST API's status response and `json` download). Without it the JSON carries the document
/// alone, its status derived from the pages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobMeta {
    pub uuid: String,
    /// `pending`, `processing`, `done` or `failed`; `None` derives it from the pages.
    pub status: Option<String>,
    pub tier: String,
    pub language: String,
    pub tool: Option<String>,
    /// Pages in the file, known before any is read; `None` counts the document's pages.
    pub page_count: Option<usize>,
    /// Pages read so far.
    pub progress: usize,
    /// Why the job failed.
    pub error: Option<String>,
    /// RFC 3339 timestamps.
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The engine and models that produced the result, e.g. `ocr 0.1.0 (cpu, PP-OCRv6 small)`.
    pub engine: String,
}

#[derive(Serialize)]
struct JobJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<&'a str>,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    page_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<usize>,
    mean_confidence: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    engine: Option<&'a str>,
    text: String,
    markdown: String,
    /// How many tables the document has (*beyond*).
    table_count: usize,
    /// Read for its tables and none found: says so (*beyond*).
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<&'static str>,
    pages: Vec<PageJson<'a>>,
}

#[derive(Serialize)]
struct PageJson<'a> {
    index: usize,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
    width: u32,
    height: u32,
    dpi: f32,
    rotation: u16,
    language: Option<&'a str>,
    text: String,
    blocks: Vec<BlockJson<'a>>,
}

#[derive(Serialize)]
struct BlockJson<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<u8>,
    text: String,
    bbox: [f32; 4],
    confidence: f32,
    lines: Vec<LineJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<TableJson<'a>>,
    /// A caption's table or figure: its index among the page's blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    caption_of: Option<usize>,
}

#[derive(Serialize)]
struct TableJson<'a> {
    rows: usize,
    columns: usize,
    cells: Vec<CellJson<'a>>,
    /// The table as HTML, spans and header rows included.
    html: String,
}

#[derive(Serialize)]
struct CellJson<'a> {
    row: usize,
    column: usize,
    row_span: usize,
    column_span: usize,
    header: bool,
    text: &'a str,
    bbox: [f32; 4],
}

#[derive(Serialize)]
struct LineJson<'a> {
    text: &'a str,
    bbox: [f32; 4],
    confidence: f32,
    words: Vec<WordJson<'a>>,
}

#[derive(Serialize)]
struct WordJson<'a> {
    text: &'a str,
    bbox: [f32; 4],
    confidence: f32,
}

/// Boxes to a tenth of a pixel and confidences to four places: more digits are noise. A value
/// that is not a finite number (which JSON cannot carry) becomes 0.
fn bbox(b: &BBox) -> [f32; 4] {
    b.to_array().map(|v| finite((v * 10.0).round() / 10.0))
}

fn conf(c: f32) -> f32 {
    (finite(c).clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0
}

fn finite(v: f32) -> f32 {
    if v.is_finite() { v } else { 0.0 }
}

fn kind(k: BlockKind) -> (&'static str, Option<u8>) {
    match k {
        BlockKind::Paragraph => ("paragraph", None),
        BlockKind::Heading { level } => ("heading", Some(level)),
        BlockKind::ListItem => ("list_item", None),
        BlockKind::Table => ("table", None),
        BlockKind::Caption => ("caption", None),
        BlockKind::Header => ("header", None),
        BlockKind::Footer => ("footer", None),
        BlockKind::Formula => ("formula", None),
        BlockKind::Figure => ("figure", None),
    }
}

fn word(w: &Word) -> WordJson<'_> {
    WordJson {
        text: &w.text,
        bbox: bbox(&w.bbox),
        confidence: conf(w.confidence),
    }
}

fn line(l: &Line) -> LineJson<'_> {
    LineJson {
        text: &l.text,
        bbox: bbox(&l.bbox),
        confidence: conf(l.confidence),
        words: l.words.iter().map(word).collect(),
    }
}

fn block(b: &Block) -> BlockJson<'_> {
    let (kind, level) = kind(b.kind);
    BlockJson {
        kind,
        level,
        text: b.text(),
        bbox: bbox(&b.bbox),
        confidence: conf(b.confidence()),
        lines: b.lines.iter().map(line).collect(),
        table: b.table.as_ref().map(|t| TableJson {
            rows: t.rows,
            columns: t.columns,
            cells: t
                .cells
                .iter()
                .map(|c| CellJson {
                    row: c.row,
                    column: c.column,
                    row_span: c.row_span.max(1),
                    column_span: c.column_span.max(1),
                    header: c.header,
                    text: &c.text,
                    bbox: bbox(&c.bbox),
                })
                .collect(),
            html: crate::html::table(t),
        }),
        caption_of: b.caption_of,
    }
}

fn page(p: &Page) -> PageJson<'_> {
    let (status, error, source) = match &p.outcome {
        PageOutcome::Done { source } => (
            "done",
            None,
            Some(match source {
                TextSource::TextLayer => "text_layer",
                TextSource::Recognition => "recognition",
            }),
        ),
        PageOutcome::Failed { reason } => ("failed", Some(reason.as_str()), None),
    };
    PageJson {
        index: p.index,
        status,
        error,
        source,
        width: p.width,
        height: p.height,
        dpi: finite(p.dpi).max(0.0),
        rotation: p.rotation.degrees(),
        language: p.language.as_deref(),
        text: p.text(),
        blocks: p.blocks.iter().map(block).collect(),
    }
}

fn job<'a>(document: &'a Document, meta: Option<&'a JobMeta>, tables_only: bool) -> JobJson<'a> {
    let table_count = document
        .pages
        .iter()
        .flat_map(|p| &p.blocks)
        .filter(|b| b.table.as_ref().is_some_and(|t| !t.cells.is_empty()))
        .count();
    let all_failed = !document.pages.is_empty() && document.pages.iter().all(Page::is_failed);
    let derived = if all_failed { "failed" } else { "done" };
    JobJson {
        uuid: meta.map(|m| m.uuid.as_str()),
        status: meta.and_then(|m| m.status.as_deref()).unwrap_or(derived),
        tier: meta.map(|m| m.tier.as_str()),
        language: meta.map(|m| m.language.as_str()),
        tool: meta.and_then(|m| m.tool.as_deref()),
        page_count: meta
            .and_then(|m| m.page_count)
            .unwrap_or(document.pages.len()),
        progress: meta.map(|m| m.progress),
        mean_confidence: conf(document.mean_confidence().unwrap_or(0.0)),
        error: meta.and_then(|m| m.error.as_deref()),
        created_at: meta.and_then(|m| m.created_at.as_deref()),
        started_at: meta.and_then(|m| m.started_at.as_deref()),
        finished_at: meta.and_then(|m| m.finished_at.as_deref()),
        engine: meta.map(|m| m.engine.as_str()),
        text: crate::txt::render(document),
        markdown: crate::md::render(document, tables_only),
        table_count,
        notice: (tables_only && table_count == 0).then_some("no table was found in this document"),
        pages: document.pages.iter().map(page).collect(),
    }
}

pub(crate) fn write(
    document: &Document,
    options: &ExportOptions<'_>,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let job = job(document, options.job, options.tables_only);
    if options.pretty {
        serde_json::to_writer_pretty(&mut *out, &job)?;
    } else {
        serde_json::to_writer(&mut *out, &job)?;
    }
    out.write_all(b"\n")?;
    Ok(())
}
