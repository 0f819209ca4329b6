//! The command line: clap definitions, the short form `rbuild -t name:tag .`, user output
//! through a [`Printer`], and exit codes: 0 success, 1 a user error (bad Dockerfile, missing
//! file, bad flag), 2 an internal error; a closed stdout pipe ends the command quietly.

pub mod commands;
mod printer;
pub mod table;
pub mod template;

use std::ffi::OsString;
use std::io;

use clap::{CommandFactory, Parser, Subcommand};

pub use printer::Printer;

/// A daemonless Dockerfile build engine.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, long_about = None)]
#[command(after_help = "The short form `rbuild -t name:tag DIR` is `rbuild build -t name:tag DIR`: it applies \
when the first argument is a flag, `-` or an existing directory.")]
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
    /// Import the contents from a tarball to create a filesystem image
    Import(commands::import::ImportArgs),
    /// List images
    Images(commands::images::ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(commands::tag::TagArgs),
    /// Download an image from a registry
    Pull(commands::pull::PullArgs),
    /// Upload an image to a registry
    Push(commands::push::PushArgs),
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
    /// Create and run a new container from an image
    Run(commands::run::RunArgs),
    /// List containers
    Ps(commands::ps::PsArgs),
    /// Fetch the logs of a container
    Logs(commands::logs::LogsArgs),
    /// List port mappings or a specific mapping for the container
    Port(commands::port::PortArgs),
    /// Display the running processes of a container
    Top(commands::top::TopArgs),
    /// Run a command in a running container
    Exec(commands::exec::ExecArgs),
    /// Stop one or more running containers
    Stop(commands::stop::StopArgs),
    /// Start one or more stopped containers
    Start(commands::start::StartArgs),
    /// Remove one or more containers
    Rm(commands::rm::RmArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(commands::diff::DiffArgs),
    /// Create a new image from a container's changes
    Commit(commands::commit::CommitArgs),
    /// Export a container's filesystem as a tar archive
    Export(commands::export::ExportArgs),
    /// Log in to a registry
    Login(commands::login::LoginArgs),
    /// Log out from a registry
    Logout(commands::login::LogoutArgs),
    /// Search a registry's repositories (its catalog; Docker Hub's search API is not reachable)
    Search(commands::search::SearchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion(commands::completion::CompletionArgs),
    /// Print or install the manual pages
    Man(commands::man::ManArgs),
    /// Runs a detached container (started by `run -d` and `start`)
    #[command(name = "container-monitor", hide = true)]
    ContainerMonitor(commands::run::MonitorArgs),
}

/// The command has already told the user what went wrong: exit with this code, print nothing.
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct Exit(pub i32);

/// An error that is rbuild's fault, not the user's: exits 2.
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0}")]
pub struct InternalError(pub String);

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    init_logging();
    crate::store::trees::set_unprivileged_remover(crate::runtime::remove_tree_in_user_namespace);
    let args = with_short_form(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let mut p = Printer::new();
    let result = match cli.command {
        Command::Build(a) => commands::build::run(a, &mut p),
        Command::Parse(a) => commands::parse::run(a, &mut p),
        Command::Import(a) => commands::import::run(a, &mut p),
        Command::Images(a) => commands::images::run(a, &mut p),
        Command::Tag(a) => commands::tag::run(a, &mut p),
        Command::Pull(a) => commands::pull::run(a, &mut p),
        Command::Push(a) => commands::push::run(a, &mut p),
        Command::Rmi(a) => commands::rmi::run(a, &mut p),
        Command::History(a) => commands::history::run(a, &mut p),
        Command::Inspect(a) => commands::inspect::run(a, &mut p),
        Command::Save(a) => commands::save::run(a, &mut p),
        Command::Load(a) => commands::load::run(a, &mut p),
        Command::Image(a) => commands::image::run(a, &mut p),
        Command::Store(a) => commands::store::run(a, &mut p),
        Command::Run(a) => commands::run::run(a, &mut p),
        Command::Ps(a) => commands::ps::run(a, &mut p),
        Command::Logs(a) => commands::logs::run(a, &mut p),
        Command::Port(a) => commands::port::run(a, &mut p),
        Command::Top(a) => commands::top::run(a, &mut p),
        Command::Exec(a) => commands::exec::run(a, &mut p),
        Command::Stop(a) => commands::stop::run(a, &mut p),
        Command::Start(a) => commands::start::run(a, &mut p),
        Command::Rm(a) => commands::rm::run(a, &mut p),
        Command::Diff(a) => commands::diff::run(a, &mut p),
        Command::Commit(a) => commands::commit::run(a, &mut p),
        Command::Export(a) => commands::export::run(a, &mut p),
        Command::Login(a) => commands::login::run(a, &mut p),
        Command::Logout(a) => commands::login::run_logout(a, &mut p),
        Command::Search(a) => commands::search::run(a, &mut p),
        Command::Completion(a) => commands::completion::run(a, &mut p),
        Command::Man(a) => commands::man::run(a, &mut p),
        Command::ContainerMonitor(a) => commands::run::monitor(a, &mut p),
    }
    .and_then(|()| Ok(p.flush()?));
    match result {
        Ok(()) => 0,
        Err(err) => report(&err),
    }
}

/// Prints `err` and picks its exit code.
fn report(err: &anyhow::Error) -> i32 {
    let closed_pipe =
        err.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe));
    if closed_pipe {
        return 0;
    }
    if let Some(Exit(code)) = err.chain().find_map(|c| c.downcast_ref::<Exit>()) {
        return *code;
    }
    let mut message = String::from("Error: ");
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

/// Prints a usage error (or the help or version clap produced) and picks its exit code. An
/// unknown subcommand is named with the nearest real one, as git does.
fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() == ErrorKind::InvalidSubcommand {
        if let Some(ContextValue::String(name)) = e.get(ContextKind::InvalidSubcommand) {
            // clap lists the candidates from the least to the most similar.
            let suggestion = match e.get(ContextKind::SuggestedSubcommand) {
                Some(ContextValue::Strings(s)) => s.last().map(|b| format!("; did you mean '{b}'?")),
                Some(ContextValue::String(s)) => Some(format!("; did you mean '{s}'?")),
                _ => None,
            };
            let suggestion = suggestion.unwrap_or_default();
            eprintln!("Error: unrecognized subcommand '{name}'{suggestion}\nSee 'rbuild --help'.");
            return 1;
        }
    }
    let code = if e.use_stderr() { 1 } else { 0 };
    // Printing help or a usage error can only fail on a closed pipe: nothing to add.
    let _ = e.print();
    code
}

/// `rbuild -t app:1 .` means `rbuild build -t app:1 .`: `build` is inserted when the first
/// argument is not a subcommand and is a flag other than the top-level ones, `-` (the context
/// on stdin), an existing directory, a path (`./app`, `src/`: the build then says the path
/// is missing) or a remote context's URL (`https://…`, `git://…`, `git@host:repo`). Anything else stays a subcommand, so a typo is an error with a suggestion
/// rather than a build of a missing directory.
fn with_short_form(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(first) = args.get(1) else {
        return args;
    };
    let name = first.to_str();
    let command = Cli::command();
    let is_subcommand = name.is_some_and(|n| {
        n == "help" || command.get_subcommands().any(|c| c.get_name() == n || c.get_all_aliases().any(|a| a == n))
    });
    let is_top_flag = matches!(name, Some("-h" | "--help" | "-V" | "--version"));
    let is_build_flag = name.is_some_and(|n| n.starts_with('-'));
    let is_url = name.is_some_and(|n| ["http://", "https://", "git://", "git@"].iter().any(|p| n.starts_with(p)));
    let is_path = is_url || std::path::Path::new(first).is_dir() || name.is_some_and(|n| n.contains('/') || n == "..");
    if !is_subcommand && !is_top_flag && (is_build_flag || is_path) {
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
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_owned());
    bar
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
