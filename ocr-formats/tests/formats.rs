//! Every exporter on fixed documents (insta snapshots of the text formats and of the docx and
//! PDF parts that carry the text), Markdown read back by a CommonMark parser, and a property
//! test that no document, however odd, makes an exporter panic or write something its format
//! cannot carry.

use std::collections::HashMap;
use std::io::Read;

use ocr_core::image::RgbImage;
use ocr_core::{
    BBox, Block, BlockKind, Cell, Document, Line, Page, PageOutcome, Rotation, Table, TextSource,
    Word,
};
use ocr_formats::{ExportOptions, Format, PageImage, PageSources, export};
use proptest::prelude::*;

fn word(text: &str, x: f32, y: f32, confidence: f32) -> Word {
    // Monospaced boxes: 20 px per character, 40 px high.
    Word {
        text: text.to_string(),
        bbox: BBox::new(x, y, x + 20.0 * text.chars().count() as f32, y + 40.0),
        confidence,
    }
}

/// A line of words starting at (`x`, `y`), one space (20 px) between words.
fn line(text: &str, x: f32, y: f32) -> Line {
    let mut at = x;
    let words = text
        .split(' ')
        .map(|t| {
            let w = word(t, at, y, 0.97);
            at = w.bbox.x1 + 20.0;
            w
        })
        .collect();
    Line::from_words(words)
}

fn page(index: usize, blocks: Vec<Block>) -> Page {
    Page {
        index,
        width: 1700,
        height: 2200,
        dpi: 200.0,
        rotation: Rotation::R0,
        language: Some("en".into()),
        blocks,
        outcome: PageOutcome::Done {
            source: TextSource::Recognition,
        },
    }
}

fn cell(row: usize, column: usize, span: (usize, usize), text: &str) -> Cell {
    Cell {
        row,
        column,
        row_span: span.0,
        column_span: span.1,
        header: row == 0,
        text: text.to_string(),
        bbox: BBox::new(
            100.0 + 300.0 * column as f32,
            900.0 + 60.0 * row as f32,
            400.0 + 300.0 * column as f32,
            960.0 + 60.0 * row as f32,
        ),
    }
}

/// A report: a heading, a paragraph with markup characters, a list item, a table with a
/// spanning cell; then a failed page, a page in several scripts, and an empty page.
fn report() -> Document {
    let mut table = Block::from_lines(
        BlockKind::Table,
        vec![
            line("Item Qty Price", 100.0, 900.0),
            line("Widget, large 2 \"10.00\"", 100.0, 960.0),
        ],
    );
    table.table = Some(Table {
        rows: 3,
        columns: 3,
        cells: vec![
            cell(0, 0, (1, 1), "Item"),
            cell(0, 1, (1, 1), "Qty"),
            cell(0, 2, (1, 1), "Price"),
            cell(1, 0, (1, 1), "Widget, large"),
            cell(1, 1, (1, 1), "2"),
            cell(1, 2, (1, 1), "\"10.00\""),
            cell(2, 0, (1, 2), "Total | all"),
            cell(2, 2, (1, 1), "20.00"),
        ],
    });
    let first = page(
        0,
        vec![
            Block::from_lines(
                BlockKind::Heading { level: 1 },
                vec![line("Quarterly report", 100.0, 100.0)],
            ),
            Block::from_lines(
                BlockKind::Paragraph,
                vec![
                    line("Sales rose by 5% in Q3 <est.> & costs fell.", 100.0, 300.0),
                    line("# not a heading * not a list", 100.0, 350.0),
                ],
            ),
            Block::from_lines(
                BlockKind::ListItem,
                vec![line("1. First point", 100.0, 500.0)],
            ),
            table,
        ],
    );
    let mut scripts = page(
        2,
        vec![
            Block::from_lines(
                BlockKind::Paragraph,
                vec![
                    line("東京都の天気 晴れ", 100.0, 100.0),
                    line("Ærøskøbing café naïve Šťastný", 100.0, 160.0),
                    line("Καλημέρα κόσμε", 100.0, 220.0),
                    line("𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀", 100.0, 280.0),
                ],
            ),
            Block::from_lines(
                BlockKind::Paragraph,
                vec![
                    line("مرحبا بالعالم", 100.0, 400.0),
                    line("שלום עולם", 100.0, 460.0),
                ],
            ),
        ],
    );
    scripts.language = None;
    let mut empty = page(3, Vec::new());
    empty.language = None;
    Document {
        pages: vec![
            first,
            Page::failed(1, "the page image is corrupt"),
            scripts,
            empty,
        ],
    }
}

fn render(document: &Document, format: Format, options: &ExportOptions<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    export(document, format, options, &mut out).expect("export");
    out
}

fn text(document: &Document, format: Format) -> String {
    String::from_utf8(render(document, format, &ExportOptions::default())).expect("utf-8")
}

#[test]
fn text_formats_match_their_snapshots() {
    let doc = report();
    for format in [
        Format::Txt,
        Format::Md,
        Format::Csv,
        Format::Hocr,
        Format::Alto,
    ] {
        insta::assert_snapshot!(format.extension(), text(&doc, format));
    }
    let json = String::from_utf8(render(
        &doc,
        Format::Json,
        &ExportOptions {
            pretty: true,
            images: None,
            job: None,
            tables_only: false,
        },
    ))
    .expect("utf-8");
    insta::assert_snapshot!("json", json);
}

#[test]
fn csv_without_tables_lists_the_lines() {
    let mut doc = report();
    for page in &mut doc.pages {
        for block in &mut page.blocks {
            block.table = None;
        }
    }
    let csv = text(&doc, Format::Csv);
    let mut rows = csv.split("\r\n");
    assert_eq!(rows.next(), Some("page,line,text"));
    assert_eq!(rows.next(), Some("1,1,Quarterly report"));
    assert!(csv.contains("3,5,مرحبا بالعالم\r\n"), "{csv}");
}

/// `tool=extract-tables`: Markdown and CSV carry the tables alone; a document without one says
/// so in Markdown, CSV and the JSON's `notice`; the JSON counts the tables and gives their HTML.
#[test]
fn read_for_tables_the_exports_carry_the_tables_or_say_there_are_none() {
    let tables_only = ExportOptions {
        tables_only: true,
        ..ExportOptions::default()
    };
    let doc = report();
    let md = String::from_utf8(render(&doc, Format::Md, &tables_only)).unwrap();
    assert!(md.starts_with("## Table 1 (page 1)\n\n| "), "{md}");
    assert!(!md.contains("Quarterly"), "only the tables: {md}");
    let json: serde_json::Value =
        serde_json::from_slice(&render(&doc, Format::Json, &tables_only)).unwrap();
    assert_eq!(json["table_count"], 1);
    assert!(json.get("notice").is_none());
    assert_eq!(json["markdown"], md.trim_end());
    let html = json["pages"][0]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| b["table"]["html"].as_str())
        .unwrap();
    assert!(html.starts_with("<table><thead><tr><td"), "{html}");

    let mut without = report();
    for block in without.pages.iter_mut().flat_map(|p| &mut p.blocks) {
        block.table = None;
    }
    let md = String::from_utf8(render(&without, Format::Md, &tables_only)).unwrap();
    assert_eq!(md, "No table was found in this document.\n");
    let csv = String::from_utf8(render(&without, Format::Csv, &tables_only)).unwrap();
    assert_eq!(csv, "note\r\nno table was found in this document\r\n");
    let json: serde_json::Value =
        serde_json::from_slice(&render(&without, Format::Json, &tables_only)).unwrap();
    assert_eq!(json["table_count"], 0);
    assert_eq!(json["notice"], "no table was found in this document");
    // Without the preset the same document's exports are the usual ones.
    let json: serde_json::Value =
        serde_json::from_slice(&render(&without, Format::Json, &ExportOptions::default())).unwrap();
    assert!(json.get("notice").is_none());
}

#[test]
fn markdown_reads_back_as_headings_paragraphs_and_a_table() {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let md = text(&report(), Format::Md);
    let mut headings = Vec::new();
    let mut cells = Vec::new();
    let mut texts = String::new();
    let (mut in_heading, mut in_cell) = (false, false);
    let mut rules = 0;
    let mut lists = Vec::new();
    for event in Parser::new_ext(&md, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                in_heading = true;
                headings.push((level as u8, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => in_heading = false,
            Event::Start(Tag::TableCell) => {
                in_cell = true;
                cells.push(String::new());
            }
            Event::End(TagEnd::TableCell) => in_cell = false,
            Event::Rule => rules += 1,
            Event::Start(Tag::List(start)) => lists.push(start),
            Event::Text(t) => {
                texts.push_str(&t);
                if in_heading {
                    headings.last_mut().expect("heading").1.push_str(&t);
                }
                if in_cell {
                    cells.last_mut().expect("cell").push_str(&t);
                }
            }
            _ => {}
        }
    }
    assert_eq!(headings, vec![(1, "Quarterly report".to_string())]);
    assert_eq!(
        cells,
        [
            "Item",
            "Qty",
            "Price",
            "Widget, large",
            "2",
            "\"10.00\"",
            "Total | all",
            "",
            "20.00"
        ]
    );
    // Escaped markup comes back as the literal text.
    assert!(texts.contains("Sales rose by 5% in Q3 <est.> & costs fell."));
    assert!(texts.contains("# not a heading * not a list"));
    // The numbered list item is an ordered list that keeps its number.
    assert!(texts.contains("First point"));
    // A rule between each pair of pages; the list item is the only list.
    assert_eq!(rules, 3);
    assert_eq!(lists, [Some(1)], "escaped text became a list:\n{md}");
}

/// The named part of a zip archive, as text.
fn zip_part(bytes: &[u8], name: &str) -> String {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip file");
    let mut part = zip.by_name(name).expect("the part");
    let mut s = String::new();
    part.read_to_string(&mut s).expect("utf-8");
    s
}

#[test]
fn docx_document_matches_its_snapshot() {
    let bytes = render(&report(), Format::Docx, &ExportOptions::default());
    let names: Vec<String> = zip::ZipArchive::new(std::io::Cursor::new(&bytes))
        .expect("zip")
        .file_names()
        .map(|n| n.expect("a file name").to_string())
        .collect();
    assert!(names.contains(&"[Content_Types].xml".to_string()));
    let document = zip_part(&bytes, "word/document.xml");
    // Right-to-left paragraphs are marked so.
    assert!(document.contains("<w:bidi/>"));
    insta::assert_snapshot!("docx_document", document.replace("<w:p>", "\n<w:p>"));
}

/// Every stream of a PDF written by the exporter, inflated where it was deflated.
fn pdf_streams(pdf: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut streams = Vec::new();
    let mut rest = pdf;
    while let Some(at) = find(rest, b">>\nstream\n").map(|i| i + 3) {
        let dict_start = rfind(&rest[..at], b"obj\n<<").expect("a stream dictionary") + 4;
        let dict = String::from_utf8_lossy(&rest[dict_start..at]).to_string();
        let length: usize = dict
            .split("/Length ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .expect("a length");
        let data = &rest[at + 7..at + 7 + length];
        let data = if dict.contains("/FlateDecode") && !dict.contains("/Subtype /Image") {
            let mut inflated = Vec::new();
            flate2::read::ZlibDecoder::new(data)
                .read_to_end(&mut inflated)
                .expect("zlib");
            inflated
        } else {
            data.to_vec()
        };
        streams.push((dict, data));
        rest = &rest[at + 7 + length..];
    }
    streams
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

#[test]
fn pdf_text_layer_matches_its_snapshot() {
    let doc = report();
    let white = RgbImage::from_pixel(1700, 2200, ocr_core::image::Rgb([255, 255, 255]));
    let images: HashMap<usize, PageImage> = [0, 2, 3]
        .into_iter()
        .map(|i| (i, PageImage::encode(&white).expect("encode")))
        .collect();
    let pdf = render(
        &doc,
        Format::Pdf,
        &ExportOptions {
            pretty: false,
            images: Some(&images),
            job: None,
            tables_only: false,
        },
    );
    assert!(pdf.starts_with(b"%PDF-1.7"));
    assert!(pdf.ends_with(b"%%EOF\n"));
    let streams = pdf_streams(&pdf);
    let text: Vec<String> = streams
        .iter()
        .filter(|(dict, data)| {
            !dict.contains("/Subtype") && data.starts_with(b"q ") || data.starts_with(b"BT")
        })
        .map(|(_, data)| String::from_utf8_lossy(data).to_string())
        .collect();
    let cmap = streams
        .iter()
        .map(|(_, data)| String::from_utf8_lossy(data).to_string())
        .find(|s| s.contains("begincmap"))
        .expect("a ToUnicode map");
    // Characters outside the BMP map to surrogate pairs.
    assert!(cmap.contains("<D835DD18>"), "{cmap}");
    insta::assert_snapshot!("pdf_content", text.join("\n---\n"));
    insta::assert_snapshot!("pdf_to_unicode", cmap);
}

/// A document of `n` pages read from a PDF's text layer.
fn text_layer_pages(n: usize) -> Document {
    Document {
        pages: (0..n)
            .map(|i| {
                let mut p = page(
                    i,
                    vec![Block::from_lines(
                        BlockKind::Paragraph,
                        vec![line("Chapter", 100.0, 100.0)],
                    )],
                );
                p.outcome = PageOutcome::Done {
                    source: TextSource::TextLayer,
                };
                p
            })
            .collect(),
    }
}

#[test]
fn born_digital_pages_are_copied_from_the_source_pdf() {
    let source = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/pdf/letter_3p.pdf"
    ))
    .expect("fixture");
    let sources = PageSources {
        images: HashMap::new(),
        pdf: Some(source),
    };
    let options = ExportOptions {
        pretty: false,
        images: Some(&sources),
        job: None,
        tables_only: false,
    };
    let pdf = render(&text_layer_pages(3), Format::Pdf, &options);
    let s = String::from_utf8_lossy(&pdf);
    // The original's font, once for the three pages, and none of ours.
    assert_eq!(s.matches("/BaseFont /Helvetica").count(), 1, "{s}");
    assert_eq!(
        s.matches("/Type /Page ").count() + s.matches("/Type /Page>").count(),
        3
    );
    assert!(
        !s.contains("/Tf"),
        "no text layer is added over copied pages"
    );
}

#[test]
fn a_broken_source_pdf_falls_back_to_the_images() {
    let good = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/pdf/letter_3p.pdf"
    ))
    .expect("fixture");
    let broken: Vec<Vec<u8>> = vec![
        b"%PDF-1.7\ngarbage".to_vec(),
        good[..good.len() / 2].to_vec(),
        good.iter()
            .map(|b| if *b == b'R' { b'Q' } else { *b })
            .collect(),
        Vec::new(),
    ];
    for pdf in broken {
        let sources = PageSources {
            images: HashMap::new(),
            pdf: Some(pdf),
        };
        let options = ExportOptions {
            pretty: false,
            images: Some(&sources),
            job: None,
            tables_only: false,
        };
        let out = render(&text_layer_pages(3), Format::Pdf, &options);
        assert!(out.ends_with(b"%%EOF\n"));
    }
}

/// Strings from every corner of Unicode, control characters included.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\PC]{0,12}",
        "[\\u{0}-\\u{1F}<>&\"'|*#\\\\]{0,8}",
        "[\\u{590}-\\u{6FF}\\u{4E00}-\\u{4E40}\\u{1F600}-\\u{1F640}\\u{E000}-\\u{E010}\\u{FFF0}-\\u{FFFF}]{0,10}",
    ]
}

fn any_number() -> impl Strategy<Value = f32> {
    prop_oneof![
        -10.0f32..5000.0,
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(1e30f32),
        Just(-0.0f32),
    ]
}

fn any_word() -> impl Strategy<Value = Word> {
    (
        any_text(),
        any_number(),
        any_number(),
        any_number(),
        any_number(),
        any_number(),
    )
        .prop_map(|(text, x0, y0, x1, y1, confidence)| Word {
            text,
            bbox: BBox { x0, y0, x1, y1 },
            confidence,
        })
}

fn any_block() -> impl Strategy<Value = Block> {
    let kinds = prop_oneof![
        Just(BlockKind::Paragraph),
        (0u8..10).prop_map(|level| BlockKind::Heading { level }),
        Just(BlockKind::ListItem),
        Just(BlockKind::Caption),
        Just(BlockKind::Table),
    ];
    let cells = proptest::collection::vec(
        (
            0usize..6,
            0usize..6,
            0usize..4,
            0usize..4,
            any::<bool>(),
            any_text(),
        ),
        0..10,
    );
    (
        kinds,
        proptest::collection::vec(proptest::collection::vec(any_word(), 0..5), 0..4),
        proptest::option::of((0usize..8, 0usize..8, cells)),
    )
        .prop_map(|(kind, lines, table)| {
            let mut block =
                Block::from_lines(kind, lines.into_iter().map(Line::from_words).collect());
            block.table = table.map(|(rows, columns, cells)| Table {
                rows,
                columns,
                cells: cells
                    .into_iter()
                    .map(|(row, column, row_span, column_span, header, text)| Cell {
                        row,
                        column,
                        row_span,
                        column_span,
                        header,
                        text,
                        bbox: BBox::default(),
                    })
                    .collect(),
            });
            block
        })
}

fn any_page() -> impl Strategy<Value = Page> {
    (
        0usize..1000,
        prop_oneof![Just(0u32), 1u32..5000, Just(200_000u32)],
        prop_oneof![Just(0u32), 1u32..5000],
        any_number(),
        proptest::option::of(any_text()),
        proptest::collection::vec(any_block(), 0..4),
        proptest::option::of(any_text()),
    )
        .prop_map(
            |(index, width, height, dpi, language, blocks, failure)| Page {
                index,
                width,
                height,
                dpi,
                rotation: Rotation::R0,
                language,
                blocks,
                outcome: match failure {
                    Some(reason) => PageOutcome::Failed { reason },
                    None => PageOutcome::Done {
                        source: TextSource::Recognition,
                    },
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_exporter_takes_any_document(pages in proptest::collection::vec(any_page(), 0..4)) {
        let doc = Document { pages };
        for format in Format::ALL {
            let out = render(&doc, format, &ExportOptions::default());
            match format {
                Format::Json => {
                    let v: serde_json::Value = serde_json::from_slice(&out).expect("valid json");
                    prop_assert_eq!(v["page_count"].as_u64(), Some(doc.pages.len() as u64));
                }
                Format::Hocr | Format::Alto => {
                    let s = String::from_utf8(out).expect("utf-8");
                    prop_assert!(
                        !s.chars().any(|c| (c < ' ' && !"\t\n\r".contains(c)) || c == '\u{FFFF}' || c == '\u{FFFE}'),
                        "a character XML cannot carry"
                    );
                }
                Format::Pdf => prop_assert!(out.ends_with(b"%%EOF\n")),
                _ => {}
            }
        }
    }
}

/// docx lists are Word lists: bullets on the bullet list, a run of numbered items on a numbered
/// list starting at its first number (a new run, a new list), markers left to Word; captions
/// in the Caption style.
#[test]
fn docx_lists_are_word_lists_and_captions_have_their_style() {
    let item =
        |text: &str, y: f32| Block::from_lines(BlockKind::ListItem, vec![line(text, 100.0, y)]);
    let doc = Document {
        pages: vec![page(
            0,
            vec![
                item("• Apples", 100.0),
                item("• Pears", 150.0),
                item("3. Third step", 200.0),
                item("4. Fourth step", 250.0),
                Block::from_lines(
                    BlockKind::Caption,
                    vec![line("Figure 2: Steps", 100.0, 300.0)],
                ),
                item("1) Again", 350.0),
            ],
        )],
    };
    let docx = render(&doc, Format::Docx, &ExportOptions::default());
    let body = zip_part(&docx, "word/document.xml");
    let numbering = zip_part(&docx, "word/numbering.xml");
    // Two numbered lists after the bullet list (id 1): ids 2 (from 3) and 3 (from 1).
    assert!(numbering.contains("<w:num w:numId=\"2\"><w:abstractNumId w:val=\"1\"/><w:lvlOverride w:ilvl=\"0\"><w:startOverride w:val=\"3\"/>"), "{numbering}");
    assert!(numbering.contains("<w:num w:numId=\"3\"><w:abstractNumId w:val=\"1\"/><w:lvlOverride w:ilvl=\"0\"><w:startOverride w:val=\"1\"/>"), "{numbering}");
    let ids: Vec<&str> = body
        .split("<w:numId w:val=\"")
        .skip(1)
        .map(|s| &s[..1])
        .collect();
    assert_eq!(ids, ["1", "1", "2", "2", "3"]);
    assert!(
        body.contains(">Apples</w:t>") && body.contains(">Third step</w:t>"),
        "{body}"
    );
    assert!(
        !body.contains("3. Third"),
        "the marker is Word's to draw: {body}"
    );
    assert!(body.contains("<w:pStyle w:val=\"Caption\"/>"), "{body}");
    assert!(zip_part(&docx, "word/styles.xml").contains("w:styleId=\"ListParagraph\""));
}
