//! ALTO 4.4: `Page` / `PrintSpace` / `TextBlock` / `TextLine` / `String` + `SP`, positions in
//! pixels (`MeasurementUnit` `pixel`), word confidence `WC` in [0, 1], as digitisation archives
//! and OCR-D tools read it. A failed page is a `Page` with no `PrintSpace` whose `PAGECLASS`
//! says `failed: <reason>`. `LANG` is set on blocks when the page's language is a language code.

use std::io::Write;

use ocr_core::{BBox, Document, Page, PageOutcome};

use crate::ExportError;
use crate::text::pixel_box;
use crate::xml::{escape, language_tag};

pub(crate) fn write(document: &Document, out: &mut dyn Write) -> Result<(), ExportError> {
    let mut s = String::new();
    s.push_str(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<alto xmlns=\"http://www.loc.gov/standards/alto/ns-v4#\" ",
        "xmlns:xlink=\"http://www.w3.org/1999/xlink\" ",
        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ",
        "xsi:schemaLocation=\"http://www.loc.gov/standards/alto/ns-v4# ",
        "http://www.loc.gov/alto/v4/alto-4-4.xsd\">\n",
        "<Description>\n<MeasurementUnit>pixel</MeasurementUnit>\n",
        "<sourceImageInformation><fileName></fileName></sourceImageInformation>\n",
        "<OCRProcessing ID=\"ocr\"><ocrProcessingStep><processingSoftware>",
        "<softwareName>ocr-chat</softwareName>",
    ));
    s.push_str(&format!(
        "<softwareVersion>{}</softwareVersion>",
        env!("CARGO_PKG_VERSION")
    ));
    s.push_str(
        "</processingSoftware></ocrProcessingStep></OCRProcessing>\n</Description>\n<Layout>\n",
    );
    for page in &document.pages {
        write_page(page, &mut s);
    }
    s.push_str("</Layout>\n</alto>\n");
    out.write_all(s.as_bytes())?;
    Ok(())
}

/// `HPOS VPOS WIDTH HEIGHT` attributes, in whole pixels.
fn position(b: &BBox) -> String {
    let [x0, y0, x1, y1] = pixel_box(b);
    format!(
        "HPOS=\"{x0}\" VPOS=\"{y0}\" WIDTH=\"{}\" HEIGHT=\"{}\"",
        x1 - x0,
        y1 - y0
    )
}

fn write_page(page: &Page, s: &mut String) {
    let n = page.index + 1;
    let mut attrs = format!(
        "ID=\"page_{n}\" PHYSICAL_IMG_NR=\"{n}\" WIDTH=\"{}\" HEIGHT=\"{}\"",
        page.width, page.height
    );
    if let Some(pc) = page.mean_confidence() {
        attrs.push_str(&format!(" PC=\"{:.4}\"", pc.clamp(0.0, 1.0)));
    }
    match &page.outcome {
        PageOutcome::Failed { reason } => {
            s.push_str(&format!(
                "<Page {attrs} PROCESSING=\"ocr\" PAGECLASS=\"failed: {}\"/>\n",
                escape(reason)
            ));
            return;
        }
        PageOutcome::Done { .. } => {}
    }
    s.push_str(&format!("<Page {attrs}>\n"));
    s.push_str(&format!(
        "<PrintSpace ID=\"page_{n}_space\" HPOS=\"0\" VPOS=\"0\" WIDTH=\"{}\" HEIGHT=\"{}\">\n",
        page.width, page.height
    ));
    let lang = language_tag(page.language.as_deref())
        .map(|l| format!(" LANG=\"{l}\""))
        .unwrap_or_default();
    for (b, block) in page.blocks.iter().enumerate() {
        if block.lines.is_empty() {
            continue;
        }
        let b = b + 1;
        s.push_str(&format!(
            "<TextBlock ID=\"p{n}_b{b}\" {}{lang}>\n",
            position(&block.bbox)
        ));
        for (l, line) in block.lines.iter().enumerate() {
            let l = l + 1;
            s.push_str(&format!(
                "<TextLine ID=\"p{n}_b{b}_l{l}\" {}>",
                position(&line.bbox)
            ));
            for (w, word) in line.words.iter().enumerate() {
                if w > 0 {
                    let prev = &line.words[w - 1].bbox;
                    let gap = BBox::new(prev.x1, prev.y0, word.bbox.x0.max(prev.x1), prev.y1);
                    let (x, y) = (
                        gap.x0.floor().max(0.0) as i64,
                        gap.y0.floor().max(0.0) as i64,
                    );
                    s.push_str(&format!(
                        "<SP WIDTH=\"{}\" HPOS=\"{x}\" VPOS=\"{y}\"/>",
                        gap.width().round().max(0.0) as i64
                    ));
                }
                s.push_str(&format!(
                    "<String ID=\"p{n}_b{b}_l{l}_w{}\" {} CONTENT=\"{}\" WC=\"{:.4}\"/>",
                    w + 1,
                    position(&word.bbox),
                    escape(&word.text),
                    word.confidence.clamp(0.0, 1.0)
                ));
            }
            s.push_str("</TextLine>\n");
        }
        s.push_str("</TextBlock>\n");
    }
    s.push_str("</PrintSpace>\n</Page>\n");
}
