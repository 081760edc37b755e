//! Fixture builders shared by the integration tests: PDFs and images made in code.

pub mod pdf;

use std::path::PathBuf;

/// A file from the repository's `fixtures/` folder.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}
