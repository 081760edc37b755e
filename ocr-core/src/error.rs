//! The one error type of `ocr-core`, with variants a caller can act on.

use std::time::Duration;

/// Everything that can go wrong in `ocr-core`. Variants are grouped so that a server can map
/// them to status codes: bad input (`400`), over a limit (`400`/`413`), internal (`500`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a file type we read.
    #[error("unsupported file type{}", detail(.0))]
    UnsupportedType(String),
    /// The file is empty.
    #[error("empty file")]
    Empty,
    /// The file claims a supported type but cannot be read.
    #[error("corrupt {kind} file: {reason}")]
    Corrupt { kind: &'static str, reason: String },
    /// The PDF is encrypted with a password we do not have.
    #[error("encrypted pdf: a password is required")]
    Encrypted,
    /// A configured limit was exceeded; `what` says which.
    #[error("{what} exceeds the limit: {actual} > {limit}")]
    LimitExceeded {
        what: LimitKind,
        limit: u64,
        actual: u64,
    },
    /// A page took longer than the per-page time limit.
    #[error("page took longer than the time limit of {:.1} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// A page number outside the document.
    #[error("page {requested} is out of range: the document has {count} pages")]
    PageOutOfRange { requested: usize, count: usize },
    /// A malformed page selection such as `3-1` or `x`.
    #[error("invalid page selection {0:?}: expected e.g. 1-3,7")]
    PageSelection(String),
    /// A request the installed models cannot serve, such as a language they cannot read.
    #[error("{0}")]
    Unsupported(String),
    /// A bug: a library we call panicked. The message is for logs, not for clients.
    #[error("internal error while {0}")]
    Internal(String),
}

fn detail(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// Which limit an input exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    FileBytes,
    PagePixels,
    PageDimension,
    Pages,
    Dpi,
    PageComplexity,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::FileBytes => "file size in bytes",
            LimitKind::PagePixels => "pixels per page",
            LimitKind::PageDimension => "page width or height in pixels",
            LimitKind::Pages => "number of pages",
            LimitKind::Dpi => "render dpi",
            LimitKind::PageComplexity => "drawing operations per page",
        })
    }
}

impl Error {
    /// True when the input, not the engine, is at fault (a `4xx` for a server).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Error::Internal(_))
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
