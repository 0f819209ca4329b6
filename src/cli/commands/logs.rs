//! `rbuild logs CONTAINER`: what the container wrote to stdout and stderr.

use crate::cli::Printer;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    pub container: String,
}

pub fn run(args: LogsArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    let record = containers.find(&args.container)?;
    let bytes = match fs_err::read(&record.log) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    p.text(String::from_utf8_lossy(&bytes))?;
    Ok(())
}
