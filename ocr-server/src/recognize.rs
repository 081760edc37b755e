//! `ocr recognize`: one file in, one export out.
//!
//! Exit codes: 0 every page was read; 1 the file could not be read at all (or the output could
//! not be written); 2 bad arguments; 3 the output was written but some pages failed (each
//! failure is reported on stderr with its reason).

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ocr_core::{
    DecodeOptions, Engine, InputFile, PageOutcome, RecognizeOptions, parse_page_selection,
};
use ocr_formats::{ExportOptions, Format, export};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to read; `-` reads standard input.
    file: PathBuf,
    /// Output format.
    #[arg(long, short, default_value = "txt", value_parser = ["txt", "md", "json"])]
    format: String,
    /// Pages to read, 1-based, e.g. `1-3,7` or `5-`.
    #[arg(long)]
    pages: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Resolution PDF pages are rendered at.
    #[arg(long, default_value_t = 200.0)]
    dpi: f32,
    /// Recognise born-digital PDF pages from their image instead of their text layer.
    #[arg(long)]
    force_ocr: bool,
}

pub fn run(args: Args) -> ExitCode {
    match recognize(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_input(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        Ok(bytes)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Runs the command; returns how many pages failed.
fn recognize(args: &Args) -> anyhow::Result<usize> {
    let format: Format = args.format.parse()?;
    let bytes = read_input(&args.file)?;
    let decode = DecodeOptions {
        dpi: args.dpi,
        ..DecodeOptions::default()
    };
    let file = InputFile::open(bytes, decode)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let pages = args
        .pages
        .as_deref()
        .map(|spec| parse_page_selection(spec, file.page_count()))
        .transpose()?;
    let options = RecognizeOptions {
        force_ocr: args.force_ocr,
        pages,
    };
    let total = options.pages.as_ref().map_or(file.page_count(), Vec::len);
    let bar = progress_bar(total);
    let document =
        Engine::new().recognize(&file, &options, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();

    let mut failed = 0;
    for page in &document.pages {
        if let PageOutcome::Failed { reason } = &page.outcome {
            failed += 1;
            eprintln!("page {}: {reason}", page.index + 1);
        }
    }

    let export_options = ExportOptions { pretty: true };
    match &args.output {
        Some(path) => {
            let mut out =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            export(&document, format, &export_options, &mut out)?;
            out.flush()?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            export(&document, format, &export_options, &mut out)?;
            out.flush()?;
        }
    }
    Ok(failed)
}

/// A bar on stderr for multi-page input, only when stderr is a terminal: logs and pipes stay clean.
fn progress_bar(total: usize) -> ProgressBar {
    if total < 2 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} pages {elapsed}") {
        bar.set_style(style);
    }
    bar
}
