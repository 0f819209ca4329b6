//! `rbuild store check [--repair]` and `rbuild store gc`.

use crate::cli::Printer;
use crate::events::units::human_size;
use crate::store::ImageStore;

#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Verify every blob, manifest, tag and unpacked layer
    Check {
        /// Drop damaged images and corrupt blobs, clean leftovers
        #[arg(long)]
        repair: bool,
    },
    /// Remove blobs and unpacked layers that nothing references
    Gc,
}

pub fn run(args: StoreArgs, p: &mut Printer) -> anyhow::Result<()> {
    let store = ImageStore::open_default()?;
    match args.command {
        StoreCommand::Check { repair } => {
            let report = store.check(repair)?;
            for problem in &report.problems {
                p.line(format!("error: {problem}"))?;
            }
            for g in &report.garbage {
                p.line(format!("garbage: {g} (store gc removes it)"))?;
            }
            for r in &report.repaired {
                p.line(format!("repaired: {r}"))?;
            }
            if report.problems.is_empty() {
                p.line(format!("store {} is consistent", store.root().display()))?;
            } else if !repair {
                p.flush()?;
                anyhow::bail!(
                    "{} problem(s) found in {}; run `rbuild store check --repair`",
                    report.problems.len(),
                    store.root().display()
                );
            }
        }
        StoreCommand::Gc => {
            let r = store.gc()?;
            for b in &r.deleted_blobs {
                p.line(format!("deleted blob: {b}"))?;
            }
            for l in &r.deleted_layers {
                p.line(format!("deleted layer: {l}"))?;
            }
            for k in &r.kept {
                p.warn(format!("Note: {k}"));
            }
            p.line(format!("Total reclaimed space: {}", human_size(r.reclaimed)))?;
        }
    }
    Ok(())
}
