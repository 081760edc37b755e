//! docx (Office Open XML WordprocessingML): headings as `Heading1`-`Heading6` paragraphs, list
//! items as Word lists (`numbering.xml`: bullets, or numbers starting where the document's did),
//! captions in the `Caption` style, other blocks as paragraphs whose lines are kept as line
//! breaks, tables as `w:tbl` with their row and column spans, pages separated by page breaks. Right-to-left paragraphs (Arabic, Hebrew, ...)
//! are marked `w:bidi` and their runs `w:rtl`; runs with CJK text get the East Asian font hint.
//!
//! The package holds only what Word, LibreOffice and python-docx need to open it without repair:
//! content types, the package and document relationships, the document, its styles, its list
//! numbering and the core properties.

use std::io::{Cursor, Write};

use ocr_core::{Block, BlockKind, Document, Table};
use zip::write::SimpleFileOptions;

use crate::ExportError;
use crate::text::is_rtl;
use crate::xml::escape;

const CONTENT_TYPES: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    "<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">",
    "<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>",
    "<Default Extension=\"xml\" ContentType=\"application/xml\"/>",
    "<Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>",
    "<Override PartName=\"/word/styles.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml\"/>",
    "<Override PartName=\"/word/numbering.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.numbering+xml\"/>",
    "<Override PartName=\"/docProps/core.xml\" ContentType=\"application/vnd.openxmlformats-package.core-properties+xml\"/>",
    "</Types>"
);

const PACKAGE_RELS: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">",
    "<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/>",
    "<Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties\" Target=\"docProps/core.xml\"/>",
    "</Relationships>"
);

const DOCUMENT_RELS: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">",
    "<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles\" Target=\"styles.xml\"/>",
    "<Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/numbering\" Target=\"numbering.xml\"/>",
    "</Relationships>"
);

const CORE: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    "<cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" ",
    "xmlns:dc=\"http://purl.org/dc/elements/1.1/\">",
    "<dc:creator>ocr-chat</dc:creator>",
    "</cp:coreProperties>"
);

/// The width between the margins of the document's pages, in twips (1/1440 inch).
const TEXT_WIDTH: usize = 12240 - 2 * 1440;

const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";

fn styles() -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<w:styles xmlns:w=\"{W_NS}\">\
         <w:docDefaults><w:rPrDefault><w:rPr>\
         <w:rFonts w:ascii=\"Calibri\" w:hAnsi=\"Calibri\" w:eastAsia=\"Noto Sans CJK SC\" w:cs=\"Arial\"/>\
         <w:sz w:val=\"22\"/><w:szCs w:val=\"22\"/></w:rPr></w:rPrDefault>\
         <w:pPrDefault><w:pPr><w:spacing w:after=\"160\" w:line=\"259\" w:lineRule=\"auto\"/></w:pPr></w:pPrDefault>\
         </w:docDefaults>\
         <w:style w:type=\"paragraph\" w:default=\"1\" w:styleId=\"Normal\"><w:name w:val=\"Normal\"/><w:qFormat/></w:style>\
         <w:style w:type=\"table\" w:default=\"1\" w:styleId=\"TableNormal\"><w:name w:val=\"Normal Table\"/>\
         <w:tblPr><w:tblCellMar><w:left w:w=\"108\" w:type=\"dxa\"/><w:right w:w=\"108\" w:type=\"dxa\"/></w:tblCellMar></w:tblPr></w:style>\
         <w:style w:type=\"table\" w:styleId=\"TableGrid\"><w:name w:val=\"Table Grid\"/><w:basedOn w:val=\"TableNormal\"/>\
         <w:tblPr><w:tblBorders>"
    );
    for side in ["top", "left", "bottom", "right", "insideH", "insideV"] {
        s.push_str(&format!(
            "<w:{side} w:val=\"single\" w:sz=\"4\" w:space=\"0\" w:color=\"auto\"/>"
        ));
    }
    s.push_str("</w:tblBorders></w:tblPr></w:style>");
    for level in 1..=6u8 {
        let size = [32, 26, 24, 22, 22, 22][usize::from(level - 1)];
        s.push_str(&format!(
            "<w:style w:type=\"paragraph\" w:styleId=\"Heading{level}\"><w:name w:val=\"heading {level}\"/>\
             <w:basedOn w:val=\"Normal\"/><w:next w:val=\"Normal\"/><w:qFormat/>\
             <w:pPr><w:keepNext/><w:spacing w:before=\"240\" w:after=\"80\"/><w:outlineLvl w:val=\"{}\"/></w:pPr>\
             <w:rPr><w:b/><w:bCs/><w:sz w:val=\"{size}\"/><w:szCs w:val=\"{size}\"/></w:rPr></w:style>",
            level - 1
        ));
    }
    s.push_str(
        "<w:style w:type=\"paragraph\" w:styleId=\"ListParagraph\"><w:name w:val=\"List Paragraph\"/>\
         <w:basedOn w:val=\"Normal\"/><w:qFormat/><w:pPr><w:ind w:left=\"720\"/><w:contextualSpacing/></w:pPr></w:style>\
         <w:style w:type=\"paragraph\" w:styleId=\"Caption\"><w:name w:val=\"caption\"/>\
         <w:basedOn w:val=\"Normal\"/><w:next w:val=\"Normal\"/><w:qFormat/><w:pPr><w:spacing w:after=\"200\"/></w:pPr>\
         <w:rPr><w:i/><w:iCs/><w:sz w:val=\"18\"/><w:szCs w:val=\"18\"/></w:rPr></w:style>",
    );
    s.push_str("</w:styles>");
    s
}

/// The id of the bullet list in `numbering.xml`; numbered lists get ids from 2 up.
const BULLETS: usize = 1;

/// `numbering.xml`: one bullet list, and one numbered list per run of numbered items, each
/// starting at its first item's number.
fn numbering(starts: &[u32]) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<w:numbering xmlns:w=\"{W_NS}\">"
    );
    for (id, format, text) in [(0, "bullet", "\u{2022}"), (1, "decimal", "%1.")] {
        s.push_str(&format!(
            "<w:abstractNum w:abstractNumId=\"{id}\"><w:multiLevelType w:val=\"singleLevel\"/>\
             <w:lvl w:ilvl=\"0\"><w:start w:val=\"1\"/><w:numFmt w:val=\"{format}\"/>\
             <w:lvlText w:val=\"{text}\"/><w:lvlJc w:val=\"left\"/>\
             <w:pPr><w:ind w:left=\"720\" w:hanging=\"360\"/></w:pPr></w:lvl></w:abstractNum>"
        ));
    }
    s.push_str(&format!(
        "<w:num w:numId=\"{BULLETS}\"><w:abstractNumId w:val=\"0\"/></w:num>"
    ));
    for (k, start) in starts.iter().enumerate() {
        s.push_str(&format!(
            "<w:num w:numId=\"{}\"><w:abstractNumId w:val=\"1\"/>\
             <w:lvlOverride w:ilvl=\"0\"><w:startOverride w:val=\"{start}\"/></w:lvlOverride></w:num>",
            k + 2
        ));
    }
    s.push_str("</w:numbering>");
    s
}

pub(crate) fn write(document: &Document, out: &mut dyn Write) -> Result<(), ExportError> {
    let (body, starts) = body(document);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let parts: [(&str, &str); 7] = [
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", PACKAGE_RELS),
        ("word/_rels/document.xml.rels", DOCUMENT_RELS),
        ("docProps/core.xml", CORE),
        ("word/styles.xml", &styles()),
        ("word/numbering.xml", &numbering(&starts)),
        ("word/document.xml", &body),
    ];
    for (name, content) in parts {
        zip.start_file(name, options).map_err(zip_error)?;
        zip.write_all(content.as_bytes())?;
    }
    let bytes = zip.finish().map_err(zip_error)?.into_inner();
    out.write_all(&bytes)?;
    Ok(())
}

fn zip_error(e: zip::result::ZipError) -> ExportError {
    ExportError::Io(std::io::Error::other(e))
}

/// The document part, and the first number of each run of numbered list items (the numbered
/// lists `numbering.xml` must define, in order).
fn body(document: &Document) -> (String, Vec<u32>) {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<w:document xmlns:w=\"{W_NS}\"><w:body>"
    );
    let mut starts: Vec<u32> = Vec::new();
    // The numbered list the previous block continues, if it was a numbered item.
    let mut numbered: Option<usize> = None;
    for (i, page) in document.pages.iter().enumerate() {
        if i > 0 {
            s.push_str("<w:p><w:r><w:br w:type=\"page\"/></w:r></w:p>");
        }
        for block in &page.blocks {
            if block.kind == BlockKind::ListItem
                && let Some((number, text)) = list_item(block)
            {
                let id = match number {
                    None => BULLETS,
                    Some(n) => match numbered {
                        Some(id) => id,
                        None => {
                            starts.push(n);
                            starts.len() + 1
                        }
                    },
                };
                numbered = number.map(|_| id);
                list_paragraph(&text, id, &mut s);
                continue;
            }
            numbered = None;
            match &block.table {
                Some(table) if !table.cells.is_empty() => write_table(table, &mut s),
                _ => write_block(block, &mut s),
            }
        }
    }
    // Letter-sized pages with one-inch margins (Word's default for en-US).
    s.push_str(
        "<w:sectPr><w:pgSz w:w=\"12240\" w:h=\"15840\"/>\
         <w:pgMar w:top=\"1440\" w:right=\"1440\" w:bottom=\"1440\" w:left=\"1440\" \
         w:header=\"720\" w:footer=\"720\" w:gutter=\"0\"/></w:sectPr></w:body></w:document>",
    );
    (s, starts)
}

/// A list item's number (`None` for a bullet or letter) and its text without the marker.
fn list_item(block: &Block) -> Option<(Option<u32>, String)> {
    let joined = block
        .lines
        .iter()
        .map(|l| l.text.trim())
        .collect::<Vec<_>>()
        .join(" ");
    let (marker, rest) = ocr_core::layout::list_marker(&joined)?;
    let number = marker
        .trim_end_matches(['.', ')'])
        .parse::<u32>()
        .ok()
        .filter(|&n| n < 1000);
    Some((number, rest.to_string()))
}

/// A paragraph of Word list `id`.
fn list_paragraph(text: &str, id: usize, s: &mut String) {
    s.push_str(&format!(
        "<w:p><w:pPr><w:pStyle w:val=\"ListParagraph\"/><w:numPr><w:ilvl w:val=\"0\"/>\
         <w:numId w:val=\"{id}\"/></w:numPr>{}</w:pPr>",
        if is_rtl(text) { "<w:bidi/>" } else { "" }
    ));
    s.push_str("<w:r>");
    let (cjk, rtl) = (text.chars().any(is_cjk), is_rtl(text));
    if cjk || rtl {
        s.push_str("<w:rPr>");
        if cjk {
            s.push_str("<w:rFonts w:hint=\"eastAsia\"/>");
        }
        if rtl {
            s.push_str("<w:rtl/>");
        }
        s.push_str("</w:rPr>");
    }
    s.push_str(&format!(
        "<w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>",
        escape(text)
    ));
}

fn write_block(block: &Block, s: &mut String) {
    let lines: Vec<&str> = block.lines.iter().map(|l| l.text.as_str()).collect();
    if lines.is_empty() {
        return;
    }
    let style = match block.kind {
        BlockKind::Heading { level } => Some(format!("Heading{}", level.clamp(1, 6))),
        BlockKind::Caption => Some("Caption".to_string()),
        _ => None,
    };
    paragraph(&lines, style.as_deref(), s);
}

/// One paragraph whose lines are separated by line breaks.
fn paragraph(lines: &[&str], style: Option<&str>, s: &mut String) {
    let all: String = lines.concat();
    let rtl = is_rtl(&all);
    s.push_str("<w:p>");
    if style.is_some() || rtl {
        s.push_str("<w:pPr>");
        if let Some(style) = style {
            s.push_str(&format!("<w:pStyle w:val=\"{style}\"/>"));
        }
        if rtl {
            s.push_str("<w:bidi/>");
        }
        s.push_str("</w:pPr>");
    }
    for (i, line) in lines.iter().enumerate() {
        s.push_str("<w:r>");
        let cjk = line.chars().any(is_cjk);
        if rtl || cjk {
            s.push_str("<w:rPr>");
            if cjk {
                s.push_str("<w:rFonts w:hint=\"eastAsia\"/>");
            }
            if rtl {
                s.push_str("<w:rtl/>");
            }
            s.push_str("</w:rPr>");
        }
        if i > 0 {
            s.push_str("<w:br/>");
        }
        s.push_str(&format!(
            "<w:t xml:space=\"preserve\">{}</w:t></w:r>",
            escape(line)
        ));
    }
    s.push_str("</w:p>");
}

fn write_table(table: &Table, s: &mut String) {
    let grid = crate::csv::grid(table);
    let columns = grid.first().map_or(0, Vec::len);
    // Which grid positions a spanning cell covers, and the span of each cell's top-left one.
    let mut span = vec![vec![(1usize, 1usize); columns]; grid.len()];
    let mut covered = vec![vec![false; columns]; grid.len()];
    let mut header = vec![false; grid.len()];
    for cell in &table.cells {
        let (r, c) = (cell.row, cell.column);
        let rs = cell.row_span.clamp(1, grid.len() - r);
        let cs = cell.column_span.clamp(1, columns - c);
        span[r][c] = (rs, cs);
        header[r] |= cell.header;
        for (dr, row) in covered.iter_mut().enumerate().skip(r).take(rs) {
            for (dc, slot) in row.iter_mut().enumerate().skip(c).take(cs) {
                if (dr, dc) != (r, c) {
                    *slot = true;
                }
            }
        }
    }
    // Equal columns across the text width (the page less its margins, in twips): readers lay
    // out spanning cells from the grid's widths, and some ignore a grid without them.
    let column_width = TEXT_WIDTH / columns.max(1);
    s.push_str(&format!(
        "<w:tbl><w:tblPr><w:tblStyle w:val=\"TableGrid\"/><w:tblW w:w=\"{}\" w:type=\"dxa\"/>\
         <w:tblLayout w:type=\"fixed\"/></w:tblPr><w:tblGrid>",
        column_width * columns
    ));
    for _ in 0..columns {
        s.push_str(&format!("<w:gridCol w:w=\"{column_width}\"/>"));
    }
    s.push_str("</w:tblGrid>");
    for (r, row) in grid.iter().enumerate() {
        s.push_str("<w:tr>");
        if header[r] {
            s.push_str("<w:trPr><w:tblHeader/></w:trPr>");
        }
        let mut c = 0;
        while c < columns {
            // A position covered from a cell above continues that cell's vertical merge; one
            // covered from the left is part of a `gridSpan` and gets no `w:tc` of its own.
            // The cell above whose vertical merge reaches down here, if any.
            let above = if covered[r][c] {
                (0..r)
                    .rev()
                    .find(|&ar| span[ar][c].0 > 1 && ar + span[ar][c].0 > r)
            } else {
                None
            };
            let from_above = above.is_some();
            if covered[r][c] && !from_above {
                c += 1;
                continue;
            }
            let (rs, cs) = match above {
                Some(ar) => (1, span[ar][c].1),
                None => span[r][c],
            };
            s.push_str(&format!(
                "<w:tc><w:tcPr><w:tcW w:w=\"{}\" w:type=\"dxa\"/>",
                column_width * cs
            ));
            if cs > 1 {
                s.push_str(&format!("<w:gridSpan w:val=\"{cs}\"/>"));
            }
            if from_above {
                s.push_str("<w:vMerge/>");
            } else if rs > 1 {
                s.push_str("<w:vMerge w:val=\"restart\"/>");
            }
            s.push_str("</w:tcPr>");
            let text = if from_above { "" } else { row[c].as_str() };
            paragraph(&[text], None, s);
            s.push_str("</w:tc>");
            c += cs;
        }
        s.push_str("</w:tr>");
    }
    s.push_str("</w:tbl>");
    // Word needs a paragraph between a table and whatever follows it.
    s.push_str("<w:p/>");
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF | 0x20000..=0x3FFFF)
}
