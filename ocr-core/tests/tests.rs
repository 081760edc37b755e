//! Integration tests of `ocr-core`, built into one binary.

mod support;

mod hostile;
mod images;
mod kernels;
mod parity;
mod pdf;
mod recognize;
mod structure;
mod tiff;
