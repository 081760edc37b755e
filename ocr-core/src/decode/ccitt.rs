//! CCITT fax decoding (T.4 modified Huffman, Group 3 1D/2D, Group 4) for TIFF strips, on top of
//! `hayro-ccitt`, which PDF rendering already depends on.

use hayro_ccitt::{DecodeSettings, DecoderContext, EncodingMode};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// TIFF compression 2: one-dimensional, each row byte-aligned, no EOL codes.
    ModifiedHuffman,
    Group3OneD,
    Group3TwoD,
    Group4,
}

/// A bilevel page, one byte per pixel (1 = black) while rows are written.
pub(super) struct Bitmap {
    width: u32,
    height: u32,
    black: Vec<u8>,
}

impl Bitmap {
    pub(super) fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            black: vec![0; width as usize * height as usize],
        }
    }

    pub(super) fn into_rgb(self, invert: bool) -> image::RgbImage {
        let (on, off) = if invert { (255, 0) } else { (0, 255) };
        let data = self
            .black
            .iter()
            .flat_map(|&b| {
                let v = if b == 1 { on } else { off };
                [v, v, v]
            })
            .collect();
        image::RgbImage::from_raw(self.width, self.height, data)
            .unwrap_or_else(|| image::RgbImage::new(self.width, self.height))
    }
}

/// Collects the rows `hayro-ccitt` reports into the bitmap, from `next_row` on.
struct RowSink<'a> {
    bitmap: &'a mut Bitmap,
    next_row: u32,
    end_row: u32,
}

impl hayro_ccitt::Decoder for RowSink<'_> {
    fn push_row(&mut self, changes: &[u32]) {
        if self.next_row >= self.end_row {
            return;
        }
        let width = self.bitmap.width as usize;
        let row = &mut self.bitmap.black[self.next_row as usize * width..][..width];
        // Each row starts white; pixels between changes[2k] and changes[2k+1] are black.
        for pair in changes.chunks(2) {
            let start = (pair[0] as usize).min(width);
            let end = pair.get(1).map_or(width, |&e| (e as usize).min(width));
            row[start..end.max(start)].fill(1);
        }
        self.next_row += 1;
    }
}

/// Decodes `rows` rows of CCITT data into `bitmap` starting at row `first_row`. A damaged strip
/// keeps the rows decoded before the damage (the rest stay white) when at least one row was
/// read; a strip from which nothing decodes is an error.
pub(super) fn decode_rows(
    data: &[u8],
    mode: Mode,
    width: u32,
    rows: u32,
    bitmap: &mut Bitmap,
    first_row: u32,
) -> Result<()> {
    let settings = DecodeSettings {
        columns: width,
        rows,
        end_of_block: mode != Mode::ModifiedHuffman,
        end_of_line: false,
        rows_are_byte_aligned: mode == Mode::ModifiedHuffman,
        encoding: match mode {
            Mode::ModifiedHuffman | Mode::Group3OneD => EncodingMode::Group3_1D,
            Mode::Group3TwoD => EncodingMode::Group3_2D,
            Mode::Group4 => EncodingMode::Group4,
        },
        strict: false,
    };
    let mut ctx = DecoderContext::new(settings);
    let mut sink = RowSink {
        bitmap,
        next_row: first_row,
        end_row: first_row + rows,
    };
    match hayro_ccitt::decode(data, &mut sink, &mut ctx) {
        Ok(_) => Ok(()),
        Err(_) if sink.next_row > first_row => Ok(()),
        Err(e) => Err(Error::Corrupt {
            kind: "tiff",
            reason: format!("ccitt data: {e:?}"),
        }),
    }
}
