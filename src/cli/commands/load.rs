//! `rbuild load [-i FILE] [-q]`: docker-archives and OCI archives (plain, gzip or zstd).

use crate::cli::Printer;
use crate::store::archive::load;
use crate::store::ImageStore;
use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<std::path::PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: LoadArgs, p: &mut Printer) -> anyhow::Result<()> {
    let store = ImageStore::open_default()?;
    let loaded = match &args.input {
        Some(path) => {
            let file = fs_err::File::open(path)?;
            let len = file.metadata().map(|m| m.len()).ok();
            let bar =
                if args.quiet { indicatif::ProgressBar::hidden() } else { crate::cli::progress_bar(len, "Loading") };
            let name = path.display().to_string();
            let loaded = load(&store, file, &name, &bar).with_context(|| format!("loading {name}"))?;
            bar.finish_and_clear();
            loaded
        }
        None => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                anyhow::bail!("requested load from stdin, but stdin is empty");
            }
            let bar =
                if args.quiet { indicatif::ProgressBar::hidden() } else { crate::cli::progress_bar(None, "Loading") };
            let loaded = load(&store, std::io::stdin().lock(), "stdin", &bar).context("loading from stdin")?;
            bar.finish_and_clear();
            loaded
        }
    };
    if !args.quiet {
        for l in &loaded {
            if l.tags.is_empty() {
                p.line(format!("Loaded image ID: {}", l.id))?;
            }
            for t in &l.tags {
                p.line(format!("Loaded image: {}", t.familiar()))?;
            }
        }
    }
    Ok(())
}
