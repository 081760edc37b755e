//! Searchable PDF: each page is the image the engine read, drawn full-page, under an invisible
//! text layer (render mode 3) whose words sit on their boxes.
//!
//! The text uses one embedded glyphless TrueType font ([`crate::font`]) as a `Type0` font with
//! `Identity-H` encoding. Each distinct character of the document gets its own two-byte code
//! (in order of first appearance), every code draws the same empty glyph, and the font's
//! `ToUnicode` map turns the codes back into the characters, so copy, paste and search work for
//! every script, accents and characters outside the Basic Multilingual Plane included. A word is
//! set at its box's height (the font's ascent and descent span one em) and stretched
//! horizontally (`Tz`) to its box's width, so `pdftotext -bbox` reports the box.
//!
//! A born-digital page that was read from its own text layer is already searchable: when the
//! caller hands over the source PDF ([`PageImages::source_pdf`]) that page is copied from it
//! with its vector content (`pdf_copy.rs`), and gets no image and no added text.
//!
//! Page images come from the caller ([`PageImages`]), compressed as [`PageImage`]s. A page
//! whose image is not available, such as a failed page, is a blank page the size its image
//! would have had (or US Letter), with its text layer if it has text.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use ocr_core::image::RgbImage;
use ocr_core::{Document, Page, PageOutcome, TextSource};

use crate::font::{ADVANCE, ASCENT, DESCENT, glyphless_ttf};
use crate::pdf_copy::{Source, serialize};
use crate::text::is_rtl;
use crate::{ExportError, ExportOptions};

/// Resolution assumed for a page that does not know its own.
const DEFAULT_DPI: f32 = 300.0;
/// JPEG quality for colour page images.
const JPEG_QUALITY: u8 = 90;

/// Object numbers of the shared objects; pages follow from [`FIRST_PAGE_OBJECT`].
const CATALOG: usize = 1;
const PAGES: usize = 2;
const FONT: usize = 3;
const CID_FONT: usize = 4;
const DESCRIPTOR: usize = 5;
const FONT_FILE: usize = 6;
const TO_UNICODE: usize = 7;
const CID_TO_GID: usize = 8;
const FIRST_PAGE_OBJECT: usize = 9;
/// Objects per page: the page, its content stream, its image.
const PER_PAGE: usize = 3;

pub(crate) fn write(
    document: &Document,
    options: &ExportOptions<'_>,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let mut pdf = Writer::new(out)?;
    let mut codes = Codes::default();
    let page_ids: Vec<usize> = (0..document.pages.len())
        .map(|i| FIRST_PAGE_OBJECT + i * PER_PAGE)
        .collect();
    let from_text_layer = |p: &Page| {
        matches!(
            p.outcome,
            PageOutcome::Done {
                source: TextSource::TextLayer
            }
        )
    };
    let source = options
        .images
        .filter(|_| document.pages.iter().any(from_text_layer))
        .and_then(|i| i.source_pdf())
        .and_then(Source::parse);
    let mut next_id = FIRST_PAGE_OBJECT + document.pages.len() * PER_PAGE;
    let mut copied = HashMap::new();
    for (page, &id) in document.pages.iter().zip(&page_ids) {
        let copied = source
            .as_ref()
            .filter(|_| from_text_layer(page))
            .and_then(|s| s.page(page.index, next_id, &mut copied));
        if let Some((dict, objects)) = copied {
            next_id += objects.len();
            write_copied_page(&mut pdf, id, dict, &objects)?;
            continue;
        }
        let image = options.images.and_then(|images| images.image(page));
        write_page(&mut pdf, page, image.as_deref(), id, &mut codes)?;
    }
    let kids: Vec<String> = page_ids.iter().map(|id| format!("{id} 0 R")).collect();
    pdf.object(
        PAGES,
        &format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            kids.len()
        ),
    )?;
    pdf.object(CATALOG, &format!("<< /Type /Catalog /Pages {PAGES} 0 R >>"))?;
    write_font(&mut pdf, &codes)?;
    pdf.finish(CATALOG)
}

/// The two-byte code of every character of the text layer.
#[derive(Default)]
struct Codes {
    of: HashMap<char, u16>,
    chars: Vec<char>,
}

impl Codes {
    /// The most distinct characters a document gets codes for; the rest share U+FFFD's.
    const MAX: usize = u16::MAX as usize - 1;

    /// The hex string of `text`'s codes, new characters numbered from 1.
    fn encode(&mut self, text: &str) -> String {
        text.chars()
            .map(|c| format!("{:04X}", self.code(c)))
            .collect()
    }

    fn code(&mut self, c: char) -> u16 {
        if let Some(&code) = self.of.get(&c) {
            return code;
        }
        if self.chars.len() >= Self::MAX && c != '\u{FFFD}' {
            return self.code('\u{FFFD}');
        }
        self.chars.push(c);
        let code = self.chars.len() as u16;
        self.of.insert(c, code);
        code
    }
}

/// A page image ready for the PDF: compressed once, when the page is read, so that a long
/// document's images need not stay in memory as pixels. Grey images are stored losslessly
/// (`FlateDecode`), colour ones as JPEG at quality 90.
#[derive(Debug, Clone)]
pub struct PageImage {
    width: u32,
    height: u32,
    grey: bool,
    /// Zlib-compressed grey samples, or a JPEG file.
    data: Vec<u8>,
}

impl PageImage {
    /// Compresses `pixels` for the PDF.
    pub fn encode(pixels: &RgbImage) -> Result<Self, ExportError> {
        let (width, height) = pixels.dimensions();
        let grey = pixels.pixels().all(|p| p[0] == p[1] && p[1] == p[2]);
        let data = if grey {
            let samples: Vec<u8> = pixels.pixels().map(|p| p[0]).collect();
            let mut z = ZlibEncoder::new(Vec::new(), Compression::new(6));
            z.write_all(&samples)?;
            z.finish()?
        } else {
            let mut jpeg = Vec::new();
            ocr_core::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
                .encode_image(pixels)
                .map_err(|e| ExportError::Io(std::io::Error::other(e)))?;
            jpeg
        };
        Ok(Self {
            width,
            height,
            grey,
            data,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }
}

/// Where the PDF exporter gets each page's image, and the PDF the document came from.
pub trait PageImages {
    /// The image of `page`, whose boxes refer to its pixels; `None` leaves the page blank.
    fn image(&self, page: &Page) -> Option<Cow<'_, PageImage>>;

    /// The PDF file the document was read from, if it was one: its pages that were read from
    /// their text layer are copied from it with their vector content instead of being drawn
    /// from their image.
    fn source_pdf(&self) -> Option<&[u8]> {
        None
    }
}

/// Images by page index (`Page::index`).
impl PageImages for HashMap<usize, PageImage> {
    fn image(&self, page: &Page) -> Option<Cow<'_, PageImage>> {
        self.get(&page.index).map(Cow::Borrowed)
    }
}

/// Page images by page index, and the source PDF when the input was one.
#[derive(Debug, Clone, Default)]
pub struct PageSources {
    pub images: HashMap<usize, PageImage>,
    pub pdf: Option<Vec<u8>>,
}

impl PageImages for PageSources {
    fn image(&self, page: &Page) -> Option<Cow<'_, PageImage>> {
        self.images.image(page)
    }

    fn source_pdf(&self) -> Option<&[u8]> {
        self.pdf.as_deref()
    }
}

/// A page copied from the source PDF: its dictionary at `id` (the two other numbers of the
/// page's slot unused), the objects it needs after it.
fn write_copied_page(
    pdf: &mut Writer<'_>,
    id: usize,
    mut page: lopdf::Dictionary,
    objects: &[(usize, lopdf::Object)],
) -> Result<(), ExportError> {
    page.set("Parent", lopdf::Object::Reference((PAGES as u32, 0)));
    let mut body = Vec::new();
    serialize(&lopdf::Object::Dictionary(page), &mut body);
    pdf.raw_object(id, &body, None)?;
    pdf.object(id + 1, "null")?;
    pdf.object(id + 2, "null")?;
    for (object_id, object) in objects {
        body.clear();
        serialize(object, &mut body);
        let content = match object {
            lopdf::Object::Stream(s) => Some(s.content.as_slice()),
            _ => None,
        };
        pdf.raw_object(*object_id, &body, content)?;
    }
    Ok(())
}

fn write_page(
    pdf: &mut Writer<'_>,
    page: &Page,
    image: Option<&PageImage>,
    id: usize,
    codes: &mut Codes,
) -> Result<(), ExportError> {
    let dpi = if page.dpi > 0.0 {
        page.dpi
    } else {
        DEFAULT_DPI
    };
    let scale = 72.0 / dpi;
    let (px_w, px_h) = match (page.width, page.height, image) {
        (w, h, _) if w > 0 && h > 0 => (w as f32, h as f32),
        (_, _, Some(img)) => (img.width as f32, img.height as f32),
        _ => (8.5 * dpi, 11.0 * dpi),
    };
    let (pt_w, pt_h) = (px_w * scale, px_h * scale);

    let mut content = String::new();
    let mut resources = format!("/Font << /F1 {FONT} 0 R >>");
    if let Some(img) = image {
        let image_id = id + 2;
        write_image(pdf, image_id, img)?;
        resources.push_str(&format!(" /XObject << /Im1 {image_id} 0 R >>"));
        content.push_str(&format!(
            "q {} 0 0 {} 0 0 cm /Im1 Do Q\n",
            num(pt_w),
            num(pt_h)
        ));
    } else {
        // Keep the object numbering dense: an empty image slot becomes a null object.
        pdf.object(id + 2, "null")?;
    }
    content.push_str("BT\n3 Tr\n");
    let em_below = -f32::from(DESCENT) / 1000.0;
    for word in page.lines().flat_map(|l| l.words.iter()) {
        let text = visual_order(&word.text);
        let n = text.chars().count();
        let b = word.bbox.clamp_to(px_w, px_h);
        if n == 0 || b.width() <= 0.0 || b.height() <= 0.0 {
            continue;
        }
        let size = b.height() * scale;
        let natural = n as f32 * f32::from(ADVANCE) / 1000.0 * size;
        let stretch = 100.0 * b.width() * scale / natural;
        let baseline = (px_h - b.y1) * scale + em_below * size;
        content.push_str(&format!(
            "/F1 {} Tf {} Tz 1 0 0 1 {} {} Tm <{}> Tj\n",
            num(size),
            num(stretch),
            num(b.x0 * scale),
            num(baseline),
            codes.encode(&text)
        ));
    }
    content.push_str("ET\n");
    pdf.stream(id + 1, "", content.as_bytes(), true)?;
    pdf.object(
        id,
        &format!(
            "<< /Type /Page /Parent {PAGES} 0 R /MediaBox [0 0 {} {}] /Resources << {resources} >> /Contents {} 0 R >>",
            num(pt_w),
            num(pt_h),
            id + 1
        ),
    )
}

fn write_image(pdf: &mut Writer<'_>, id: usize, image: &PageImage) -> Result<(), ExportError> {
    let (w, h) = (image.width, image.height);
    let (colour, filter) = if image.grey {
        ("/DeviceGray", "/FlateDecode")
    } else {
        ("/DeviceRGB", "/DCTDecode")
    };
    pdf.stream(
        id,
        &format!(
            "/Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace {colour} \
             /BitsPerComponent 8 /Filter {filter}"
        ),
        &image.data,
        false,
    )
}

fn write_font(pdf: &mut Writer<'_>, codes: &Codes) -> Result<(), ExportError> {
    pdf.object(
        FONT,
        &format!(
            "<< /Type /Font /Subtype /Type0 /BaseFont /GlyphLessFont /Encoding /Identity-H \
             /DescendantFonts [{CID_FONT} 0 R] /ToUnicode {TO_UNICODE} 0 R >>"
        ),
    )?;
    pdf.object(
        CID_FONT,
        &format!(
            "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /GlyphLessFont \
             /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> \
             /FontDescriptor {DESCRIPTOR} 0 R /DW {ADVANCE} /CIDToGIDMap {CID_TO_GID} 0 R >>"
        ),
    )?;
    pdf.object(
        DESCRIPTOR,
        &format!(
            "<< /Type /FontDescriptor /FontName /GlyphLessFont /Flags 5 \
             /FontBBox [0 {DESCENT} {ADVANCE} {ASCENT}] /ItalicAngle 0 /Ascent {ASCENT} \
             /Descent {DESCENT} /CapHeight {ASCENT} /StemV 80 /FontFile2 {FONT_FILE} 0 R >>"
        ),
    )?;
    pdf.stream(FONT_FILE, "", &glyphless_ttf(), true)?;
    // Every code draws glyph 1.
    let codes_used = codes.chars.len() + 1;
    let map: Vec<u8> = (0..codes_used)
        .flat_map(|code| if code == 0 { [0, 0] } else { [0, 1] })
        .collect();
    pdf.stream(CID_TO_GID, "", &map, true)?;
    pdf.stream(TO_UNICODE, "", to_unicode(&codes.chars).as_bytes(), true)
}

/// The `ToUnicode` CMap: code `i + 1` is `chars[i]`, in UTF-16BE.
fn to_unicode(chars: &[char]) -> String {
    let mut s = String::from(
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
         /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
         /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n\
         1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
    );
    for chunk in chars.iter().enumerate().collect::<Vec<_>>().chunks(100) {
        s.push_str(&format!("{} beginbfchar\n", chunk.len()));
        for &(i, &c) in chunk {
            let mut units = [0u16; 2];
            let utf16: String = c
                .encode_utf16(&mut units)
                .iter()
                .map(|u| format!("{u:04X}"))
                .collect();
            s.push_str(&format!("<{:04X}> <{utf16}>\n", i + 1));
        }
        s.push_str("endbfchar\n");
    }
    s.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
    s
}

/// A word's characters in the order they sit on the page, left to right, control characters
/// dropped: a right-to-left word (Arabic, Hebrew, ...) is reversed, as PDF text extractors
/// expect glyphs of right-to-left text drawn in visual order and reverse them back.
fn visual_order(word: &str) -> String {
    let chars = word.chars().filter(|c| !c.is_control());
    if is_rtl(word) {
        chars.rev().collect()
    } else {
        chars.collect()
    }
}

/// A number with at most three decimals and no exponent, as PDF wants.
pub(crate) fn num(v: f32) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Writes numbered objects and the cross-reference table.
struct Writer<'a> {
    out: &'a mut dyn Write,
    at: usize,
    offsets: HashMap<usize, usize>,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut dyn Write) -> Result<Self, ExportError> {
        let mut w = Self {
            out,
            at: 0,
            offsets: HashMap::new(),
        };
        // The binary comment marks the file as binary for transfer tools.
        w.put(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n")?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        self.out.write_all(bytes)?;
        self.at += bytes.len();
        Ok(())
    }

    fn object(&mut self, id: usize, body: &str) -> Result<(), ExportError> {
        self.offsets.insert(id, self.at);
        self.put(format!("{id} 0 obj\n{body}\nendobj\n").as_bytes())
    }

    /// A stream object; `deflate` compresses the data with `FlateDecode`. `dict` holds the
    /// entries other than `/Length` (and `/Filter` when `deflate`).
    fn stream(
        &mut self,
        id: usize,
        dict: &str,
        data: &[u8],
        deflate: bool,
    ) -> Result<(), ExportError> {
        let (data, filter) = if deflate {
            let mut z = ZlibEncoder::new(Vec::new(), Compression::new(6));
            z.write_all(data)?;
            (z.finish()?, " /Filter /FlateDecode")
        } else {
            (data.to_vec(), "")
        };
        self.offsets.insert(id, self.at);
        self.put(
            format!(
                "{id} 0 obj\n<< {dict}{filter} /Length {} >>\nstream\n",
                data.len()
            )
            .as_bytes(),
        )?;
        self.put(&data)?;
        self.put(b"\nendstream\nendobj\n")
    }

    /// An object given in PDF syntax; with `stream`, `body` is the stream's dictionary and
    /// `stream` its (already encoded) content.
    fn raw_object(
        &mut self,
        id: usize,
        body: &[u8],
        stream: Option<&[u8]>,
    ) -> Result<(), ExportError> {
        self.offsets.insert(id, self.at);
        self.put(format!("{id} 0 obj\n").as_bytes())?;
        self.put(body)?;
        if let Some(content) = stream {
            self.put(b"\nstream\n")?;
            self.put(content)?;
            self.put(b"\nendstream")?;
        }
        self.put(b"\nendobj\n")
    }

    fn finish(mut self, root: usize) -> Result<(), ExportError> {
        let count = self.offsets.keys().max().map_or(1, |m| m + 1);
        let xref = self.at;
        let mut table = format!("xref\n0 {count}\n0000000000 65535 f \n");
        for id in 1..count {
            match self.offsets.get(&id) {
                Some(offset) => table.push_str(&format!("{offset:010} 00000 n \n")),
                None => table.push_str("0000000000 65535 f \n"),
            }
        }
        table.push_str(&format!(
            "trailer\n<< /Size {count} /Root {root} 0 R >>\nstartxref\n{xref}\n%%EOF\n"
        ));
        self.put(table.as_bytes())
    }
}
