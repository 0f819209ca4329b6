//! One file per subcommand: each parses its arguments and calls the library.

pub mod build;
pub mod build_outputs;
pub mod commit;
pub mod completion;
pub mod diff;
pub mod exec;
pub mod export;
pub mod history;
pub mod image;
pub mod images;
pub mod import;
pub mod inspect;
pub mod load;
pub mod login;
pub mod logs;
pub mod man;
pub mod parse;
pub mod port;
pub mod ps;
pub mod pull;
pub mod push;
pub mod rm;
pub mod rmi;
pub mod run;
pub mod save;
pub mod search;
pub mod start;
pub mod stop;
pub mod store;
pub mod tag;
pub mod top;

use std::io::Read;
use std::path::Path;

use anyhow::Context as _;

/// Applies `act` to each named container as docker's `rm`, `start` and `stop` do: the name is
/// printed when it worked, `Error: …` goes to stderr when not, the rest are still tried, and the
/// command exits 1 if any failed.
pub fn for_each_container<E: std::fmt::Display>(
    names: &[String],
    p: &mut crate::cli::Printer,
    mut act: impl FnMut(&str) -> Result<(), E>,
) -> anyhow::Result<()> {
    let mut failed = false;
    for name in names {
        match act(name) {
            Ok(()) => p.line(name)?,
            Err(e) => {
                p.warn(format!("Error: {e}"));
                failed = true;
            }
        }
    }
    if failed {
        return Err(crate::cli::Exit(1).into());
    }
    Ok(())
}

/// Reads a Dockerfile (`-` is stdin) and returns its display name and text.
pub fn read_dockerfile(path: &Path) -> anyhow::Result<(String, String)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the Dockerfile from stdin")?;
        return Ok(("Dockerfile".to_string(), text));
    }
    let bytes = fs_err::read(path)?;
    let text = String::from_utf8(bytes).with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    Ok((path.display().to_string(), text))
}
