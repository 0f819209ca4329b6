//! User-facing output: everything a command prints for people goes through [`Printer`], which
//! turns a closed stdout pipe (`rbuild parse | head -1`) into a quiet stop instead of a panic.

use std::io::{self, Write};

/// stdout was closed by the reader; the command stops quietly with exit code 0.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct ClosedPipe;

/// Writes command output.
#[derive(Debug, Default)]
pub struct Printer {}

impl Printer {
    pub fn new() -> Self {
        Printer {}
    }

    /// Writes `text` and a newline to stdout.
    pub fn line(&self, text: impl std::fmt::Display) -> anyhow::Result<()> {
        self.write(format_args!("{text}\n"))
    }

    /// Writes `text` as is to stdout.
    pub fn write(&self, text: std::fmt::Arguments) -> anyhow::Result<()> {
        let mut out = io::stdout().lock();
        match out.write_fmt(text).and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(ClosedPipe.into()),
            other => Ok(other?),
        }
    }

    /// A warning for the user on stderr.
    pub fn warn(&self, text: impl std::fmt::Display) {
        eprintln!("{text}");
    }
}
