//! `rbuild exec [-i] [-t] [-e K=V] [-u USER] [-w DIR] CONTAINER CMD...`: run a command in a
//! running container; exits with its exit code.

use crate::cli::{Exit, Printer};
use crate::containers::{ExecOptions, LifecycleError};

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Keep STDIN open (the command reads rbuild's stdin)
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(args: ExecArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = super::run::open_containers()?;
    let record = containers.find(&args.container)?;
    let env = args
        .env
        .iter()
        .filter_map(|e| match e.split_once('=') {
            Some(_) => Some(e.clone()),
            None => std::env::var(e).ok().map(|v| format!("{e}={v}")),
        })
        .collect();
    let opts = ExecOptions {
        command: args.command,
        env,
        user: args.user,
        working_dir: args.workdir,
        tty: args.tty,
        interactive: args.interactive,
    };
    p.flush()?;
    match containers.exec(&record, &opts) {
        Ok(0) => Ok(()),
        Ok(code) => Err(Exit(code).into()),
        Err(LifecycleError::Start { code, source, .. }) => {
            p.warn(format!("Error: {source}"));
            Err(Exit(code).into())
        }
        Err(e) => Err(e.into()),
    }
}
