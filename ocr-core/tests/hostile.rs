//! Broken and hostile input: every case ends in a typed error or a readable page, never a
//! panic (which the decoder guard would report as `Error::Internal`), within bounded memory.

use ocr_core::{DecodeOptions, Error, InputFile, LimitKind, Limits, PageParts};

use crate::support::fixture;
use crate::support::pdf::{PageSpec, Text, build};

/// Opens and decodes every page; fails the test on an internal error (a caught panic).
fn survive(bytes: Vec<u8>, what: &str) {
    let options = DecodeOptions {
        dpi: 72.0,
        limits: Limits {
            max_page_pixels: 4_000_000,
            ..Limits::default()
        },
    };
    match InputFile::open(bytes, options) {
        Ok(file) => {
            for page in file.pages(PageParts::ALL).take(5) {
                if let Err(e) = page {
                    assert!(e.is_bad_input(), "{what}: {e}");
                }
            }
        }
        Err(e) => assert!(e.is_bad_input(), "{what}: {e}"),
    }
}

/// A deterministic stream of pseudo-random numbers (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "pdf",
            build(&[PageSpec::letter(vec![Text {
                x: 72.0,
                y: 700.0,
                size: 20.0,
                text: "Seed text",
            }])]),
        ),
        ("encrypted pdf", fixture("pdf/encrypted_empty_password.pdf")),
        ("png", fixture("images/pattern.png")),
        ("jpeg", fixture("images/cmyk.jpg")),
        ("g4 tiff", fixture("images/pattern_g4.tif")),
        ("g3 tiff", fixture("images/pattern_g3_2d.tif")),
        ("multipage tiff", fixture("images/multipage.tif")),
    ]
}

#[test]
fn truncated_files_fail_cleanly() {
    for (name, bytes) in seeds() {
        for cut in [
            1,
            4,
            8,
            16,
            64,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            survive(
                bytes[..cut.min(bytes.len())].to_vec(),
                &format!("{name} cut at {cut}"),
            );
        }
    }
}

#[test]
fn mutated_files_fail_cleanly() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (name, bytes) in seeds() {
        for round in 0..150 {
            let mut mutant = bytes.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(mutant.len());
                match rng.below(3) {
                    0 => mutant[at] = rng.next() as u8,
                    1 => mutant[at] ^= 1 << rng.below(8),
                    _ => {
                        let n = rng.below(16).min(mutant.len() - at);
                        mutant.drain(at..at + n);
                    }
                }
                if mutant.is_empty() {
                    break;
                }
            }
            survive(mutant, &format!("{name} mutant {round}"));
        }
    }
}

/// A PNG whose header claims `width` × `height` with a few bytes of data behind it.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = fixture("images/pattern.png");
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    // The IHDR checksum no longer matches; decoders that check it reject the file, others
    // must hit the size limit before allocating.
    bytes
}

#[test]
fn huge_dimensions_are_refused_before_allocation() {
    for (w, h) in [(100_000, 100_000), (60_000, 1), (1, 4_000_000_000)] {
        let file = InputFile::open(png_claiming(w, h), DecodeOptions::default()).expect("open");
        match file.page(0, PageParts::IMAGE) {
            Err(Error::LimitExceeded { what, .. }) => {
                assert!(matches!(
                    what,
                    LimitKind::PagePixels | LimitKind::PageDimension
                ));
            }
            Err(Error::Corrupt { .. }) => {}
            other => panic!("{w}x{h}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn structurally_hostile_pdfs_fail_cleanly() {
    // A page tree whose Kids point back at itself, a zero-sized page, an absurd page count,
    // a content stream that never ends, and an xref pointing nowhere.
    let cases: [(&str, &[u8]); 5] = [
        ("loop", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [2 0 R] /Count 1 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF"),
        ("zero page", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 0 0] >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF"),
        ("count lies", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 100000 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF"),
        ("endless stream", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >> endobj\n4 0 obj << /Length 999999 >> stream\nBT /F1 12 Tf (x) Tj"),
        ("bad xref", b"%PDF-1.4\nxref\n0 1\n0000000000 65535 f \ntrailer << /Root 9 0 R /Size 1 >>\nstartxref\n999999\n%%EOF"),
    ];
    for (name, bytes) in cases {
        survive(bytes.to_vec(), name);
    }
}

#[test]
fn a_type3_font_that_draws_itself_is_refused_not_a_stack_overflow() {
    // Found by the fuzzer: glyph `a` of Type3 font /F draws `(a)` in /F. Rendering it would
    // recurse until the stack overflows and kill the process.
    let pdf = b"%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] /Contents 4 0 R /Resources << /Font << /F 5 0 R >> >> >> endobj
4 0 obj << /Length 21 >> stream
BT /F 10 Tf (a) Tj ET
endstream endobj
5 0 obj << /Type /Font /Subtype /Type3 /FontBBox [0 0 1 1] /FontMatrix [0.001 0 0 0.001 0 0] /CharProcs << /a 6 0 R >> /Encoding << /Differences [97 /a] >> /FirstChar 97 /LastChar 97 /Widths [1000] >> endobj
6 0 obj << /Length 39 >> stream
1000 0 0 0 1 1 d1 BT /F 10 Tf (a) Tj ET
endstream endobj
trailer << /Size 7 /Root 1 0 R >>
%%EOF
";
    let file = InputFile::open(pdf.to_vec(), DecodeOptions::default()).expect("open");
    let err = file.page(0, PageParts::ALL).expect_err("must not render");
    assert_eq!(
        err.to_string(),
        "corrupt pdf file: a Type3 font on this page draws itself recursively"
    );
    // The text layer alone is safe to read.
    assert!(file.page(0, PageParts::TEXT_LAYER).is_ok());
}

/// A page drawing a mesh of 2 000 rules each way over its text (a hostile or pathological
/// drawing) is read from its text layer; the ruled-table search bounds its work and finds no
/// table in a mesh whose cells hold no text as a table's do.
#[test]
fn a_mesh_of_rules_over_text_is_read_without_a_table() {
    let mut mesh = String::from("0.1 w\n");
    for k in 0..2_000 {
        let p = 4.0 * k as f32;
        mesh.push_str(&format!("0 {p} m 8000 {p} l S\n{p} 0 m {p} 8000 l S\n"));
    }
    let page = PageSpec {
        width: 8000.0,
        height: 8000.0,
        rotate: 0,
        texts: vec![Text {
            x: 72.0,
            y: 7900.0,
            size: 12.0,
            text: "Text under a mesh",
        }],
        extra_content: mesh,
    };
    let file = InputFile::open(
        build(&[page]),
        DecodeOptions {
            dpi: 72.0,
            ..DecodeOptions::default()
        },
    )
    .expect("open");
    let doc = ocr_core::Engine::new()
        .recognize(&file, &ocr_core::RecognizeOptions::default(), |_, _| {})
        .expect("read");
    let page = &doc.pages[0];
    assert!(
        page.text().contains("Text under a mesh"),
        "{:?}",
        page.outcome
    );
    assert!(page.blocks.iter().all(|b| b.table.is_none()));
}
