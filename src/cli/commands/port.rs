//! `rbuild port CONTAINER [PORT[/PROTO]]`: the container's published ports, as docker prints
//! them.

use crate::cli::Printer;
use crate::containers::{parse_port_proto, port_lines};

#[derive(clap::Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// A container port (`80`, `80/tcp`, `53/udp`)
    pub port: Option<String>,
}

pub fn run(args: PortArgs, p: &mut Printer) -> anyhow::Result<()> {
    let only = args.port.as_deref().map(|t| parse_port_proto(t, "port")).transpose()?;
    let containers = super::run::open_containers()?;
    let record = containers.find(&args.container)?;
    let lines = port_lines(&record.ports, only);
    if let (Some(text), true) = (&args.port, lines.is_empty()) {
        anyhow::bail!("No public port '{}' published for {}", with_proto(text), args.container);
    }
    for line in lines {
        p.line(line)?;
    }
    Ok(())
}

/// `80` reads as `80/tcp` in messages, as docker says it.
fn with_proto(text: &str) -> String {
    if text.contains('/') {
        text.to_string()
    } else {
        format!("{text}/tcp")
    }
}
