//! `rbuild import FILE|- [REPO[:TAG]] [-c INSTRUCTION]... [-m MESSAGE]`: prints the image ID.
//! With `SOURCE_DATE_EPOCH` set, the image's `created` time is that instant (as a build's is),
//! so the same tarball gives the same image ID everywhere.

use crate::cli::Printer;
use crate::store::import::{import_rootfs, ImportOptions};
use crate::store::{ImageReference, ImageStore};
use anyhow::Context;

#[derive(clap::Args, Debug)]
#[command(after_help = "With SOURCE_DATE_EPOCH set (seconds since 1970), the image's creation time is that \
instant instead of now, so importing the same tarball gives the same image ID on every machine.")]
pub struct ImportArgs {
    /// Tarball to import (plain, gzip or zstd), or `-` for standard input
    pub file: String,
    /// Name for the image
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Set a commit message for the imported image
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
}

pub fn run(args: ImportArgs, p: &mut Printer) -> anyhow::Result<()> {
    let tag = args.reference.as_deref().map(ImageReference::parse).transpose()?.map(|r| r.with_default_tag());
    if tag.as_ref().is_some_and(|t| t.digest().is_some()) {
        anyhow::bail!("refusing to create a tag with a digest reference");
    }
    let settings = crate::engine::settings::BuildSettings::from_env();
    let created = settings.source_date_epoch()?.map(|_| settings.created());
    let store = ImageStore::open_default()?;
    // `Imported from -` for a file too, as docker's client sends a file as the request body
    // (so the image does not depend on where the tarball lay: the same bytes, the same ID).
    let opts = ImportOptions { tag, changes: args.change, message: args.message, source: "-".to_string(), created };
    let image = if args.file == "-" {
        let bar = crate::cli::progress_bar(None, "Importing");
        let image = import_rootfs(&store, std::io::stdin().lock(), &opts, &bar)?;
        bar.finish_and_clear();
        image
    } else {
        let file = fs_err::File::open(&args.file)?;
        let len = file.metadata().map(|m| m.len()).ok();
        let bar = crate::cli::progress_bar(len, "Importing");
        let image = import_rootfs(&store, file, &opts, &bar).with_context(|| format!("importing {}", args.file))?;
        bar.finish_and_clear();
        image
    };
    p.line(&image.id)?;
    Ok(())
}
