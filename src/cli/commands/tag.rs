//! `rbuild tag SOURCE TARGET`.

use crate::cli::Printer;
use crate::store::{ImageReference, ImageStore};

#[derive(clap::Args, Debug)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG] or image ID
    pub source: String,
    /// TARGET_IMAGE[:TAG]
    pub target: String,
}

pub fn run(args: TagArgs, _p: &mut Printer) -> anyhow::Result<()> {
    let target = ImageReference::parse(&args.target)?;
    let store = ImageStore::open_default()?;
    let image = store.resolve(&args.source)?;
    store.tag(&image, &target)?;
    Ok(())
}
