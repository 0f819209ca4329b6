//! User-facing output: everything a command prints for people goes through [`Printer`]
//! (buffered stdout). A closed pipe (`rbuild images | head -1`) surfaces as an
//! `io::ErrorKind::BrokenPipe` error, which the CLI turns into a quiet exit 0.

use std::io::{self, Write};

/// Command output on stdout, buffered and flushed at the end (or on drop).
pub struct Printer {
    out: io::BufWriter<io::Stdout>,
}

impl Default for Printer {
    fn default() -> Self {
        Self::new()
    }
}

impl Printer {
    pub fn new() -> Self {
        Printer { out: io::BufWriter::new(io::stdout()) }
    }

    /// `text` and a newline.
    pub fn line(&mut self, text: impl std::fmt::Display) -> io::Result<()> {
        writeln!(self.out, "{text}")
    }

    /// `text` as is.
    pub fn text(&mut self, text: impl std::fmt::Display) -> io::Result<()> {
        write!(self.out, "{text}")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// A warning for the user, on stderr (after what stdout already holds).
    pub fn warn(&mut self, text: impl std::fmt::Display) {
        let _ = self.out.flush();
        eprintln!("{text}");
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}
