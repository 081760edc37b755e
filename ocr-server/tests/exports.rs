//! Every export format checked by its own ecosystem's tools, not only by us: poppler and qpdf
//! for the searchable PDF, python-docx for docx, the XHTML DTD for hOCR, the ALTO 4.4 XSD, the
//! job's JSON Schema, Python's csv reader. The checkers are installed by `tools/test-tools.sh`
//! (run by the README's test command, `bash tools/test.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

use ocr_core::{
    BBox, Block, BlockKind, Cell, Document, Line, Page, PageOutcome, Rotation, Table, TextSource,
    Word,
};
use ocr_formats::{ExportOptions, Format, PageImage, export};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tools() -> PathBuf {
    let dir = std::env::var_os("OCR_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/test-tools"));
    assert!(
        dir.join("venv/bin/python").exists() && dir.join("schemas/ok").exists(),
        "the export checkers are missing from {}: run `bash tools/test-tools.sh` \
         (the README's test command `bash tools/test.sh` does)",
        dir.display()
    );
    dir
}

/// Runs a command and returns its standard output; panics with its stderr if it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tools/check_export.py KIND FILE [ARG]` in the checkers' Python.
fn check(kind: &str, file: &Path, arg: Option<&Path>) -> String {
    let mut cmd = Command::new(tools().join("venv/bin/python"));
    cmd.arg(root().join("tools/check_export.py"))
        .arg(kind)
        .arg(file);
    if let Some(arg) = arg {
        cmd.arg(arg);
    }
    run(&mut cmd)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `ocr recognize INPUT -f FORMAT -o DIR/out.FORMAT`.
fn recognize(input: &Path, format: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("out.{format}"));
    run(Command::new(env!("CARGO_BIN_EXE_ocr"))
        .arg("recognize")
        .arg(input)
        .args(["-f", format, "-o"])
        .arg(&out));
    out
}

fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Character error rate of `got` against `want`, whitespace runs counted as one space.
fn cer(want: &str, got: &str) -> f64 {
    let (a, b): (Vec<char>, Vec<char>) =
        (words(want).chars().collect(), words(got).chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()] as f64 / a.len().max(1) as f64
}

/// `(text, [x0, y0, x1, y1])` of every `<word>` of `pdftotext -bbox` output, in points.
fn pdf_words(pdf: &Path) -> Vec<(String, [f64; 4])> {
    let html = run(Command::new("pdftotext").arg("-bbox").arg(pdf).arg("-"));
    html.lines()
        .filter(|l| l.trim_start().starts_with("<word "))
        .map(|l| {
            let attr = |name: &str| -> f64 {
                l.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .and_then(|s| s.parse().ok())
                    .expect("a coordinate")
            };
            let text = l
                .split('>')
                .nth(1)
                .and_then(|s| s.split('<').next())
                .unwrap_or("");
            let text = text
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"");
            (
                text,
                [attr("xMin"), attr("yMin"), attr("xMax"), attr("yMax")],
            )
        })
        .collect()
}

#[test]
fn a_recognised_page_passes_every_formats_checker() {
    let dir = scratch("exports_letter");
    let input = root().join("fixtures/images/letter.png");
    let txt = std::fs::read_to_string(recognize(&input, "txt", &dir)).expect("txt");
    assert!(txt.contains("Payment reminder"), "{txt}");
    let json_path = recognize(&input, "json", &dir);
    let job: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("json")).expect("json");

    // json: the job's schema.
    check(
        "json",
        &json_path,
        Some(&root().join("ocr-formats/schema/job.schema.json")),
    );

    // pdf: qpdf finds nothing wrong, pdftotext recovers the text, every word on its box, and the
    // page renders as the original image.
    let pdf = recognize(&input, "pdf", &dir);
    run(Command::new("qpdf").arg("--check").arg(&pdf));
    let text = run(Command::new("pdftotext").arg(&pdf).arg("-"));
    let error = cer(&txt, &text);
    assert!(error <= 0.005, "pdftotext CER {error}: {text:?} vs {txt:?}");
    let page = &job["pages"][0];
    let px_per_pt = page["dpi"].as_f64().expect("dpi") / 72.0;
    let ours: Vec<(String, Vec<f64>)> = page["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .flat_map(|b| b["lines"].as_array().expect("lines").iter())
        .flat_map(|l| l["words"].as_array().expect("words").iter())
        .map(|w| {
            let bbox = w["bbox"]
                .as_array()
                .expect("bbox")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect();
            (w["text"].as_str().expect("text").to_string(), bbox)
        })
        .collect();
    let theirs = pdf_words(&pdf);
    assert_eq!(theirs.len(), ours.len(), "{theirs:?}");
    for ((text, pt), (want_text, want)) in theirs.iter().zip(&ours) {
        assert_eq!(text, want_text);
        for (got, want) in pt.iter().zip(want) {
            let off = (got * px_per_pt - want).abs();
            assert!(
                off <= 2.0,
                "{text}: box {pt:?} pt is {off:.1} px off {want:?}"
            );
        }
    }
    let dpi = page["dpi"].as_f64().expect("dpi").round().to_string();
    run(Command::new("pdftoppm")
        .args(["-r", &dpi, "-png", "-singlefile"])
        .arg(&pdf)
        .arg(dir.join("rendered")));
    let rendered = image::open(dir.join("rendered.png"))
        .expect("rendered page")
        .to_rgb8();
    let original = image::open(&input).expect("original").to_rgb8();
    assert_eq!(rendered.dimensions(), original.dimensions());
    // Poppler resamples the image as it draws it: glyph edges differ a little, nothing more.
    let diffs: Vec<u8> = rendered
        .as_raw()
        .iter()
        .zip(original.as_raw())
        .map(|(&a, &b)| a.abs_diff(b))
        .collect();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    let far = diffs.iter().filter(|&&d| d > 64).count() as f64 / diffs.len() as f64;
    assert!(
        mean < 3.0 && far < 0.02,
        "the rendered page differs from the original: {mean:.2} per sample, {:.1}% by more than 64",
        far * 100.0
    );

    // docx: python-docx reads the same lines, and the heading is a heading.
    let docx = check("docx", &recognize(&input, "docx", &dir), None);
    let docx_text: Vec<&str> = docx
        .lines()
        .filter(|l| !l.starts_with("#style") && !l.starts_with("#list"))
        .collect();
    let txt_lines: Vec<&str> = txt.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(docx_text, txt_lines);
    assert!(docx.contains("#style Heading"), "{docx}");

    // hOCR and ALTO: their DTD and schema.
    check(
        "hocr",
        &recognize(&input, "hocr", &dir),
        Some(&tools().join("schemas")),
    );
    check(
        "alto",
        &recognize(&input, "alto", &dir),
        Some(&tools().join("schemas")),
    );

    // csv: without tables, one record per line under a header, three fields each.
    let shape = check("csv", &recognize(&input, "csv", &dir), None);
    assert_eq!(
        shape.trim(),
        format!(
            "{} {}",
            txt_lines.len() + 1,
            vec!["3"; txt_lines.len() + 1].join(" ")
        )
    );
}

#[test]
fn a_born_digital_pdf_exports_a_searchable_pdf_page_per_page() {
    let dir = scratch("exports_born_digital");
    let input = root().join("fixtures/pdf/letter_3p.pdf");
    let txt = std::fs::read_to_string(recognize(&input, "txt", &dir)).expect("txt");
    let pdf = recognize(&input, "pdf", &dir);
    run(Command::new("qpdf").arg("--check").arg(&pdf));
    let text = run(Command::new("pdftotext").arg(&pdf).arg("-"));
    assert_eq!(text.matches('\u{c}').count(), 3, "three pages");
    let error = cer(&txt, &text);
    assert!(error <= 0.005, "pdftotext CER {error}");
    // The pages were copied with their vector content: the original's text exactly, its font,
    // and no page image.
    let original = run(Command::new("pdftotext").arg(&input).arg("-"));
    assert_eq!(text, original);
    let fonts = run(Command::new("pdffonts").arg(&pdf));
    assert!(
        fonts.contains("Helvetica") && !fonts.contains("GlyphLessFont"),
        "{fonts}"
    );
    let images = run(Command::new("pdfimages").arg("-list").arg(&pdf));
    assert_eq!(images.lines().count(), 2, "no images expected: {images}");
    check(
        "alto",
        &recognize(&input, "alto", &dir),
        Some(&tools().join("schemas")),
    );
    check(
        "hocr",
        &recognize(&input, "hocr", &dir),
        Some(&tools().join("schemas")),
    );
    check(
        "json",
        &recognize(&input, "json", &dir),
        Some(&root().join("ocr-formats/schema/job.schema.json")),
    );
}

/// A page of lines in several scripts, one word per line, boxes 30 px per character.
fn scripts_document() -> (Document, Vec<&'static str>) {
    let lines = vec![
        "東京都の天気",
        "Ærøskøbing",
        "naïve",
        "Šťastný",
        "Καλημέρα",
        "мир",
        "مرحبا",
        "שלום",
    ];
    let mut blocks = Vec::new();
    for (i, text) in lines.iter().enumerate() {
        let y = 100.0 + 80.0 * i as f32;
        let word = Word {
            text: text.to_string(),
            bbox: BBox::new(
                100.0,
                y,
                100.0 + 30.0 * text.chars().count() as f32,
                y + 40.0,
            ),
            confidence: 0.9,
        };
        blocks.push(Block::from_lines(
            BlockKind::Paragraph,
            vec![Line::from_words(vec![word])],
        ));
    }
    // A table with a cell spanning two columns and one spanning two rows.
    let cell = |row, column, row_span, column_span, text: &str| Cell {
        row,
        column,
        row_span,
        column_span,
        header: row == 0,
        text: text.to_string(),
        bbox: BBox::default(),
    };
    let mut table = Block::from_lines(BlockKind::Table, Vec::new());
    table.table = Some(Table {
        rows: 3,
        columns: 3,
        cells: vec![
            cell(0, 0, 1, 2, "名前 Name"),
            cell(0, 2, 1, 1, "Ümlaut"),
            cell(1, 0, 2, 1, "Tall"),
            cell(1, 1, 1, 1, "b"),
            cell(1, 2, 1, 1, "c"),
            cell(2, 1, 1, 1, "e"),
            cell(2, 2, 1, 1, "f"),
        ],
    });
    blocks.push(table);
    let page = Page {
        index: 0,
        width: 1000,
        height: 800,
        dpi: 100.0,
        rotation: Rotation::R0,
        language: None,
        blocks,
        outcome: PageOutcome::Done {
            source: TextSource::Recognition,
        },
    };
    (
        Document {
            pages: vec![page, Page::failed(1, "corrupt")],
        },
        lines,
    )
}

#[test]
fn every_script_survives_pdf_and_docx() {
    let dir = scratch("exports_scripts");
    let (doc, lines) = scripts_document();
    let white = image::RgbImage::from_pixel(1000, 800, image::Rgb([250, 250, 250]));
    let images: std::collections::HashMap<usize, PageImage> =
        [(0, PageImage::encode(&white).expect("encode"))].into();
    for format in [Format::Pdf, Format::Docx] {
        let path = dir.join(format!("scripts.{}", format.extension()));
        let mut out = Vec::new();
        let options = ExportOptions {
            pretty: false,
            images: Some(&images),
            job: None,
            tables_only: false,
        };
        export(&doc, format, &options, &mut out).expect("export");
        std::fs::write(&path, out).expect("write");
        let text = if format == Format::Pdf {
            run(Command::new("qpdf").arg("--check").arg(&path));
            let words = pdf_words(&path);
            // Each word on its box (100 dpi: 1.389 px per point).
            for ((text, pt), want) in words.iter().zip(&lines) {
                let chars = want.chars().count() as f64;
                let x1 = pt[2] * 100.0 / 72.0;
                assert!((x1 - (100.0 + 30.0 * chars)).abs() <= 2.0, "{text}: {pt:?}");
            }
            // pdftotext wraps right-to-left runs in embedding marks.
            run(Command::new("pdftotext").arg(&path).arg("-")).replace(['\u{202B}', '\u{202C}'], "")
        } else {
            check("docx", &path, None)
        };
        for want in &lines {
            assert!(text.contains(want), "{format:?} lost {want:?}: {text:?}");
        }
        if format == Format::Docx {
            // python-docx repeats a merged cell's text in every grid position it covers.
            let rows = ["名前 Name\t名前 Name\tÜmlaut", "Tall\tb\tc", "Tall\te\tf"];
            assert!(text.contains(&rows.join("\n")), "{text}");
        }
    }
}
