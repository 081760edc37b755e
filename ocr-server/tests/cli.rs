//! `ocr recognize` end to end: outputs, page selection, exit codes and error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(path)
}

fn ocr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ocr"))
        .args(args)
        .output()
        .expect("run ocr")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn check(args: &[&str], code: i32, out: &str, err: &str) {
    let o = ocr(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{args:?}\nstderr: {}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), out, "{args:?}");
    assert!(
        stderr(&o).contains(err),
        "{args:?}: stderr {:?} lacks {err:?}",
        stderr(&o)
    );
}

#[test]
fn text_layer_of_a_born_digital_pdf_as_txt() {
    let pdf = fixture("pdf/letter_3p.pdf");
    let expected = "Chapter 2\n\nThis is the first paragraph of page 2.\nIt has two lines of ordinary body text.\n\nA second paragraph closes page 2.\n";
    check(
        &["recognize", pdf.to_str().unwrap(), "--pages", "2"],
        0,
        expected,
        "",
    );
}

#[test]
fn markdown_has_headings_and_page_breaks() {
    let pdf = fixture("pdf/letter_3p.pdf");
    let o = ocr(&[
        "recognize",
        pdf.to_str().unwrap(),
        "--format",
        "md",
        "--pages",
        "1,3",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let md = stdout(&o);
    assert!(
        md.starts_with("# Chapter 1\n\nThis is the first paragraph of page 1."),
        "{md}"
    );
    assert!(md.contains("\n\n---\n\n# Chapter 3\n"), "{md}");
    assert!(!md.contains("Chapter 2"));
}

#[test]
fn json_carries_pages_blocks_lines_and_words() {
    let pdf = fixture("pdf/letter_3p.pdf");
    let out = std::env::temp_dir().join(format!("ocr-cli-test-{}.json", std::process::id()));
    let o = ocr(&[
        "recognize",
        pdf.to_str().unwrap(),
        "-f",
        "json",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let job: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    std::fs::remove_file(&out).ok();
    assert_eq!(job["status"], "done");
    assert_eq!(job["page_count"], 3);
    assert_eq!(job["mean_confidence"], 1.0);
    let page = &job["pages"][0];
    assert_eq!(
        (page["width"].as_u64(), page["height"].as_u64()),
        (Some(1700), Some(2200))
    );
    assert_eq!(page["source"], "text_layer");
    let block = &page["blocks"][0];
    assert_eq!(block["kind"], "heading");
    assert_eq!(block["text"], "Chapter 1");
    let word = &block["lines"][0]["words"][1];
    assert_eq!(word["text"], "1");
    let b: Vec<f64> = word["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // "Chapter 1" in 20 pt Helvetica from x = 72 pt, baseline 720 pt up, rendered at 200 dpi:
    // "Chapter " is 75.6 pt wide, so "1" spans 147.6..158.8 pt (410..441 px); the box runs
    // from 0.8 em above the baseline (y = 200 px) to 0.2 em below it.
    let px = |pt: f64| pt * 200.0 / 72.0;
    let expected = [px(147.6), 200.0 - px(16.0), px(158.8), 200.0 + px(4.0)];
    for (got, want) in b.iter().zip(expected) {
        assert!((got - want).abs() < 4.0, "{b:?} vs {expected:?}");
    }
}

#[test]
fn image_pages_are_recognised() {
    let expected = "Payment reminder\n\nThe quick brown fox jumps over the lazy dog.\n\
                    Invoice 2024-117 is due on 15 March 2025.\n\
                    Total amount: 1,234.50 EUR (VAT included).\n";
    for size in ["small", "tiny"] {
        let png = fixture("images/letter.png");
        let o = ocr(&["recognize", png.to_str().unwrap(), "--model", size]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        if size == "small" {
            assert_eq!(stdout(&o), expected);
        } else {
            // The tiny models trade accuracy for speed: most of the text, not all of it.
            assert!(stdout(&o).contains("quick brown fox"), "{}", stdout(&o));
        }
    }
}

#[test]
fn turned_pages_are_read_upright_and_report_their_rotation() {
    let png = fixture("images/letter_rotated_90.png");
    let o = ocr(&["recognize", png.to_str().unwrap(), "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let page = &json["pages"][0];
    assert_eq!(page["rotation"], 90);
    assert_eq!(page["width"], 1200, "boxes refer to the upright page");
    assert!(
        page["text"]
            .as_str()
            .unwrap()
            .contains("Invoice 2024-117 is due on 15 March 2025.")
    );
}

#[test]
fn timings_split_loading_from_recognising() {
    let png = fixture("images/line.png");
    let o = ocr(&[
        "recognize",
        png.to_str().unwrap(),
        "--single-line",
        "--timings",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "The quick brown fox jumps over the lazy dog.\n");
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.starts_with("timings: "))
        .unwrap_or_else(|| panic!("no timings in {err:?}"));
    // "timings: models loaded in 0.081 s; 1 pages read and recognised in 0.052 s"
    let seconds: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(seconds.len(), 3, "{line}");
    assert_eq!(seconds[1], 1.0, "{line}");
    assert!(seconds[0] > 0.0 && seconds[2] > 0.0, "{line}");
}

#[test]
fn single_lines_and_languages() {
    let png = fixture("images/line.png");
    check(
        &["recognize", png.to_str().unwrap(), "--single-line"],
        0,
        "The quick brown fox jumps over the lazy dog.\n",
        "",
    );
    check(
        &["recognize", png.to_str().unwrap(), "--language", "ru"],
        2,
        "",
        "language \"ru\" cannot be read by the installed small models; supported: auto, en",
    );
    check(
        &[
            "recognize",
            png.to_str().unwrap(),
            "--model",
            "tiny",
            "--language",
            "ja",
        ],
        2,
        "",
        "cannot be read by the installed tiny models",
    );
}

#[test]
fn bad_input_gives_clean_errors_and_exit_codes() {
    let dir = std::env::temp_dir().join(format!("ocr-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("notes.pdf");
    std::fs::write(&text, "just text, whatever the name says").unwrap();
    let empty = dir.join("empty.png");
    std::fs::write(&empty, "").unwrap();
    let locked = fixture("pdf/encrypted_user_password.pdf");
    let pdf = fixture("pdf/letter_3p.pdf");

    check(
        &["recognize", text.to_str().unwrap()],
        1,
        "",
        "unsupported file type",
    );
    check(&["recognize", empty.to_str().unwrap()], 1, "", "empty file");
    check(
        &["recognize", locked.to_str().unwrap()],
        1,
        "",
        "encrypted pdf: a password is required",
    );
    check(
        &["recognize", "/no/such/file.png"],
        1,
        "",
        "reading /no/such/file.png",
    );
    check(
        &["recognize", pdf.to_str().unwrap(), "--pages", "4"],
        1,
        "",
        "page 4 is out of range: the document has 3 pages",
    );
    check(
        &["recognize", pdf.to_str().unwrap(), "--pages", "2-1"],
        1,
        "",
        "invalid page selection",
    );
    check(
        &["recognize", pdf.to_str().unwrap(), "--format", "rtf"],
        2,
        "",
        "invalid value 'rtf'",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn standard_input_is_read_with_a_dash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocr"))
        .args(["recognize", "-", "--pages", "3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(fixture("pdf/letter_3p.pdf")).unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("Chapter 3\n"));
}
