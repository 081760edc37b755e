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

/// A single line is read stretched wider than the page's crops
/// (`ModelSize::line_stretch`); its word boxes must still come back in the
/// image's own coordinates, each on its own word's ink.
#[test]
fn a_single_line_read_stretched_keeps_each_word_box_on_its_ink() {
    let engine = Engine::load_default(ModelSize::Small).expect("shipped models load");
    let path = "images/line.png";
    let file = InputFile::open(fixture(path), DecodeOptions::default()).expect("fixture opens");
    let options = RecognizeOptions {
        single_line: true,
        ..RecognizeOptions::default()
    };
    let doc = engine.recognize(&file, &options, |_, _| {}).unwrap();
    let words: Vec<_> = doc.pages[0].lines().flat_map(|l| l.words.iter()).collect();
    let text: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(
        text.join(" "),
        "The quick brown fox jumps over the lazy dog."
    );
    // The image's words as runs of inked columns, split at gaps wider than 8 px.
    let img = image::load_from_memory(&fixture(path)).unwrap().to_luma8();
    let inked: Vec<bool> = (0..img.width())
        .map(|x| (0..img.height()).any(|y| img.get_pixel(x, y)[0] < 128))
        .collect();
    let mut runs: Vec<(f32, f32)> = Vec::new();
    for x in (0..inked.len()).filter(|&x| inked[x]) {
        let x = x as f32;
        match runs.last_mut() {
            Some(run) if x - run.1 <= 8.0 => run.1 = x,
            _ => runs.push((x, x)),
        }
    }
    assert_eq!(runs.len(), words.len(), "{runs:?}");
    for (k, (word, run)) in words.iter().zip(&runs).enumerate() {
        let b = word.bbox;
        let near = 6.0;
        assert!(
            b.x0 <= run.0 + near && b.x1 >= run.1 - near,
            "{}: box {b:?} does not cover its ink {run:?}",
            word.text
        );
        let before = if k > 0 { runs[k - 1].1 } else { f32::MIN };
        let after = runs.get(k + 1).map_or(f32::MAX, |r| r.0);
        assert!(
            b.x0 > before && b.x1 < after,
            "{}: box {b:?} reaches a neighbour's ink",
            word.text
        );
    }
}

/// `line.png` bent into an arc whose middle sits `bend` px above its ends, on a white margin.
fn bent_line(bend: f32) -> image::RgbImage {
    let src = image::load_from_memory(&fixture("images/line.png"))
        .unwrap()
        .to_rgb8();
    let (w, h) = (src.width() as f32, src.height() as f32);
    let out_w = src.width() + 80;
    let out_h = src.height() + bend as u32 + 80;
    image::RgbImage::from_fn(out_w, out_h, |x, y| {
        let sx = x as f32 - 40.0;
        let t = (sx - w / 2.0) / (w / 2.0);
        let sy = y as f32 - 40.0 - bend * t * t;
        if (0.0..w).contains(&sx) && (0.0..h).contains(&sy) {
            *src.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([255, 255, 255])
        }
    })
}

/// A line bent into an arc is found as one curved line, straightened piece by piece for the
/// recogniser, and its words keep boxes that follow the arc on the page.
#[test]
fn a_curved_line_is_read_whole_with_its_words_along_the_curve() {
    let engine = Engine::load_default(ModelSize::Small).expect("shipped models load");
    let img = bent_line(100.0);
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let file = InputFile::open(png, DecodeOptions::default()).unwrap();
    let doc = engine
        .recognize(&file, &RecognizeOptions::default(), |_, _| {})
        .unwrap();
    let lines: Vec<_> = doc.pages[0].lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = lines[0];
    assert_eq!(line.text, "The quick brown fox jumps over the lazy dog.");
    let polygon = line
        .polygon
        .as_ref()
        .expect("a curved line has its outline");
    assert!(polygon.len() > 8, "{polygon:?}");
    // The arc is 100 px higher in the middle than at the ends: so are the words.
    let words = &line.words;
    let (first, middle, last) = (&words[0], &words[words.len() / 2], &words[words.len() - 1]);
    assert!(
        middle.bbox.y1 + 40.0 < first.bbox.y1,
        "{middle:?} {first:?}"
    );
    assert!(middle.bbox.y1 + 40.0 < last.bbox.y1, "{middle:?} {last:?}");
    let luma = image::DynamicImage::ImageRgb8(img).to_luma8();
    for word in words {
        let b = word.bbox;
        assert!(
            b.y1 - b.y0 < 110.0,
            "{} is not on its part of the arc: {b:?}",
            word.text
        );
        let inked = (b.x0 as u32..b.x1 as u32)
            .flat_map(|x| (b.y0 as u32..b.y1 as u32).map(move |y| (x, y)))
            .filter(|&(x, y)| {
                luma.get_pixel(x.min(luma.width() - 1), y.min(luma.height() - 1))[0] < 128
            })
            .count();
        assert!(inked > 20, "{} has no ink under its box {b:?}", word.text);
    }
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
