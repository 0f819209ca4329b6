//! `rbuild image prune [-a] [-f]`.

use crate::cli::Printer;
use crate::events::units::human_size;
use crate::store::ImageStore;
use std::io::BufRead;

#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Remove unused images
    Prune {
        /// Remove all unused images, not just dangling ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
    },
}

pub fn run(args: ImageArgs, p: &mut Printer) -> anyhow::Result<()> {
    let ImageCommand::Prune { all, force } = args.command;
    if !force {
        let warning = if all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        p.line(warning)?;
        p.text("Are you sure you want to continue? [y/N] ")?;
        p.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let store = ImageStore::open_default()?;
    let r = store.prune(all)?;
    if !r.untagged.is_empty() || !r.deleted.is_empty() {
        p.line("Deleted Images:")?;
        super::rmi::print_removal(&r, p, true)?;
        p.line("")?;
    } else {
        for k in &r.kept {
            p.warn(format!("Note: {k}"));
        }
    }
    p.line(format!("Total reclaimed space: {}", human_size(r.reclaimed)))?;
    Ok(())
}
