//! PDF: page count, rendering at a chosen dpi and the text layer, through `hayro`; `pdf-extract`
//! reads the text of files `hayro` cannot open.
//!
//! The text layer is read by interpreting the page with [`TextDevice`] under the same transform
//! the renderer uses, so word boxes land on the rendered pixels. That pass also measures how
//! much the page draws, which lets us refuse to rasterise pathological pages before spending
//! the time, and it runs before rendering so a page whose interpretation alone overruns the
//! time limit is never rendered.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hayro::hayro_interpret::util::TransformExt;
use hayro::hayro_interpret::{Context, InterpreterCache, InterpreterSettings, interpret_page};
use hayro::hayro_syntax::Pdf;
use hayro::hayro_syntax::page::{Page, Rotation as PdfRotation};
use hayro::hayro_syntax::{DecryptionError, LoadPdfError};
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::{PixmapSettings, RenderCache, RenderSettings};
use image::RgbImage;
use kurbo::{Affine, Rect};

use super::text_layer::TextDevice;
use super::{DecodeOptions, DecodedPage, PageImage, PageParts, TextLayer};
use crate::document::{BBox, Line, Rotation, Word};
use crate::error::{Error, LimitKind, Result};
use crate::limits::Limits;

/// Most glyphs kept from one page's text layer (a dense newspaper page has ~30 000).
const MAX_GLYPHS_PER_PAGE: usize = 500_000;
/// `hayro` renders into a pixmap addressed with 16-bit sizes.
const MAX_RENDER_SIDE: u32 = u16::MAX as u32;

/// The bytes of the file, shared with `hayro` without a copy.
struct Bytes(Arc<[u8]>);

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

pub(super) struct PdfFile {
    /// `None` when `hayro` could not parse the file; then `pdf-extract` (on `lopdf`) may still
    /// read the text of each page, but nothing can be rendered.
    hayro: Option<Pdf>,
    bytes: Arc<[u8]>,
    max_pages: usize,
    /// Every page's text as `pdf-extract` reads it, computed on first need: for files `hayro`
    /// cannot parse, and for pages whose glyphs `hayro` cannot map to Unicode (`pdf-extract`
    /// knows more simple-font encodings).
    extracted: OnceLock<Option<Vec<ExtractedPage>>>,
}

fn corrupt(reason: impl Into<String>) -> Error {
    Error::Corrupt {
        kind: "pdf",
        reason: reason.into(),
    }
}

impl PdfFile {
    pub(super) fn open(bytes: Arc<[u8]>, options: &DecodeOptions) -> Result<PdfFile> {
        let mut file = PdfFile {
            hayro: None,
            bytes: bytes.clone(),
            max_pages: options.limits.max_pages,
            extracted: OnceLock::new(),
        };
        match Pdf::new(Arc::new(Bytes(bytes))) {
            Ok(pdf) => file.hayro = Some(pdf),
            Err(LoadPdfError::Decryption(DecryptionError::PasswordProtected)) => {
                return Err(Error::Encrypted);
            }
            Err(LoadPdfError::Decryption(e)) => {
                return Err(corrupt(format!("cannot decrypt: {e:?}")));
            }
            Err(LoadPdfError::Invalid) => {
                if file.extracted().is_none() {
                    return Err(corrupt("cannot parse the file structure"));
                }
            }
        }
        Ok(file)
    }

    fn extracted(&self) -> Option<&Vec<ExtractedPage>> {
        self.extracted
            .get_or_init(|| extract_fallback(&self.bytes, self.max_pages))
            .as_ref()
    }

    pub(super) fn page_count(&self) -> usize {
        match (&self.hayro, self.extracted.get()) {
            (Some(pdf), _) => pdf.pages().len(),
            (None, Some(Some(pages))) => pages.len(),
            (None, _) => 0,
        }
    }

    pub(super) fn page(
        &self,
        index: usize,
        parts: PageParts,
        options: &DecodeOptions,
    ) -> Result<DecodedPage> {
        let Some(pdf) = &self.hayro else {
            if parts.image {
                return Err(corrupt(
                    "the file is too damaged to render; only its text could be read",
                ));
            }
            let page = self.extracted().and_then(|p| p.get(index));
            return Ok(page.map_or_else(
                || DecodedPage::empty(index, options.dpi),
                |p| p.to_decoded(index, options.dpi),
            ));
        };
        let page = &pdf.pages()[index];
        let mut decoded = hayro_page(page, index, parts, options)?;
        if let Some(layer) = decoded.text_layer.as_mut()
            && !layer.is_usable()
            && layer.glyphs > 0
            && let Some(fallback) = self.extracted().and_then(|p| p.get(index))
        {
            let scale = f64::from(options.dpi / 72.0);
            let transform = Affine::scale(scale) * page.initial_transform(true).to_kurbo();
            let lines = fallback.lines(|x, y| {
                let p = transform * kurbo::Point::new(x, y);
                (p.x, p.y)
            });
            let candidate = TextLayer::from_lines(lines);
            if candidate.is_usable() {
                *layer = candidate;
            }
        }
        Ok(decoded)
    }
}

/// Pixel size of a page rendered at `dpi`; checked against the pixel limits only when the page
/// is to be rendered (the text layer alone allocates no pixels).
fn render_size(
    page: &Page<'_>,
    dpi: f32,
    limits: &Limits,
    rendering: bool,
) -> Result<(u32, u32, f32)> {
    Limits::check(LimitKind::Dpi, limits.max_dpi as u64, dpi.ceil() as u64)?;
    if dpi.is_nan() || dpi <= 0.0 {
        return Err(Error::LimitExceeded {
            what: LimitKind::Dpi,
            limit: limits.max_dpi as u64,
            actual: 0,
        });
    }
    let scale = dpi / 72.0;
    let (w, h) = page.render_dimensions();
    let (w, h) = ((w * scale).round().max(1.0), (h * scale).round().max(1.0));
    let (w, h) = (w as u64, h as u64);
    if rendering {
        limits.check_page_size(w, h)?;
        Limits::check(
            LimitKind::PageDimension,
            u64::from(MAX_RENDER_SIDE),
            w.max(h),
        )?;
    }
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok((clamp(w), clamp(h), scale))
}

fn hayro_page(
    page: &Page<'_>,
    index: usize,
    parts: PageParts,
    options: &DecodeOptions,
) -> Result<DecodedPage> {
    let started = Instant::now();
    let limits = &options.limits;
    let (width, height, scale) = render_size(page, options.dpi, limits, parts.image)?;
    let transform = Affine::scale(f64::from(scale)) * page.initial_transform(true).to_kurbo();
    let settings = InterpreterSettings::default();

    // The text pass doubles as the cost estimate for rendering, so it runs when either is asked.
    let cache = InterpreterCache::new();
    let mut device = TextDevice::new(
        started + limits.page_timeout,
        MAX_GLYPHS_PER_PAGE,
        f64::from(scale),
    );
    let mut context = Context::new(
        transform,
        Rect::new(0.0, 0.0, f64::from(width), f64::from(height)),
        &cache,
        page.xref(),
        settings.clone(),
    );
    interpret_page(page, &mut context, &mut device);
    if device.timed_out {
        return Err(Error::Timeout(limits.page_timeout));
    }
    let operations = device.operations;
    let type3_recursion = device.type3_recursion;
    let text_layer = parts
        .text_layer
        .then(|| device.into_text_layer(width as f32, height as f32));

    let image = if parts.image {
        if type3_recursion {
            return Err(corrupt(
                "a Type3 font on this page draws itself recursively",
            ));
        }
        Limits::check(
            LimitKind::PageComplexity,
            limits.max_page_operations,
            operations,
        )?;
        let cache = RenderCache::new();
        let pixmap = hayro::render(
            page,
            &cache,
            &settings,
            &RenderSettings::default(),
            &PixmapSettings {
                x_scale: scale,
                y_scale: scale,
                bg_color: WHITE,
            },
        );
        if started.elapsed() > limits.page_timeout {
            return Err(Error::Timeout(limits.page_timeout));
        }
        Some(PageImage {
            pixels: pixmap_to_rgb(&pixmap)?,
            dpi: options.dpi,
        })
    } else {
        None
    };

    Ok(DecodedPage {
        index,
        width,
        height,
        dpi: options.dpi,
        rotation: match page.rotation() {
            PdfRotation::None => Rotation::R0,
            PdfRotation::Horizontal => Rotation::R90,
            PdfRotation::Flipped => Rotation::R180,
            PdfRotation::FlippedHorizontal => Rotation::R270,
        },
        image,
        text_layer,
    })
}

/// The renderer's premultiplied RGBA on a white background is already opaque: drop alpha.
fn pixmap_to_rgb(pixmap: &hayro::vello_cpu::Pixmap) -> Result<RgbImage> {
    let (w, h) = (u32::from(pixmap.width()), u32::from(pixmap.height()));
    let rgb: Vec<u8> = pixmap
        .data_as_u8_slice()
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| Error::Internal("converting a rendered page".into()))
}

/// A page's text as `pdf-extract` sees it: words in lines, boxes in PDF user space (points,
/// y up).
#[derive(Debug, Default)]
pub(super) struct ExtractedPage {
    media_box: [f64; 4],
    lines: Vec<Vec<(String, BBox)>>,
}

impl ExtractedPage {
    /// The lines with every box mapped through `map` (user space to page pixels).
    fn lines(&self, map: impl Fn(f64, f64) -> (f64, f64)) -> Vec<Line> {
        self.lines
            .iter()
            .filter(|words| !words.is_empty())
            .map(|words| {
                Line::from_words(
                    words
                        .iter()
                        .map(|(text, b)| {
                            let (x0, y0) = map(f64::from(b.x0), f64::from(b.y0));
                            let (x1, y1) = map(f64::from(b.x1), f64::from(b.y1));
                            Word {
                                text: text.clone(),
                                bbox: BBox::new(x0 as f32, y0 as f32, x1 as f32, y1 as f32),
                                confidence: 1.0,
                            }
                        })
                        .collect(),
                )
            })
            .collect()
    }

    /// The page as decoded from `pdf-extract` alone: no image, unrotated, top-left origin.
    fn to_decoded(&self, index: usize, dpi: f32) -> DecodedPage {
        let scale = f64::from(dpi / 72.0);
        let [llx, lly, urx, ury] = self.media_box;
        let lines = self.lines(|x, y| ((x - llx) * scale, (ury - y) * scale));
        DecodedPage {
            width: ((urx - llx).abs() * scale).round() as u32,
            height: ((ury - lly).abs() * scale).round() as u32,
            text_layer: Some(TextLayer::from_lines(lines)),
            ..DecodedPage::empty(index, dpi)
        }
    }
}

/// Reads the text of every page with `pdf-extract`. Its parser panics on some malformed input,
/// so it runs under `catch_unwind`; `None` when it cannot read the file either.
fn extract_fallback(bytes: &[u8], max_pages: usize) -> Option<Vec<ExtractedPage>> {
    catch_unwind(AssertUnwindSafe(|| {
        let doc = pdf_extract::Document::load_mem(bytes).ok()?;
        let pages = doc.get_pages();
        if pages.is_empty() || pages.len() > max_pages {
            return None;
        }
        let mut sink = Extractor::default();
        for &number in pages.keys() {
            sink.pages.push(ExtractedPage::default());
            // A page whose content fails still counts as a page, with no text.
            let _ = pdf_extract::output_doc_page(&doc, &mut sink, number);
        }
        Some(sink.pages)
    }))
    .ok()
    .flatten()
}

/// `pdf-extract`'s output device: characters into words and lines, flipped to a top-left origin.
#[derive(Default)]
struct Extractor {
    pages: Vec<ExtractedPage>,
    word: Option<(String, BBox)>,
}

impl Extractor {
    fn page(&mut self) -> Option<&mut ExtractedPage> {
        self.pages.last_mut()
    }

    fn end_word_inner(&mut self) {
        let word = self.word.take().filter(|(t, _)| !t.trim().is_empty());
        if let (Some(word), Some(page)) = (word, self.page()) {
            match page.lines.last_mut() {
                Some(line) => line.push(word),
                None => page.lines.push(vec![word]),
            }
        }
    }
}

impl pdf_extract::OutputDev for Extractor {
    fn begin_page(
        &mut self,
        _: u32,
        media_box: &pdf_extract::MediaBox,
        _: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), pdf_extract::OutputError> {
        if let Some(page) = self.page() {
            page.media_box = [media_box.llx, media_box.lly, media_box.urx, media_box.ury];
        }
        Ok(())
    }
    fn end_page(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.end_word_inner();
        Ok(())
    }
    fn output_character(
        &mut self,
        trm: &pdf_extract::Transform,
        width: f64,
        _: f64,
        font_size: f64,
        ch: &str,
    ) -> Result<(), pdf_extract::OutputError> {
        if ch.trim().is_empty() {
            self.end_word_inner();
            return Ok(());
        }
        let size = (font_size * (trm.m11.hypot(trm.m12))).abs().max(1.0);
        let (x, y) = (trm.m31, trm.m32);
        // User space has y up: the box runs from 0.2 em below the baseline to 0.8 em above.
        let b = BBox::new(
            x as f32,
            (y - 0.2 * size) as f32,
            (x + width * size) as f32,
            (y + 0.8 * size) as f32,
        );
        match &mut self.word {
            Some((text, bbox)) => {
                text.push_str(ch);
                *bbox = bbox.union(&b);
            }
            None => self.word = Some((ch.to_string(), b)),
        }
        Ok(())
    }
    fn begin_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
    fn end_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.end_word_inner();
        Ok(())
    }
    fn end_line(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.end_word_inner();
        if let Some(page) = self.page() {
            page.lines.push(Vec::new());
        }
        Ok(())
    }
}
