//! The command line: clap definitions, the choice of output, and exit codes
//! (0 success, 1 user error, 2 internal error; quiet on a closed pipe).

pub mod commands;
pub mod table;
pub mod template;
pub mod units;

use clap::{Parser, Subcommand};
use std::io::{self, Write};

/// rbuild: a daemonless Dockerfile build engine.
#[derive(Parser, Debug)]
#[command(name = "rbuild", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Import the contents from a tarball to create a filesystem image
    Import(commands::import::ImportArgs),
    /// List images
    Images(commands::images::ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(commands::tag::TagArgs),
    /// Remove one or more images
    Rmi(commands::rmi::RmiArgs),
    /// Show the history of an image
    History(commands::history::HistoryArgs),
    /// Display detailed information on one or more images
    Inspect(commands::inspect::InspectArgs),
    /// Save one or more images to a tar archive
    Save(commands::save::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(commands::load::LoadArgs),
    /// Manage images
    Image(commands::image::ImageArgs),
    /// Check and clean the local store
    Store(commands::store::StoreArgs),
}

/// An error that is rbuild's fault, not the user's: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0}")]
pub struct InternalError(pub String);

/// User-facing output on stdout. A closed pipe (`rbuild images | head -1`) ends the command
/// quietly with success.
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
        Self {
            out: io::BufWriter::new(io::stdout()),
        }
    }

    pub fn line(&mut self, text: impl std::fmt::Display) -> io::Result<()> {
        writeln!(self.out, "{text}")
    }

    pub fn text(&mut self, text: impl std::fmt::Display) -> io::Result<()> {
        write!(self.out, "{text}")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut p = Printer::new();
    let result = match cli.command {
        Command::Import(a) => commands::import::run(a, &mut p),
        Command::Images(a) => commands::images::run(a, &mut p),
        Command::Tag(a) => commands::tag::run(a, &mut p),
        Command::Rmi(a) => commands::rmi::run(a, &mut p),
        Command::History(a) => commands::history::run(a, &mut p),
        Command::Inspect(a) => commands::inspect::run(a, &mut p),
        Command::Save(a) => commands::save::run(a, &mut p),
        Command::Load(a) => commands::load::run(a, &mut p),
        Command::Image(a) => commands::image::run(a, &mut p),
        Command::Store(a) => commands::store::run(a, &mut p),
    };
    result?;
    p.flush()?;
    Ok(())
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => 0,
        Err(e) if is_closed_pipe(&e) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            if e.downcast_ref::<InternalError>().is_some() {
                2
            } else {
                1
            }
        }
    }
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub fn progress_bar(total: Option<u64>, message: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_owned());
    bar
}
