//! The `ocr` command-line program: recognise files now; serve the REST API and manage accounts
//! and models in later releases. A thin layer over the library crates.

mod recognize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ocr",
    version,
    about = "Self-hosted OCR: images and PDFs to text, Markdown and JSON"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a file (image, multi-page TIFF or PDF) and write its text.
    Recognize(recognize::Args),
}

fn main() -> ExitCode {
    ocr_core::nn::retain_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Recognize(args) => recognize::run(args),
    }
}
