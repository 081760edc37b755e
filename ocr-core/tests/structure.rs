//! Insta snapshots of the block structure the engine gives a few fixture pages: each block's
//! kind and text, in reading order (a caption names the block it captions, counted from 1), and
//! each table's cells row by row (`[text]`, with `^n`
//! for a row span, `>n` for a column span, `*` for a header cell), with the layout and
//! table-structure models loaded as the server loads them.

#![allow(clippy::unwrap_used)] // test helpers: a failure should panic with the value

use ocr_core::{BlockKind, DecodeOptions, Engine, InputFile, ModelSize, RecognizeOptions};

use crate::support::fixture;
use crate::support::pdf::{PageSpec, Text, build};

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
    structure_of(fixture(path), options)
}

fn structure_of(bytes: Vec<u8>, options: RecognizeOptions) -> String {
    let engine = Engine::load_default(ModelSize::Small).expect("shipped models load");
    assert!(engine.layout().is_some(), "the layout model is loaded");
    let file = InputFile::open(bytes, DecodeOptions::default()).expect("fixture opens");
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

/// A born-digital page with a ruled table (cells stroked one by one, the header's second cell
/// spanning two columns, the body's entries stacked without rules between them) between two
/// paragraphs: the table comes from the rules and the text layer, in its place in the text.
#[test]
fn a_born_digital_ruled_table() {
    let mut texts = vec![
        Text {
            x: 72.0,
            y: 720.0,
            size: 11.0,
            text: "The survey counted visitors at three sites over two years.",
        },
        Text {
            x: 72.0,
            y: 420.0,
            size: 11.0,
            text: "Both years show the same order of sites.",
        },
    ];
    let rows = [
        ["Site", "Visitors", ""],
        ["", "2023", "2024"],
        ["North", "1,204", "1,390"],
        ["South", "877", "902"],
        ["East", "455", "610"],
    ];
    // Rows 0 and 1 ruled; rows 2-4 stacked in one ruled band (from y 620 down to 560).
    let row_top = [680.0f32, 660.0, 640.0, 620.0, 600.0];
    for (cells, top) in rows.iter().zip(row_top) {
        for (k, text) in cells.iter().enumerate() {
            if !text.is_empty() {
                texts.push(Text {
                    x: 80.0 + 120.0 * k as f32,
                    y: top - 14.0,
                    size: 10.0,
                    text,
                });
            }
        }
    }
    let mut rules = String::from("0.5 w\n");
    // Header: "Site" spans both header rows, "Visitors" spans both year columns.
    rules.push_str("72 640 120 40 re S\n192 660 240 20 re S\n");
    rules.push_str("192 640 120 20 re S\n312 640 120 20 re S\n");
    for k in 0..3 {
        rules.push_str(&format!("{} 580 120 60 re S\n", 72 + 120 * k));
    }
    let page = PageSpec {
        extra_content: rules,
        ..PageSpec::letter(texts)
    };
    insta::assert_snapshot!(structure_of(build(&[page]), RecognizeOptions::default()));
}
