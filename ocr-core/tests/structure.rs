//! Insta snapshots of the block structure the engine gives a few fixture pages: each block's
//! kind and text, in reading order (a caption names the block it captions, counted from 1), and
//! each table's cells row by row (`[text]`, with `^n`
//! for a row span, `>n` for a column span, `*` for a header cell), with the layout and
//! table-structure models loaded as the server loads them.

#![allow(clippy::unwrap_used)] // test helpers: a failure should panic with the value

use ocr_core::{BlockKind, DecodeOptions, Engine, InputFile, ModelSize, RecognizeOptions};

use crate::support::fixture;

fn structure(path: &str, pages: Option<Vec<usize>>) -> String {
    structure_with(
        path,
        RecognizeOptions {
            pages,
            ..Default::default()
        },
    )
}

fn structure_with(path: &str, options: RecognizeOptions) -> String {
    let engine = Engine::load_default(ModelSize::Small).expect("shipped models load");
    assert!(engine.layout().is_some(), "the layout model is loaded");
    let file = InputFile::open(fixture(path), DecodeOptions::default()).expect("fixture opens");
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
            let link = block
                .caption_of
                .map(|k| format!(" (captions block {})", k + 1))
                .unwrap_or_default();
            out.push_str(&format!("  {kind}: {short}{more}{link}\n"));
            if let Some(table) = &block.table {
                out.push_str(&format!("    {} x {}\n", table.rows, table.columns));
                for row in 0..table.rows {
                    let cells: Vec<String> = table
                        .cells
                        .iter()
                        .filter(|c| c.row == row)
                        .map(|c| {
                            let mut s = format!("[{}]", c.text);
                            if c.row_span > 1 {
                                s.push_str(&format!("^{}", c.row_span));
                            }
                            if c.column_span > 1 {
                                s.push_str(&format!(">{}", c.column_span));
                            }
                            if c.header {
                                s.push('*');
                            }
                            s
                        })
                        .collect();
                    out.push_str(&format!("    {}\n", cells.join(" ")));
                }
            }
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

/// A table on its own (a cropped table image) read for its tables (`tool=extract-tables`): the
/// layout model finds no table region on it, so the whole image is tried as one; its header
/// cell spans two columns.
#[test]
fn a_table_image_read_for_its_tables() {
    insta::assert_snapshot!(structure_with(
        "golden/table.png",
        RecognizeOptions {
            extract_tables: true,
            ..Default::default()
        }
    ));
}
