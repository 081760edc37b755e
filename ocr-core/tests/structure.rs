//! Insta snapshots of the block structure the engine gives a few fixture pages: each block's
//! kind and text, in reading order, with the layout model loaded as the server loads it.

#![allow(clippy::unwrap_used)] // test helpers: a failure should panic with the value

use ocr_core::{BlockKind, DecodeOptions, Engine, InputFile, ModelSize, RecognizeOptions};

use crate::support::fixture;

fn structure(path: &str, pages: Option<Vec<usize>>) -> String {
    let engine = Engine::load_default(ModelSize::Small).expect("shipped models load");
    assert!(engine.layout().is_some(), "the layout model is loaded");
    let file = InputFile::open(fixture(path), DecodeOptions::default()).expect("fixture opens");
    let options = RecognizeOptions {
        pages,
        ..Default::default()
    };
    let doc = engine.recognize(&file, &options, |_, _| {}).unwrap();
    let mut out = String::new();
    for page in &doc.pages {
        out.push_str(&format!("page {}\n", page.index + 1));
        for block in &page.blocks {
            let kind = match block.kind {
                BlockKind::Heading { level } => format!("heading {level}"),
                other => format!("{other:?}").to_lowercase(),
            };
            let text = block.text().replace('\n', " / ");
            let short: String = text.chars().take(70).collect();
            let more = if short.len() < text.len() { "…" } else { "" };
            out.push_str(&format!("  {kind}: {short}{more}\n"));
        }
    }
    out
}

/// A running header, a title, two columns, a captioned table and a page number, drawn.
#[test]
fn a_two_column_page_with_header_table_and_page_number() {
    insta::assert_snapshot!(structure("golden/layout_page.png", None));
}

/// A born-digital report: its text layer, with the regions found on the rendered page.
#[test]
fn a_born_digital_report_page() {
    insta::assert_snapshot!(structure("pdf/report_20p.pdf", Some(vec![0, 1])));
}

/// A scanned-style letter read by OCR.
#[test]
fn a_letter() {
    insta::assert_snapshot!(structure("images/letter.png", None));
}
