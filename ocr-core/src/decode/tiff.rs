//! TIFF: every page of a multi-page file, including the CCITT G3/G4 bilevel compressions that
//! document scanners and fax software write.
//!
//! Pages are found by walking the IFD chain once when the file is opened (the `tiff` crate
//! guards against cycles). A page is decoded on demand: CCITT pages by [`super::ccitt`], all
//! others by the `image` crate's TIFF decoder, which handles every colour model (bilevel, gray,
//! palette, RGB, CMYK, 16-bit, alpha). That decoder reads only the first page of a file, so it
//! is handed the file through a reader whose header points at the wanted page instead.

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::sync::Arc;

use image::DynamicImage;
use image::codecs::tiff::TiffDecoder;
use tiff::decoder::Decoder;
use tiff::tags::Tag;

use super::raster::{image_error, image_limits, plausible_dpi, to_rgb_on_white};
use super::{DecodeOptions, FileKind, PageImage, ccitt};
use crate::error::{Error, Result};
use crate::limits::Limits;

/// TIFF compression codes for CCITT: modified Huffman (2), T.4 / Group 3 (3), T.6 / Group 4 (4).
const CCITT_RLE: u32 = 2;
const CCITT_T4: u32 = 3;
const CCITT_T6: u32 = 4;

pub(super) struct TiffFile {
    bytes: Arc<[u8]>,
    /// Byte offset of each page's IFD, in page order.
    ifds: Vec<u64>,
    /// Why the chain ended early, if it did: reported as one more, failing, page so that a
    /// truncated file keeps its good pages and still says that something is missing.
    broken_tail: Option<String>,
}

fn corrupt(reason: impl ToString) -> Error {
    Error::Corrupt {
        kind: "tiff",
        reason: reason.to_string(),
    }
}

fn decoder<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Decoder<Cursor<&'a [u8]>>> {
    let mut tl = tiff::decoder::Limits::default();
    tl.decoding_buffer_size = usize::try_from(limits.max_alloc_bytes).unwrap_or(usize::MAX);
    Ok(Decoder::new(Cursor::new(bytes))
        .map_err(corrupt)?
        .with_limits(tl))
}

impl TiffFile {
    pub(super) fn open(bytes: Arc<[u8]>, limits: &Limits) -> Result<TiffFile> {
        let mut dec = decoder(&bytes, limits)?;
        let first = dec
            .ifd_pointer()
            .ok_or_else(|| corrupt("no image directory"))?;
        let mut ifds = vec![first.0];
        let mut broken_tail = None;
        while dec.more_images() {
            if ifds.len() > limits.max_pages {
                // One past the limit is enough for the caller's page-count check to fail.
                break;
            }
            match dec.next_image() {
                Ok(()) => match dec.ifd_pointer() {
                    Some(p) => ifds.push(p.0),
                    None => break,
                },
                Err(e) => {
                    broken_tail = Some(e.to_string());
                    break;
                }
            }
        }
        Ok(TiffFile {
            bytes,
            ifds,
            broken_tail,
        })
    }

    pub(super) fn page_count(&self) -> usize {
        self.ifds.len() + usize::from(self.broken_tail.is_some())
    }

    pub(super) fn page(&self, index: usize, options: &DecodeOptions) -> Result<PageImage> {
        let Some(&ifd) = self.ifds.get(index) else {
            return Err(corrupt(
                self.broken_tail.as_deref().unwrap_or("missing page"),
            ));
        };
        let limits = &options.limits;
        let mut dec = decoder(&self.bytes, limits)?;
        dec.seek_to_image(index).map_err(corrupt)?;
        let (width, height) = dec.dimensions().map_err(corrupt)?;
        limits.check_page_size(u64::from(width), u64::from(height))?;
        let dpi = resolution(&mut dec).unwrap_or(options.dpi);
        let compression = dec.get_tag_u32(Tag::Compression).unwrap_or(1);
        let pixels = if matches!(compression, CCITT_RLE | CCITT_T4 | CCITT_T6) {
            ccitt_page(&mut dec, &self.bytes, compression, width, height)?
        } else {
            let reader = FirstPageAt::new(&self.bytes, ifd)?;
            let mut tiff = TiffDecoder::new(std::io::BufReader::new(reader))
                .map_err(|e| image_error(FileKind::Tiff, e))?;
            image::ImageDecoder::set_limits(&mut tiff, image_limits(limits))
                .map_err(|e| image_error(FileKind::Tiff, e))?;
            let orientation = image::ImageDecoder::orientation(&mut tiff)
                .unwrap_or(image::metadata::Orientation::NoTransforms);
            let mut image =
                DynamicImage::from_decoder(tiff).map_err(|e| image_error(FileKind::Tiff, e))?;
            image.apply_orientation(orientation);
            to_rgb_on_white(image)
        };
        Ok(PageImage { pixels, dpi })
    }
}

/// The page's horizontal resolution in dpi, when it gives one in inches or centimetres.
fn resolution(dec: &mut Decoder<Cursor<&[u8]>>) -> Option<f32> {
    let x = dec.get_tag_f32(Tag::XResolution).ok()?;
    match dec.get_tag_u32(Tag::ResolutionUnit).unwrap_or(2) {
        2 => plausible_dpi(x),
        3 => plausible_dpi(x * 2.54),
        _ => None,
    }
}

fn ccitt_page(
    dec: &mut Decoder<Cursor<&[u8]>>,
    bytes: &[u8],
    compression: u32,
    width: u32,
    height: u32,
) -> Result<image::RgbImage> {
    let offsets = dec.get_tag_u64_vec(Tag::StripOffsets).map_err(corrupt)?;
    let counts = dec.get_tag_u64_vec(Tag::StripByteCounts).map_err(corrupt)?;
    if offsets.len() != counts.len() {
        return Err(corrupt("strip offsets and byte counts differ in length"));
    }
    let rows_per_strip = dec
        .get_tag_u32(Tag::RowsPerStrip)
        .unwrap_or(height)
        .clamp(1, height.max(1));
    let t4_options = dec.get_tag_u32(Tag::Unknown(292)).unwrap_or(0);
    let t6_options = dec.get_tag_u32(Tag::Unknown(293)).unwrap_or(0);
    let fill_order_reversed = dec.get_tag_u32(Tag::FillOrder).unwrap_or(1) == 2;
    // Fax images conventionally store 0 = white (WhiteIsZero); BlackIsZero inverts that.
    let black_is_zero = dec.get_tag_u32(Tag::PhotometricInterpretation).unwrap_or(0) == 1;
    if t6_options & 2 != 0 || (compression == CCITT_T4 && t4_options & 2 != 0) {
        return Err(Error::UnsupportedType(
            "tiff with uncompressed ccitt mode".into(),
        ));
    }
    let mode = match compression {
        CCITT_RLE => ccitt::Mode::ModifiedHuffman,
        CCITT_T4 if t4_options & 1 != 0 => ccitt::Mode::Group3TwoD,
        CCITT_T4 => ccitt::Mode::Group3OneD,
        _ => ccitt::Mode::Group4,
    };
    let mut page = ccitt::Bitmap::new(width, height);
    for (strip, (&offset, &count)) in offsets.iter().zip(&counts).enumerate() {
        let first_row = (strip as u64 * u64::from(rows_per_strip)).min(u64::from(height)) as u32;
        let rows = rows_per_strip.min(height - first_row);
        if rows == 0 {
            break;
        }
        let start = usize::try_from(offset).map_err(corrupt)?;
        let end = start
            .checked_add(usize::try_from(count).map_err(corrupt)?)
            .ok_or_else(|| corrupt("strip out of range"))?
            .min(bytes.len());
        let data = bytes
            .get(start..end)
            .ok_or_else(|| corrupt("strip offset beyond the end of the file"))?;
        let data = if fill_order_reversed {
            std::borrow::Cow::Owned(data.iter().map(|b| b.reverse_bits()).collect())
        } else {
            std::borrow::Cow::Borrowed(data)
        };
        ccitt::decode_rows(&data, mode, width, rows, &mut page, first_row)?;
    }
    Ok(page.into_rgb(black_is_zero))
}

/// Reads a TIFF file as if its first IFD were the one at `ifd`: the header's first-IFD offset
/// is replaced on the fly, nothing else is copied.
struct FirstPageAt<'a> {
    inner: Cursor<&'a [u8]>,
    header: Vec<u8>,
}

impl<'a> FirstPageAt<'a> {
    fn new(bytes: &'a [u8], ifd: u64) -> Result<Self> {
        let little = bytes.starts_with(b"II");
        let big_tiff = bytes.get(2..4) == Some(if little { &[43, 0] } else { &[0, 43] });
        let header_len = if big_tiff { 16 } else { 8 };
        let mut header = bytes
            .get(..header_len)
            .ok_or_else(|| corrupt("truncated header"))?
            .to_vec();
        if big_tiff {
            let b = if little {
                ifd.to_le_bytes()
            } else {
                ifd.to_be_bytes()
            };
            header[8..16].copy_from_slice(&b);
        } else {
            let ifd = u32::try_from(ifd).map_err(corrupt)?;
            let b = if little {
                ifd.to_le_bytes()
            } else {
                ifd.to_be_bytes()
            };
            header[4..8].copy_from_slice(&b);
        }
        Ok(Self {
            inner: Cursor::new(bytes),
            header,
        })
    }
}

impl Read for FirstPageAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let pos = self.inner.position() as usize;
        let n = self.inner.read(buf)?;
        // Overlay the patched header on whatever part of it this read covered.
        for (i, b) in buf[..n].iter_mut().enumerate() {
            if let Some(h) = self.header.get(pos + i) {
                *b = *h;
            } else {
                break;
            }
        }
        Ok(n)
    }
}

impl Seek for FirstPageAt<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}
