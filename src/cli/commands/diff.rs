//! `rbuild diff CONTAINER`: `A`, `C` and `D` lines for what the container changed, sorted.

use crate::cli::Printer;

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    pub container: String,
}

pub fn run(args: DiffArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    let record = containers.find(&args.container)?;
    for change in containers.changes(&record)? {
        p.line(format!("{} {}", change.kind.letter(), change.path.display()))?;
    }
    Ok(())
}
