//! `rbuild top CONTAINER [ps OPTIONS]`: the container's processes, as `docker top` shows
//! them: the host's `ps` (default `-ef`) with the rows of the container's processes.

use anyhow::Context as _;

use crate::cli::Printer;

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    pub container: String,
    /// Options for ps (default: -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

pub fn run(args: TopArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    let record = containers.find(&args.container)?;
    let pids = containers.processes(&record)?;
    let options = if args.ps_options.is_empty() { vec!["-ef".to_string()] } else { args.ps_options.clone() };
    let out = std::process::Command::new("ps").args(&options).output().context("running ps")?;
    if !out.status.success() {
        anyhow::bail!("ps {}: {}", options.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| anyhow::anyhow!("Couldn't find PID field in ps output"))?;
    p.line(header)?;
    for line in lines {
        let pid = line.split_whitespace().nth(column).and_then(|f| f.parse::<i32>().ok());
        if pid.is_some_and(|pid| pids.contains(&pid)) {
            p.line(line)?;
        }
    }
    Ok(())
}
