//! hOCR 1.2: XHTML with `ocr_page` / `ocr_carea` / `ocr_par` / `ocr_line` / `ocrx_word`, each
//! with its `bbox`, words with `x_wconf` (0-100), as Tesseract writes it and OCRmyPDF, hocr-tools
//! and archives read it. A block is one `ocr_carea` holding one `ocr_par`; heading and caption
//! lines are `ocr_header` / `ocr_caption`. A page that failed is an empty `ocr_page` whose
//! title says why.

use std::io::Write;

use ocr_core::{BBox, Block, BlockKind, Document, Page, PageOutcome};

use crate::ExportError;
use crate::text::pixel_box;
use crate::xml::{escape, language_tag};

pub(crate) fn write(document: &Document, out: &mut dyn Write) -> Result<(), ExportError> {
    let mut s = String::new();
    s.push_str(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" ",
        "\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n",
        "<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n",
        "<head>\n<title>OCR output</title>\n",
        "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\" />\n",
    ));
    s.push_str(&format!(
        "<meta name=\"ocr-system\" content=\"ocr-chat {}\" />\n",
        env!("CARGO_PKG_VERSION")
    ));
    s.push_str(
        "<meta name=\"ocr-capabilities\" content=\"ocr_page ocr_carea ocr_par ocr_line \
         ocrx_word ocrp_wconf ocrp_lang\" />\n</head>\n<body>\n",
    );
    for page in &document.pages {
        write_page(page, &mut s);
    }
    s.push_str("</body>\n</html>\n");
    out.write_all(s.as_bytes())?;
    Ok(())
}

/// `bbox x0 y0 x1 y1` in whole pixels, the box grown outwards to them.
fn bbox(b: &BBox) -> String {
    let [x0, y0, x1, y1] = pixel_box(b);
    format!("bbox {x0} {y0} {x1} {y1}")
}

fn write_page(page: &Page, s: &mut String) {
    let n = page.index + 1;
    let mut title = format!(
        "bbox 0 0 {} {}; ppageno {}",
        page.width, page.height, page.index
    );
    if page.dpi > 0.0 {
        let dpi = page.dpi.round() as i64;
        title.push_str(&format!("; scan_res {dpi} {dpi}"));
    }
    if let PageOutcome::Failed { reason } = &page.outcome {
        title.push_str(&format!("; x_failed \"{}\"", reason.replace('"', "'")));
    }
    s.push_str(&format!(
        "<div class=\"ocr_page\" id=\"page_{n}\" title=\"{}\">\n",
        escape(&title)
    ));
    let lang = language_tag(page.language.as_deref())
        .map(|l| format!(" lang=\"{l}\" xml:lang=\"{l}\""))
        .unwrap_or_default();
    let mut line_no = 0;
    let mut word_no = 0;
    for (b, block) in page.blocks.iter().enumerate() {
        if block.lines.is_empty() {
            continue;
        }
        let b = b + 1;
        s.push_str(&format!(
            "<div class=\"ocr_carea\" id=\"block_{n}_{b}\" title=\"{}\">\n",
            bbox(&block.bbox)
        ));
        s.push_str(&format!(
            "<p class=\"ocr_par\" id=\"par_{n}_{b}\"{lang} title=\"{}\">\n",
            bbox(&block.bbox)
        ));
        write_lines(block, n, (&mut line_no, &mut word_no), s);
        s.push_str("</p>\n</div>\n");
    }
    s.push_str("</div>\n");
}

fn write_lines(
    block: &Block,
    n: usize,
    (line_no, word_no): (&mut usize, &mut usize),
    s: &mut String,
) {
    let class = match block.kind {
        BlockKind::Heading { .. } => "ocr_header",
        BlockKind::Caption => "ocr_caption",
        _ => "ocr_line",
    };
    for line in &block.lines {
        *line_no += 1;
        let size = line.bbox.height().round().max(1.0) as i64;
        s.push_str(&format!(
            "<span class=\"{class}\" id=\"line_{n}_{line_no}\" title=\"{}; x_size {size}\">",
            bbox(&line.bbox)
        ));
        for (i, word) in line.words.iter().enumerate() {
            *word_no += 1;
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&format!(
                "<span class=\"ocrx_word\" id=\"word_{n}_{word_no}\" title=\"{}; x_wconf {}\">{}</span>",
                bbox(&word.bbox),
                wconf(word.confidence),
                escape(&word.text)
            ));
        }
        s.push_str("</span>\n");
    }
}

/// Confidence as hOCR's integer percentage.
fn wconf(c: f32) -> i64 {
    (c.clamp(0.0, 1.0) * 100.0).round() as i64
}
