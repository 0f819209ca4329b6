//! `rbuild export [-o FILE] CONTAINER`: the container's filesystem as a tar archive.

use std::io::IsTerminal;

use anyhow::bail;

use crate::cli::Printer;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    pub container: String,
}

pub fn run(args: ExportArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    let record = containers.find(&args.container)?;
    match &args.output {
        Some(path) => {
            let mut file = std::io::BufWriter::new(fs_err::File::create(path)?);
            containers.export(&record, &mut file)?;
        }
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            p.flush()?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            containers.export(&record, &mut out)?;
        }
    }
    Ok(())
}
