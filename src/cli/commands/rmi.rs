//! `rbuild rmi [-f] IMAGE...`: `Untagged:` and `Deleted:` lines as Docker prints them.

use crate::cli::{Exit, Printer};
use crate::store::maintenance::Removal;
use crate::store::ImageStore;

#[derive(clap::Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Prints a removal as Docker does.
pub fn print_removal(r: &Removal, p: &mut Printer, lower: bool) -> std::io::Result<()> {
    let (u, d) = if lower { ("untagged", "deleted") } else { ("Untagged", "Deleted") };
    for t in &r.untagged {
        p.line(format!("{u}: {}", t.familiar()))?;
    }
    for id in &r.deleted {
        p.line(format!("{d}: {id}"))?;
    }
    for k in &r.kept {
        p.warn(format!("Note: {k}"));
    }
    Ok(())
}

pub fn run(args: RmiArgs, p: &mut Printer) -> anyhow::Result<()> {
    let store = ImageStore::open_default()?;
    let mut failed = false;
    for name in &args.images {
        match store.remove_image(name, args.force) {
            Ok(r) => print_removal(&r, p, false)?,
            Err(e) => {
                // Each cause once, as it happens; there is no daemon to blame.
                p.flush()?;
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}
