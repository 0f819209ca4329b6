//! `rbuild logs CONTAINER`: what the container wrote to stdout and stderr.

use crate::cli::Printer;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    pub container: String,
}

pub fn run(args: LogsArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    let record = containers.find(&args.container)?;
    p.text(String::from_utf8_lossy(&containers.logs(&record)?))?;
    Ok(())
}
