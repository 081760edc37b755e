//! The cpu tier end to end on generated pages: text, word boxes on the ink, rotation.

#![allow(clippy::unwrap_used)] // test helpers: a failure should panic with the value

use ocr_core::{
    DecodeOptions, Engine, InputFile, ModelSize, PageOutcome, RecognizeOptions, Rotation,
};

use crate::support::fixture;

fn read(path: &str, size: ModelSize) -> ocr_core::Page {
    let engine = Engine::load_default(size).expect("shipped models load");
    let file = InputFile::open(fixture(path), DecodeOptions::default()).expect("fixture opens");
    let doc = engine
        .recognize(&file, &RecognizeOptions::default(), |_, _| {})
        .expect("recognize");
    doc.pages.into_iter().next().expect("one page")
}

#[test]
fn words_have_boxes_on_their_ink_in_reading_order() {
    let page = read("images/letter.png", ModelSize::Small);
    assert_eq!(
        page.outcome,
        PageOutcome::Done {
            source: ocr_core::TextSource::Recognition
        }
    );
    let img = image::load_from_memory(&fixture("images/letter.png"))
        .unwrap()
        .to_luma8();
    let ink =
        |x: u32, y: u32| img.get_pixel(x.min(img.width() - 1), y.min(img.height() - 1))[0] < 128;
    let lines: Vec<_> = page.lines().collect();
    assert_eq!(
        lines[1].text,
        "The quick brown fox jumps over the lazy dog."
    );
    for line in &lines {
        for pair in line.words.windows(2) {
            assert!(
                pair[0].bbox.x1 <= pair[1].bbox.x0 + 3.0,
                "{} overlaps {}",
                pair[0].text,
                pair[1].text
            );
        }
        for word in &line.words {
            assert!(word.confidence > 0.8, "{}: {}", word.text, word.confidence);
            let b = word.bbox;
            let inked = (b.x0 as u32..b.x1 as u32)
                .flat_map(|x| (b.y0 as u32..b.y1 as u32).map(move |y| (x, y)))
                .filter(|&(x, y)| ink(x, y))
                .count();
            assert!(inked > 20, "{} has no ink under its box {b:?}", word.text);
        }
    }
    // Each word box sits within its line box.
    for line in &lines {
        for w in &line.words {
            assert!(
                w.bbox.x0 >= line.bbox.x0 - 1.0 && w.bbox.x1 <= line.bbox.x1 + 1.0,
                "{} outside its line",
                w.text
            );
        }
    }
    assert_eq!(page.language.as_deref(), Some("latin"));
}

#[test]
fn a_page_turned_90_degrees_is_read_upright() {
    let page = read("images/letter_rotated_90.png", ModelSize::Small);
    assert_eq!(page.rotation, Rotation::R90);
    assert_eq!((page.width, page.height), (1200, 600));
    assert!(
        page.text()
            .contains("Total amount: 1,234.50 EUR (VAT included)."),
        "{}",
        page.text()
    );
}

#[test]
fn a_line_printed_upside_down_on_an_upright_page_is_turned() {
    let upright = read("images/letter.png", ModelSize::Small);
    let target = upright
        .lines()
        .find(|l| l.text == "The quick brown fox jumps over the lazy dog.")
        .expect("the pangram line")
        .bbox;
    // Turn just that line's strip of the page by 180°.
    let mut img = image::load_from_memory(&fixture("images/letter.png"))
        .unwrap()
        .to_rgb8();
    let (x0, y0) = (target.x0.max(0.0) as u32, (target.y0 - 4.0).max(0.0) as u32);
    let (w, h) = (
        (target.x1 - target.x0) as u32 + 1,
        (target.y1 - target.y0) as u32 + 9,
    );
    let strip = image::imageops::rotate180(&*image::imageops::crop_imm(&img, x0, y0, w, h));
    image::imageops::replace(&mut img, &strip, i64::from(x0), i64::from(y0));
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let engine = Engine::load_default(ModelSize::Small).unwrap();
    let file = InputFile::open(png, DecodeOptions::default()).unwrap();
    let doc = engine
        .recognize(&file, &RecognizeOptions::default(), |_, _| {})
        .unwrap();
    let page = &doc.pages[0];
    assert_eq!(page.rotation, Rotation::R0);
    let line = page
        .lines()
        .find(|l| l.text == "The quick brown fox jumps over the lazy dog.")
        .unwrap_or_else(|| panic!("not read upright:\n{}", page.text()));
    // Each word's box is where the turned strip put it: mirrored across the
    // strip from where the upright page has it.
    let upright_line = upright
        .lines()
        .find(|l| l.text == "The quick brown fox jumps over the lazy dog.")
        .unwrap();
    let mirror = |x: f32| 2.0 * x0 as f32 + w as f32 - 1.0 - x;
    for (turned, orig) in line.words.iter().zip(&upright_line.words) {
        assert_eq!(turned.text, orig.text);
        let (a, b) = (mirror(orig.bbox.x1), mirror(orig.bbox.x0));
        assert!(
            (turned.bbox.x0 - a).abs() < 12.0 && (turned.bbox.x1 - b).abs() < 12.0,
            "{}: {:?}, expected x {a}..{b}",
            turned.text,
            turned.bbox
        );
    }
    // The other lines are unchanged.
    assert_eq!(page.lines().count(), upright.lines().count());
}
