//! Decoding: from the bytes of an uploaded file to page images and PDF text layers.
//!
//! The type is sniffed from the bytes, never from a name. Opening a file reads only what is
//! needed to count its pages; each page is decoded or rendered when asked for, one at a time,
//! so a 500-page PDF never sits rendered in memory at once. Every decoder honours [`Limits`]
//! and turns broken input into an [`Error`], and any panic in a third-party decoder is caught
//! and reported as [`Error::Internal`] instead of unwinding into the caller.

mod ccitt;
mod pdf;
mod raster;
mod text_layer;
mod tiff;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use image::RgbImage;

use crate::document::{BBox, Line, Rotation};
use crate::error::{Error, Result};
use crate::limits::Limits;

/// File types we read, as told by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Png,
    Jpeg,
    Webp,
    Gif,
    Bmp,
    Tiff,
    Pdf,
}

impl FileKind {
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Png => "png",
            FileKind::Jpeg => "jpeg",
            FileKind::Webp => "webp",
            FileKind::Gif => "gif",
            FileKind::Bmp => "bmp",
            FileKind::Tiff => "tiff",
            FileKind::Pdf => "pdf",
        }
    }
}

/// Tells the file type from its leading bytes; `None` for anything we do not read.
pub fn sniff(bytes: &[u8]) -> Option<FileKind> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        Some(FileKind::Png)
    } else if starts(b"\xff\xd8\xff") {
        Some(FileKind::Jpeg)
    } else if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(FileKind::Webp)
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some(FileKind::Gif)
    } else if starts(b"BM") && bytes.len() >= 26 {
        Some(FileKind::Bmp)
    } else if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
        Some(FileKind::Tiff)
    } else if is_pdf(bytes) {
        Some(FileKind::Pdf)
    } else {
        None
    }
}

/// PDF readers accept a header anywhere in the first kilobyte (some files start with junk).
fn is_pdf(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    head.windows(5).any(|w| w == b"%PDF-")
}

/// How to decode: the render resolution for PDF pages and the limits to enforce.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// Resolution PDF pages are rendered at, and the one assumed for images that carry none.
    pub dpi: f32,
    pub limits: Limits,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            dpi: 200.0,
            limits: Limits::default(),
        }
    }
}

/// What to produce for a page: its image, its text layer, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageParts {
    pub image: bool,
    pub text_layer: bool,
}

impl PageParts {
    pub const ALL: PageParts = PageParts {
        image: true,
        text_layer: true,
    };
    pub const IMAGE: PageParts = PageParts {
        image: true,
        text_layer: false,
    };
    pub const TEXT_LAYER: PageParts = PageParts {
        image: false,
        text_layer: true,
    };
}

/// A page's pixels, always 8-bit RGB, transparency flattened onto white, orientation applied.
#[derive(Debug, Clone)]
pub struct PageImage {
    pub pixels: RgbImage,
    /// Resolution in dots per inch: from the file where it says, else the render or default dpi.
    pub dpi: f32,
}

/// The text a born-digital PDF page carries, in the pixel coordinates of its rendered image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextLayer {
    /// Lines in content order, each with words whose boxes come from the glyph positions.
    pub lines: Vec<Line>,
    /// Glyphs drawn on the page.
    pub glyphs: usize,
    /// Glyphs without a Unicode mapping (their text is lost).
    pub unmapped_glyphs: usize,
    /// The page's straight horizontal and vertical strokes and thin filled bars (table rules,
    /// underlines, frames), each as the box of ink it covers, in the same pixels.
    pub rules: Vec<BBox>,
    /// The page's boxes filled in a colour other than white (shaded cells, panels, bars).
    pub shading: Vec<BBox>,
}

impl TextLayer {
    /// A layer of lines whose every character is known (as `pdf-extract` gives them).
    pub(crate) fn from_lines(lines: Vec<Line>) -> Self {
        let glyphs = lines.iter().map(|l| l.text.chars().count()).sum();
        Self {
            lines,
            glyphs,
            unmapped_glyphs: 0,
            rules: Vec::new(),
            shading: Vec::new(),
        }
    }

    /// Whether the layer is worth using instead of recognition: it has text, and almost all of
    /// its glyphs map to Unicode (otherwise the text is garbage and OCR does better).
    pub fn is_usable(&self) -> bool {
        let chars: usize = self.lines.iter().map(|l| l.text.chars().count()).sum();
        chars > 0 && self.unmapped_glyphs * 10 <= self.glyphs
    }
}

/// One decoded page: its size, and whichever of image and text layer were asked for.
#[derive(Debug, Clone)]
pub struct DecodedPage {
    /// 0-based position in the file.
    pub index: usize,
    /// Size in pixels of the page image (rendered or not).
    pub width: u32,
    pub height: u32,
    pub dpi: f32,
    /// The rotation the file asks for; already applied to the image and the text layer.
    pub rotation: Rotation,
    pub image: Option<PageImage>,
    pub text_layer: Option<TextLayer>,
}

/// An opened input file: its type and page count known, pages decoded on demand.
pub struct InputFile {
    kind: FileKind,
    options: DecodeOptions,
    inner: Inner,
}

enum Inner {
    Raster(Arc<[u8]>),
    Tiff(tiff::TiffFile),
    Pdf(Box<pdf::PdfFile>),
}

impl std::fmt::Debug for InputFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputFile")
            .field("kind", &self.kind)
            .field("page_count", &self.page_count())
            .finish_non_exhaustive()
    }
}

impl InputFile {
    /// Opens `bytes`, sniffing the type and counting the pages without decoding them.
    pub fn open(bytes: impl Into<Arc<[u8]>>, options: DecodeOptions) -> Result<InputFile> {
        let bytes: Arc<[u8]> = bytes.into();
        if bytes.is_empty() {
            return Err(Error::Empty);
        }
        options.limits.check_file_bytes(bytes.len())?;
        let kind = sniff(&bytes).ok_or_else(|| Error::UnsupportedType(String::new()))?;
        let inner = guard("opening the file", || match kind {
            FileKind::Pdf => {
                pdf::PdfFile::open(bytes.clone(), &options).map(|p| Inner::Pdf(Box::new(p)))
            }
            FileKind::Tiff => tiff::TiffFile::open(bytes.clone(), &options.limits).map(Inner::Tiff),
            _ => Ok(Inner::Raster(bytes.clone())),
        })?;
        let file = InputFile {
            kind,
            options,
            inner,
        };
        file.options.limits.check_pages(file.page_count())?;
        Ok(file)
    }

    pub fn kind(&self) -> FileKind {
        self.kind
    }

    pub fn options(&self) -> &DecodeOptions {
        &self.options
    }

    pub fn page_count(&self) -> usize {
        match &self.inner {
            Inner::Raster(_) => 1,
            Inner::Tiff(t) => t.page_count(),
            Inner::Pdf(p) => p.page_count(),
        }
    }

    /// Decodes page `index` (0-based), producing the requested parts.
    pub fn page(&self, index: usize, parts: PageParts) -> Result<DecodedPage> {
        let count = self.page_count();
        if index >= count {
            return Err(Error::PageOutOfRange {
                requested: index + 1,
                count,
            });
        }
        guard("decoding a page", || match &self.inner {
            Inner::Raster(bytes) => {
                let image = raster::decode(bytes, self.kind, &self.options)?;
                Ok(DecodedPage::from_image(index, image))
            }
            Inner::Tiff(t) => Ok(DecodedPage::from_image(
                index,
                t.page(index, &self.options)?,
            )),
            Inner::Pdf(p) => p.page(index, parts, &self.options),
        })
    }

    /// Every page in order, each decoded only when the iterator reaches it.
    pub fn pages(&self, parts: PageParts) -> impl Iterator<Item = Result<DecodedPage>> + '_ {
        (0..self.page_count()).map(move |i| self.page(i, parts))
    }
}

impl DecodedPage {
    /// A page with nothing decoded yet.
    pub(crate) fn empty(index: usize, dpi: f32) -> Self {
        Self {
            index,
            width: 0,
            height: 0,
            dpi,
            rotation: Rotation::R0,
            image: None,
            text_layer: None,
        }
    }

    fn from_image(index: usize, image: PageImage) -> Self {
        Self {
            index,
            width: image.pixels.width(),
            height: image.pixels.height(),
            dpi: image.dpi,
            rotation: Rotation::R0,
            image: Some(image),
            text_layer: None,
        }
    }
}

/// Runs a third-party decoder, turning a panic into [`Error::Internal`] so that one hostile
/// file cannot take the process down.
fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(Error::Internal(what.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_tells_types_from_magic_bytes() {
        let cases: &[(&[u8], Option<FileKind>)] = &[
            (b"\x89PNG\r\n\x1a\n....", Some(FileKind::Png)),
            (b"\xff\xd8\xff\xe0", Some(FileKind::Jpeg)),
            (b"RIFF\0\0\0\0WEBPVP8 ", Some(FileKind::Webp)),
            (b"GIF89a", Some(FileKind::Gif)),
            (
                b"BM\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
                Some(FileKind::Bmp),
            ),
            (b"II*\0\x08\0\0\0", Some(FileKind::Tiff)),
            (b"MM\0*\0\0\0\x08", Some(FileKind::Tiff)),
            (b"%PDF-1.7\n", Some(FileKind::Pdf)),
            (b"junk\n%PDF-1.4\n", Some(FileKind::Pdf)),
            (b"hello world", None),
            (b"BM", None),
            (b"", None),
        ];
        for (bytes, kind) in cases {
            assert_eq!(sniff(bytes), *kind, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn open_rejects_empty_unknown_and_oversized_files() {
        let options = DecodeOptions::default();
        assert!(matches!(
            InputFile::open(Vec::new(), options.clone()),
            Err(Error::Empty)
        ));
        assert!(matches!(
            InputFile::open(b"plain text".to_vec(), options.clone()),
            Err(Error::UnsupportedType(_))
        ));
        let mut small = options;
        small.limits.max_file_bytes = 4;
        assert!(matches!(
            InputFile::open(b"%PDF-1.4 and more".to_vec(), small),
            Err(Error::LimitExceeded { .. })
        ));
    }
}
