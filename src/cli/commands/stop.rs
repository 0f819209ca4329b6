//! `rbuild stop [-t SECONDS] CONTAINER...`: SIGTERM, then SIGKILL after the grace period;
//! prints each container as named.

use std::time::Duration;

use crate::cli::Printer;

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(args: StopArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    super::for_each_container(&args.containers, p, |name| {
        containers.find(name).and_then(|r| containers.stop(&r, Duration::from_secs(args.time))).map(|_| ())
    })
}
