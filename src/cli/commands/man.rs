//! `rbuild man [--output-dir DIR]`: manual pages in roff, generated from the clap definitions
//! by `clap_mangen`. Without a directory, `rbuild(1)` goes to stdout (`rbuild man | man -l -`);
//! with one, `rbuild.1` and one `rbuild-<command>.1` per command are written there
//! (`rbuild man --output-dir ~/.local/share/man/man1`, then `man rbuild-build`).

use crate::cli::Printer;
use anyhow::Context;
use clap::CommandFactory;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(after_help = "Install the pages for `man` (no root needed):
  rbuild man --output-dir ~/.local/share/man/man1 && man rbuild-build")]
pub struct ManArgs {
    /// Write rbuild.1 and rbuild-<command>.1 for every command into this directory (created
    /// if missing) instead of printing rbuild(1)
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

pub fn run(args: ManArgs, p: &mut Printer) -> anyhow::Result<()> {
    let command = crate::cli::Cli::command();
    match args.output_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            p.text(String::from_utf8_lossy(&page))?;
        }
        Some(dir) => {
            fs_err::create_dir_all(&dir)?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("writing manual pages to {}", dir.display()))?;
            p.line(format!("manual pages written to {}", dir.display()))?;
        }
    }
    Ok(())
}
