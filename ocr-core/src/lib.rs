//! `ocr-core`: the OCR engine as a library.
//!
//! The crate decodes an uploaded file (images of every common type, multi-page TIFF, PDF),
//! reads born-digital PDF pages from their text layer, and produces a [`Document`]: pages of
//! blocks of lines of words, each with a box in page pixels and a confidence. It does no
//! network I/O and is synchronous; callers run it on their own threads.
//!
//! ```no_run
//! use ocr_core::{DecodeOptions, Engine, InputFile, RecognizeOptions};
//!
//! let bytes = std::fs::read("letter.pdf").unwrap();
//! let file = InputFile::open(bytes, DecodeOptions::default()).unwrap();
//! let document = Engine::new()
//!     .recognize(&file, &RecognizeOptions::default(), |_, _| {})
//!     .unwrap();
//! for page in &document.pages {
//!     println!("page {}: {}", page.index + 1, page.text());
//! }
//! ```

mod decode;
mod document;
mod error;
pub mod layout;
mod limits;
pub mod nn;
pub mod ocr;
mod pipeline;

pub use decode::{
    DecodeOptions, DecodedPage, FileKind, InputFile, PageImage, PageParts, TextLayer, sniff,
};
pub use document::{
    BBox, Block, BlockKind, Cell, Document, Line, Page, PageOutcome, Rotation, Table, TextSource,
    Word,
};
pub use error::{Error, LimitKind, Result};
pub use layout::regions::{LayoutModel, Region, RegionKind};
pub use layout::{blocks_from_lines, blocks_in_regions};
pub use limits::Limits;
pub use ocr::{ModelSize, OcrModels};
pub use pipeline::{Engine, NO_ENGINE, RecognizeOptions, parse_page_selection, read_image};

/// Re-exported so callers can work with page pixels without naming a matching `image` version.
pub use candle_core;
pub use image;
