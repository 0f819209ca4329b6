//! `rbuild ps`: CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, PORTS, NAMES as docker prints
//! them (`Up 2 seconds`, `Exited (3) 5 seconds ago`, `Created`).

use crate::cli::table::TableWriter;
use crate::cli::Printer;
use crate::containers::{ContainerRecord, ContainerState};
use crate::events::units::{human_duration, since};

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
}

fn elapsed(rfc3339: Option<&str>) -> String {
    let start = rfc3339.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    start.map(|t| human_duration(chrono::Utc::now().signed_duration_since(t))).unwrap_or_default()
}

/// The STATUS column.
pub fn status(r: &ContainerRecord) -> String {
    match r.state {
        ContainerState::Created => "Created".into(),
        ContainerState::Running => format!("Up {}", elapsed(r.started_at.as_deref())),
        ContainerState::Exited => {
            let code = r.exit_code.unwrap_or(0);
            match r.finished_at.as_deref() {
                Some(t) => format!("Exited ({code}) {}", since(Some(t))),
                None => format!("Exited ({code})"),
            }
        }
    }
}

/// The COMMAND column: the command line, cut to 20 characters with `…` unless `full`, quoted.
pub fn command_column(r: &ContainerRecord, full: bool) -> String {
    let text = r.args().join(" ");
    let shown = if !full && text.chars().count() > 20 {
        let mut cut: String = text.chars().take(19).collect();
        cut.push('…');
        cut
    } else {
        text
    };
    format!("\"{}\"", shown.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn run(args: PsArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    let mut rows = containers.list()?;
    if args.latest {
        rows.truncate(1);
    } else if !args.all {
        rows.retain(|r| r.state == ContainerState::Running);
    }
    let id = |r: &ContainerRecord| if args.no_trunc { r.id.clone() } else { r.short_id().to_string() };
    if args.quiet {
        for r in &rows {
            p.line(id(r))?;
        }
        return Ok(());
    }
    let mut table = TableWriter::new();
    table.row(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]);
    for r in &rows {
        table.row([
            id(r),
            r.image_name.clone(),
            command_column(r, args.no_trunc),
            since(Some(&r.created)),
            status(r),
            ports_column(&containers, r),
            r.name.clone(),
        ]);
    }
    for line in table.lines() {
        p.line(line)?;
    }
    Ok(())
}

/// PORTS: what a running container publishes, and the image's other EXPOSEd ports.
fn ports_column(containers: &crate::containers::Containers, r: &ContainerRecord) -> String {
    if r.state != ContainerState::Running {
        return String::new();
    }
    let exposed = containers.image_of(r).map(|i| crate::containers::exposed_ports(&i.config)).unwrap_or_default();
    crate::containers::ps_column(&r.ports, &exposed)
}
