//! `rbuild rm [-f] CONTAINER...`: removes containers (record, upper dir, log); a running one
//! only with `-f`, which kills it.

use crate::cli::Printer;

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: RmArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    super::for_each_container(&args.containers, p, |name| {
        containers.find(name).and_then(|r| containers.remove(&r, args.force))
    })
}
