//! The build context: walking the context directory, reading `.dockerignore` and matching it
//! with Docker's exact semantics (moby/patternmatcher + BuildKit/fsutil walk rules), COPY/ADD
//! source selection, and content digests of source selections.
//!
//! Submodules: [`pattern`] (pattern compilation and matching), [`ignorefile`] (reading the
//! ignore file, choosing which one applies), [`walk`] (the filtered walk), [`select`] (COPY
//! sources), [`digest`] (source digests), [`remote`] (git and URL contexts fetched into a
//! directory the caller owns).

use std::path::PathBuf;

pub mod digest;
pub mod ignorefile;
pub mod pattern;
pub mod remote;
pub mod select;
pub mod walk;

pub use digest::{located_digest, source_digest, ContentMemo, SourceDigest};
pub use ignorefile::{find_ignore_file, read_ignore_file, read_ignore_file_lines};
pub use pattern::{IgnoreMatch, IgnorePattern, PatternMatcher};
pub use select::SelectedRoot;
pub use walk::{BuildContext, ContextEntry, ContextSummary, EntryKind, FileStamp};

/// Errors of the build-context module. Every variant names the path (or the pattern's origin).
#[derive(thiserror::Error, Debug)]
pub enum ContextError {
    /// A pattern that fails validation. `origin` is `<ignore file>:<line>`, `pattern #<n>` for
    /// a pattern list, or `COPY source`.
    #[error("{origin}: invalid pattern {pattern:?}: {reason}")]
    BadPattern { origin: String, pattern: String, reason: String },
    /// A pattern that passed validation but cannot be compiled, found when matching `path`.
    #[error("{origin}: bad pattern {pattern:?} while matching {path:?}: {reason}")]
    PatternMatch { origin: String, pattern: String, path: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("build context {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: file name is not valid UTF-8")]
    NonUtf8Path { path: PathBuf },
    /// A COPY/ADD source that matches nothing in the filtered context.
    #[error("failed to compute cache key: {src:?} not found in build context {context}")]
    SourceNotFound { src: String, context: PathBuf },
    /// Every COPY/ADD source is a wildcard and none matches anything.
    #[error("failed to compute cache key: no source files were specified: wildcard {src:?} matched nothing in build context {context}")]
    NoWildcardMatch { src: String, context: PathBuf },
}
