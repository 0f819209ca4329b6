//! The command line: clap definitions, the short form `rbuild -t name:tag .`, user output
//! through a [`Printer`], and exit codes: 0 success, 1 a user error (bad Dockerfile, missing
//! file, bad flag), 2 an internal error; a closed stdout pipe ends the command quietly.

mod commands;
mod printer;
pub mod units;

use std::ffi::OsString;

use clap::{CommandFactory, Parser, Subcommand};

pub use printer::{ClosedPipe, Printer};

/// A daemonless Dockerfile build engine.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, long_about = None)]
#[command(after_help = "The short form `rbuild -t name:tag DIR` is `rbuild build -t name:tag DIR`.")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile and a build context
    Build(commands::build::BuildArgs),
    /// Parse a Dockerfile and print its syntax tree
    Parse(commands::parse::ParseArgs),
}

/// An error that is rbuild's fault, not the user's: exits 2.
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0}")]
pub struct InternalError(pub String);

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    init_logging();
    let args = with_short_form(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            // Printing help or a usage error can only fail on a closed pipe: nothing to add.
            let _ = e.print();
            return code;
        }
    };
    let printer = Printer::new();
    let result = match cli.command {
        Command::Build(args) => commands::build::run(args, &printer),
        Command::Parse(args) => commands::parse::run(args, &printer),
    };
    match result {
        Ok(()) => 0,
        Err(err) => report(&err),
    }
}

/// Prints `err` and picks its exit code.
fn report(err: &anyhow::Error) -> i32 {
    if err.chain().any(|c| c.is::<ClosedPipe>()) {
        return 0;
    }
    let mut message = String::from("error: ");
    for (i, cause) in err.chain().enumerate() {
        if i > 0 {
            message.push_str(": ");
        }
        message.push_str(&cause.to_string());
    }
    eprintln!("{message}");
    if err.chain().any(|c| c.is::<InternalError>()) {
        2
    } else {
        1
    }
}

/// `rbuild -t app:1 .` means `rbuild build -t app:1 .`: when the first argument is neither a
/// subcommand nor a top-level flag, `build` is inserted.
fn with_short_form(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else {
        return args;
    };
    let command = Cli::command();
    let is_subcommand =
        command.get_subcommands().any(|c| c.get_name() == first || c.get_all_aliases().any(|a| a == first))
            || first == "help";
    let is_top_flag = matches!(first, "-h" | "--help" | "-V" | "--version");
    if !is_subcommand && !is_top_flag {
        args.insert(1, OsString::from("build"));
    }
    args
}

/// `tracing` logs go to stderr, filtered by `RBUILD_LOG` (default: warnings only). They are
/// for developers; what users read goes through the [`Printer`].
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RBUILD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        with_short_form(list.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn short_form_inserts_build() {
        assert_eq!(args(&["rbuild", "-t", "app:1", "."]), ["rbuild", "build", "-t", "app:1", "."]);
        assert_eq!(args(&["rbuild", "."]), ["rbuild", "build", "."]);
        assert_eq!(args(&["rbuild", "parse", "-f", "x"]), ["rbuild", "parse", "-f", "x"]);
        assert_eq!(args(&["rbuild", "--help"]), ["rbuild", "--help"]);
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
