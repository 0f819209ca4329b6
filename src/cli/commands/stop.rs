//! `rbuild stop [-t SECONDS] CONTAINER...`: SIGTERM, then SIGKILL after the grace period;
//! prints each container as named.

use std::time::Duration;

use crate::cli::{Exit, Printer};

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
    let mut failed = false;
    for name in &args.containers {
        let stopped = containers.find(name).and_then(|r| containers.stop(&r, Duration::from_secs(args.time)));
        match stopped {
            Ok(_) => p.line(name)?,
            Err(e) => {
                p.warn(format!("Error: {e}"));
                failed = true;
            }
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}
