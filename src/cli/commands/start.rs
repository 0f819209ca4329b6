//! `rbuild start [-a] CONTAINER...`: runs a container's command again on its kept upper dir,
//! detached (prints the name) or attached (`-a`: its output, its exit code).

use crate::cli::Printer;
use crate::containers::{ContainerState, RunStdio};

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: StartArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    if args.attach {
        if args.containers.len() > 1 {
            anyhow::bail!("you cannot start and attach multiple containers at once");
        }
        let mut record = containers.find(&args.containers[0])?;
        if record.state == ContainerState::Running {
            return Ok(());
        }
        let stdio = RunStdio::attached(record.tty, record.interactive);
        p.flush()?;
        let outcome = containers.run_attached(&mut record, stdio);
        return super::run::finish(outcome, p);
    }
    super::for_each_container(&args.containers, p, |name| {
        containers.find(name).and_then(|r| containers.start_detached(&r))
    })
}
