//! Integration tests of the `ocr` binary, built into one test binary.

mod cli;
mod exports;
mod live;
mod server;
