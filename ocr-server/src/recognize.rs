//! `ocr recognize`: one file in, one export out.
//!
//! Exit codes: 0 every page was read; 1 the file could not be read at all (or the output could
//! not be written); 2 bad arguments; 3 the output was written but some pages failed (each
//! failure is reported on stderr with its reason).

use std::collections::HashMap;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ocr_core::{
    DecodeOptions, Engine, InputFile, ModelSize, PageOutcome, RecognizeOptions,
    parse_page_selection,
};
use ocr_formats::{ExportOptions, Format, PageImage, PageSources, export};

const FORMATS: [&str; 8] = ["txt", "md", "json", "docx", "pdf", "csv", "hocr", "alto"];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to read; `-` reads standard input.
    file: PathBuf,
    /// Output format: txt, md, json, docx, pdf (searchable: the page images under an
    /// invisible text layer), csv (the tables), hocr or alto.
    #[arg(long, short, default_value = "txt", value_parser = FORMATS)]
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
    /// Engine tier: `cpu` runs PP-OCRv6 detection and recognition on the CPU.
    #[arg(long, default_value = "cpu", value_parser = ["cpu"])]
    tier: String,
    /// Model size: `small` (accurate, default) or `tiny` (fastest).
    #[arg(long, default_value = "small", value_parser = ["small", "tiny"])]
    model: String,
    /// Language of the document: `auto` detects the script per page; a code the models
    /// cannot read is refused with the list of supported ones.
    #[arg(long, default_value = "auto")]
    language: String,
    /// Trust that pages are upright: skip the page orientation classifier.
    #[arg(long)]
    no_rotate: bool,
    /// Each page is a single line of text (a line crop): recognise it without detection.
    #[arg(long)]
    single_line: bool,
    /// Skip the layout model (regions: headers, footers, titles, captions, columns): blocks by
    /// geometry alone, a little faster.
    #[arg(long)]
    no_layout: bool,
    /// Skip the table-structure model: table cells from the words' positions alone, a little faster
    #[arg(long)]
    no_table_model: bool,
    /// A tool's preset: `extract-tables` reads the document for its tables (a page with no
    /// table found is also tried whole as one); Markdown and CSV then carry the tables alone and
    /// say so when there is none.
    #[arg(long, value_parser = ["extract-tables"])]
    tool: Option<String>,
    /// Print to standard error how long loading the models took and how long reading and
    /// recognising the file took (the engine's own time, as a warm server would spend it).
    #[arg(long)]
    timings: bool,
}

pub fn run(args: Args) -> ExitCode {
    match recognize(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(3),
        Err(e) if e.downcast_ref::<BadArgument>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
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

/// An argument the engine refuses (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadArgument(String);

/// Runs the command; returns how many pages failed.
fn recognize(args: &Args) -> anyhow::Result<usize> {
    let format: Format = args.format.parse()?;
    if format.is_binary() && args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(BadArgument(format!(
            "{} is binary: write it to a file with -o FILE, or redirect standard output",
            format.extension()
        ))
        .into());
    }
    let size: ModelSize = args.model.parse().map_err(BadArgument)?;
    let started = Instant::now();
    let engine = Engine::load_default(size).context("loading the recognition models")?;
    let loaded = Instant::now();
    let bytes = read_input(&args.file)?;
    // A searchable PDF of a PDF copies the pages read from their text layer from the source.
    let source_pdf = (format == Format::Pdf && bytes.starts_with(b"%PDF")).then(|| bytes.clone());
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
    let extract_tables = args.tool.as_deref() == Some("extract-tables");
    let options = RecognizeOptions {
        force_ocr: args.force_ocr,
        pages,
        language: Some(args.language.clone()),
        no_page_rotation: args.no_rotate,
        no_layout: args.no_layout,
        no_table_model: args.no_table_model,
        extract_tables,
        single_line: args.single_line,
    };
    engine
        .check_options(&options)
        .map_err(|e| BadArgument(e.to_string()))?;
    let total = options.pages.as_ref().map_or(file.page_count(), Vec::len);
    let bar = progress_bar(total);
    // The searchable PDF needs each page's image: compressed as soon as the page is read.
    let mut images = PageSources {
        images: HashMap::new(),
        pdf: source_pdf,
    };
    let mut image_error = None;
    let document = if format == Format::Pdf {
        engine.recognize_with_images(&file, &options, |done, _, page, image| {
            bar.set_position(done as u64);
            if let Some(pixels) = image {
                match PageImage::encode(&pixels) {
                    Ok(encoded) => {
                        images.images.insert(page.index, encoded);
                    }
                    Err(e) => image_error = Some(e),
                }
            }
        })?
    } else {
        engine.recognize(&file, &options, |done, _| bar.set_position(done as u64))?
    };
    bar.finish_and_clear();
    if args.timings {
        eprintln!(
            "timings: models loaded in {:.3} s; {} pages read and recognised in {:.3} s",
            (loaded - started).as_secs_f64(),
            document.pages.len(),
            loaded.elapsed().as_secs_f64()
        );
    }
    if let Some(e) = image_error {
        return Err(e).context("compressing a page image");
    }

    let mut failed = 0;
    for page in &document.pages {
        if let PageOutcome::Failed { reason } = &page.outcome {
            failed += 1;
            eprintln!("page {}: {reason}", page.index + 1);
        }
    }

    let export_options = ExportOptions {
        pretty: true,
        images: Some(&images),
        job: None,
        tables_only: extract_tables,
    };
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
