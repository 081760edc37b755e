//! The `ocr` command-line program: recognise files, serve the REST API, and manage accounts,
//! tokens and credits. A thin layer over the library crates.

mod recognize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ocr_server::{admin, serve};

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
    /// Serve the REST API (OCR.chat-compatible).
    Serve(serve::ServeArgs),
    /// Manage accounts: create (with a first token), list, set-plan.
    Accounts(admin::AccountsArgs),
    /// Manage tokens: create, revoke, list.
    Tokens(admin::TokensArgs),
    /// Add purchased credits to an account.
    Credits(admin::CreditsArgs),
    /// Show credits used per account or client address and period.
    Usage(admin::UsageArgs),
}

fn main() -> ExitCode {
    ocr_core::nn::retain_freed_memory();
    // Nothing has used rayon yet, so building its global pool cannot fail.
    let _ = ocr_core::nn::configure_thread_pool(None);
    let cli = Cli::parse();
    match cli.command {
        Command::Recognize(args) => recognize::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Accounts(args) => admin::accounts(args),
        Command::Tokens(args) => admin::tokens(args),
        Command::Credits(args) => admin::credits(args),
        Command::Usage(args) => admin::usage(args),
    }
}
