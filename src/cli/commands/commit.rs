//! `rbuild commit [-m MSG] [-a AUTHOR] [-c INSTRUCTION]... CONTAINER [REPO[:TAG]]`: a new
//! image from a container's changes; prints its ID.

use crate::cli::Printer;
use crate::containers::CommitOptions;

#[derive(clap::Args, Debug)]
pub struct CommitArgs {
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    pub container: String,
    pub reference: Option<String>,
}

pub fn run(args: CommitArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    let record = containers.find(&args.container)?;
    let opts =
        CommitOptions { message: args.message, author: args.author, changes: args.change, reference: args.reference };
    let image = containers.commit(&record, &opts)?;
    p.line(&image.id)?;
    Ok(())
}
