//! `rbuild save [-o FILE] [--format docker|oci] IMAGE...`.

use crate::cli::Printer;
use crate::store::archive::{save, ArchiveFormat, SaveItem};
use crate::store::atomic::{AtomicFile, Durability};
use crate::store::{ImageReference, ImageStore};
use anyhow::{bail, Context};
use std::io::{IsTerminal, Write};

#[derive(clap::Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    /// Archive format: docker (docker-archive that also holds an OCI layout) or oci
    #[arg(long, default_value = "docker", value_parser = ["docker", "oci"])]
    pub format: String,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn run(args: SaveArgs, _p: &mut Printer) -> anyhow::Result<()> {
    let store = ImageStore::open_default()?.leased("save");
    let images = store.images()?;
    let mut items: Vec<SaveItem> = Vec::new();
    for name in &args.images {
        let image = store.resolve_in(&images, name)?;
        store.lease_image(image)?;
        let tag = ImageReference::parse(name)
            .ok()
            .filter(|r| r.digest().is_none())
            .map(|r| r.with_default_tag())
            .filter(|r| image.tags.contains(r));
        match items.iter_mut().find(|i| i.image.id == image.id) {
            Some(item) => item.tags.extend(tag),
            None => items.push(SaveItem { image: image.clone(), tags: tag.into_iter().collect() }),
        }
    }
    let format = if args.format == "oci" { ArchiveFormat::Oci } else { ArchiveFormat::Docker };
    let total: u64 = items.iter().map(|i| i.image.size()).sum();
    let bar = crate::cli::progress_bar(Some(total), "Saving");
    match &args.output {
        Some(path) => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let result = (|| -> anyhow::Result<()> {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, AtomicFile::create(dir, path)?);
                save(&store, &items, format, &mut w, &bar)?;
                w.into_inner().map_err(|e| e.into_error())?.commit(Durability::Synced)?;
                Ok(())
            })();
            result.with_context(|| format!("saving to {}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            save(&store, &items, format, &mut w, &bar)?;
            w.flush()?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}
