//! PDF: the text layer lands on the rendered ink, pages come one at a time, encryption and
//! limits behave.

use std::time::Duration;

use image::RgbImage;
use ocr_core::{
    DecodeOptions, DecodedPage, Error, InputFile, LimitKind, Limits, PageParts, Rotation,
};

use crate::support::fixture;
use crate::support::pdf::{PageSpec, Text, build};

fn open(bytes: Vec<u8>, dpi: f32) -> InputFile {
    InputFile::open(
        bytes,
        DecodeOptions {
            dpi,
            ..DecodeOptions::default()
        },
    )
    .expect("open")
}

fn two_lines() -> Vec<Text<'static>> {
    vec![
        Text {
            x: 72.0,
            y: 700.0,
            size: 24.0,
            text: "Hello World",
        },
        Text {
            x: 72.0,
            y: 650.0,
            size: 12.0,
            text: "Second line (here)",
        },
    ]
}

fn line_texts(page: &DecodedPage) -> Vec<String> {
    let layer = page.text_layer.as_ref().expect("text layer");
    layer.lines.iter().map(|l| l.text.clone()).collect()
}

fn dark(image: &RgbImage, x: u32, y: u32) -> bool {
    image
        .get_pixel(x, y)
        .0
        .iter()
        .map(|&c| u32::from(c))
        .sum::<u32>()
        < 3 * 128
}

/// Every word box holds ink, and no ink lies outside the word boxes (allowing a pixel of
/// anti-aliasing): the text layer sits exactly where the renderer drew the text.
fn assert_boxes_cover_ink(page: &DecodedPage) {
    let image = &page.image.as_ref().expect("image").pixels;
    let layer = page.text_layer.as_ref().expect("text layer");
    let boxes: Vec<_> = layer
        .lines
        .iter()
        .flat_map(|l| l.words.iter().map(|w| w.bbox))
        .collect();
    assert!(!boxes.is_empty());
    for b in &boxes {
        let ink = (b.y0 as u32..b.y1 as u32)
            .flat_map(|y| (b.x0 as u32..b.x1 as u32).map(move |x| (x, y)))
            .filter(|&(x, y)| dark(image, x, y))
            .count();
        let area = (b.width() * b.height()) as usize;
        assert!(
            ink * 20 > area,
            "box {b:?} holds {ink} dark pixels of {area}"
        );
    }
    let outside = image
        .enumerate_pixels()
        .filter(|(x, y, _)| dark(image, *x, *y))
        .filter(|(x, y, _)| {
            let (x, y) = (*x as f32, *y as f32);
            !boxes
                .iter()
                .any(|b| x >= b.x0 - 1.0 && x <= b.x1 + 1.0 && y >= b.y0 - 1.0 && y <= b.y1 + 1.0)
        })
        .count();
    assert_eq!(outside, 0, "dark pixels outside every word box");
}

#[test]
fn text_layer_words_sit_on_the_rendered_ink() {
    let file = open(build(&[PageSpec::letter(two_lines())]), 144.0);
    let page = file.page(0, PageParts::ALL).expect("page");
    assert_eq!((page.width, page.height), (1224, 1584));
    assert_eq!(line_texts(&page), ["Hello World", "Second line (here)"]);
    let words: Vec<_> = page.text_layer.as_ref().expect("layer").lines[0]
        .words
        .iter()
        .map(|w| w.text.as_str())
        .collect();
    assert_eq!(words, ["Hello", "World"]);
    assert_boxes_cover_ink(&page);
}

#[test]
fn rotated_pages_keep_boxes_on_the_ink() {
    for (rotate, rotation) in [
        (90, Rotation::R90),
        (180, Rotation::R180),
        (270, Rotation::R270),
    ] {
        let mut spec = PageSpec::letter(two_lines());
        spec.rotate = rotate;
        let file = open(build(&[spec]), 100.0);
        let page = file.page(0, PageParts::ALL).expect("page");
        assert_eq!(page.rotation, rotation);
        let expected = if rotate == 180 {
            (850, 1100)
        } else {
            (1100, 850)
        };
        assert_eq!((page.width, page.height), expected, "rotate {rotate}");
        assert_eq!(line_texts(&page), ["Hello World", "Second line (here)"]);
        assert_boxes_cover_ink(&page);
    }
}

#[test]
fn a_500_page_pdf_opens_without_rendering_and_reads_any_page() {
    let labels: Vec<String> = (1..=500).map(|i| format!("Page {i}")).collect();
    let specs: Vec<PageSpec> = labels
        .iter()
        .map(|l| {
            PageSpec::letter(vec![Text {
                x: 72.0,
                y: 700.0,
                size: 12.0,
                text: l,
            }])
        })
        .collect();
    let file = open(build(&specs), 72.0);
    assert_eq!(file.page_count(), 500);
    assert_eq!(
        line_texts(&file.page(499, PageParts::TEXT_LAYER).expect("page")),
        ["Page 500"]
    );
    // Lazily, in order, one page at a time.
    let mut pages = file.pages(PageParts::TEXT_LAYER);
    assert_eq!(
        line_texts(&pages.next().expect("first").expect("page")),
        ["Page 1"]
    );
    assert!(matches!(
        file.page(500, PageParts::TEXT_LAYER),
        Err(Error::PageOutOfRange {
            requested: 501,
            count: 500
        })
    ));
}

#[test]
fn encrypted_pdfs_with_an_empty_user_password_open() {
    for name in [
        "pdf/encrypted_empty_password.pdf",
        "pdf/encrypted_rc4_empty_password.pdf",
    ] {
        let file = open(fixture(name), 72.0);
        let page = file.page(0, PageParts::ALL).expect(name);
        assert_eq!(line_texts(&page), ["Encrypted hello"], "{name}");
    }
}

#[test]
fn encrypted_pdfs_with_a_user_password_are_refused_clearly() {
    let err = InputFile::open(
        fixture("pdf/encrypted_user_password.pdf"),
        DecodeOptions::default(),
    )
    .expect_err("needs a password");
    assert!(matches!(err, Error::Encrypted), "{err}");
    assert_eq!(err.to_string(), "encrypted pdf: a password is required");
}

#[test]
fn a_page_without_text_has_an_unusable_text_layer() {
    let mut spec = PageSpec::letter(vec![]);
    spec.extra_content = "0 0 0 rg 100 100 200 50 re f".into();
    let page = open(build(&[spec]), 72.0)
        .page(0, PageParts::ALL)
        .expect("page");
    assert!(!page.text_layer.expect("layer").is_usable());
    assert!(dark(&page.image.expect("image").pixels, 150, 792 - 120));
}

fn with_limits(bytes: Vec<u8>, dpi: f32, limits: Limits) -> InputFile {
    InputFile::open(bytes, DecodeOptions { dpi, limits }).expect("open")
}

fn limit_of(result: ocr_core::Result<DecodedPage>) -> LimitKind {
    match result {
        Err(Error::LimitExceeded { what, .. }) => what,
        other => panic!("expected a limit error, got {other:?}"),
    }
}

#[test]
fn render_limits_are_typed_errors() {
    let pdf = build(&[PageSpec::letter(two_lines())]);
    let file = with_limits(pdf.clone(), 1200.0, Limits::default());
    assert_eq!(limit_of(file.page(0, PageParts::ALL)), LimitKind::Dpi);

    let small = Limits {
        max_page_pixels: 1_000_000,
        ..Limits::default()
    };
    let file = with_limits(pdf.clone(), 300.0, small);
    assert_eq!(
        limit_of(file.page(0, PageParts::IMAGE)),
        LimitKind::PagePixels
    );
    // The text layer alone allocates no pixels, so it is still available.
    assert!(file.page(0, PageParts::TEXT_LAYER).is_ok());

    let mut busy = PageSpec::letter(two_lines());
    busy.extra_content = "0 0 1 1 re f\n".repeat(500);
    let few_ops = Limits {
        max_page_operations: 100,
        ..Limits::default()
    };
    let file = with_limits(build(&[busy]), 72.0, few_ops);
    assert_eq!(
        limit_of(file.page(0, PageParts::IMAGE)),
        LimitKind::PageComplexity
    );

    let no_time = Limits {
        page_timeout: Duration::ZERO,
        ..Limits::default()
    };
    let file = with_limits(pdf, 72.0, no_time);
    assert!(matches!(
        file.page(0, PageParts::ALL),
        Err(Error::Timeout(_))
    ));
}

#[test]
fn too_many_pages_is_refused_at_open() {
    let specs: Vec<PageSpec> = (0..5).map(|_| PageSpec::letter(vec![])).collect();
    let limits = Limits {
        max_pages: 4,
        ..Limits::default()
    };
    let err =
        InputFile::open(build(&specs), DecodeOptions { dpi: 72.0, limits }).expect_err("too many");
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                what: LimitKind::Pages,
                limit: 4,
                actual: 5
            }
        ),
        "{err}"
    );
}
