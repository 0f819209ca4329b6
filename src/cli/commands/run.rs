//! `rbuild run`: create a container from an image and run it in the foreground (output
//! copied to its log, `-i` stdin, `-t` a pseudo-terminal) or detached under a monitor
//! process (`-d`); exits with the container's exit code. Also the hidden
//! `rbuild container-monitor ID` that a detached container runs under.

use anyhow::Context as _;

use crate::cli::{Exit, Printer};
use crate::containers::{Containers, CreateOptions, LifecycleError, PortBinding, RunOutcome, RunStdio};
use crate::runtime::{NetworkMode, SeccompPolicy};
use crate::store::ImageStore;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Keep STDIN open
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to take it from this environment)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Connect the container to a network: default (its own namespace with outbound access),
    /// host or none
    #[arg(long, default_value = "default", value_parser = ["default", "bridge", "host", "none"])]
    pub network: String,
    /// Publish a container's port to the host ([IP:][HOST_PORT:]CONTAINER_PORT[/PROTO])
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Add a custom host-to-IP mapping (NAME:IP)
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Security options: seccomp=unconfined, seccomp=builtin or seccomp=PROFILE.json
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    pub image: String,
    /// The command and its arguments (replace the image's CMD)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The hidden `container-monitor` subcommand.
#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    pub id: String,
}

/// The store's containers, with stale runtime state cleaned up, on a leased handle: the image a container runs from
/// stays while this command (`run`, `start -a`, a detached container's monitor) lives.
pub fn open_containers() -> anyhow::Result<Containers> {
    Ok(Containers::open(ImageStore::open_default()?.leased("container"))?)
}

/// Turns a finished foreground run into the command's result: exit with the container's code.
pub fn finish(outcome: Result<RunOutcome, LifecycleError>, p: &mut Printer) -> anyhow::Result<()> {
    match outcome {
        Ok(RunOutcome { code: 0, .. }) => Ok(()),
        Ok(RunOutcome { code, .. }) => Err(Exit(code).into()),
        Err(LifecycleError::Start { code, source, .. }) => {
            p.warn(format!("Error: {source}"));
            Err(Exit(code).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The seccomp policy `--security-opt` asks for (Docker's default without one).
fn seccomp_policy(options: &[String]) -> anyhow::Result<SeccompPolicy> {
    let mut policy = SeccompPolicy::Default;
    for option in options {
        // Docker takes `seccomp=VALUE` and the older `seccomp:VALUE`.
        let value = option.strip_prefix("seccomp=").or_else(|| option.strip_prefix("seccomp:"));
        let Some(value) = value else {
            anyhow::bail!(
                "invalid --security-opt {option:?}: only seccomp=unconfined, seccomp=builtin and \
                 seccomp=PROFILE.json are supported"
            );
        };
        policy = SeccompPolicy::from_option(value)?;
    }
    Ok(policy)
}

pub fn run(args: RunArgs, p: &mut Printer) -> anyhow::Result<()> {
    // `UPPER:tag` is no name at all: say so rather than that no image has it.
    crate::store::reference::ImageReference::parse(&args.image)?;
    let seccomp = seccomp_policy(&args.security_opt)?;
    if let Some(warning) = crate::runtime::rootless_setup_warning() {
        p.warn(warning);
    }
    let containers = open_containers()?;
    let opts = CreateOptions {
        image: args.image.clone(),
        name: args.name.clone(),
        command: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        env: args.env.clone(),
        working_dir: args.workdir.clone(),
        user: args.user.clone(),
        network: match args.network.as_str() {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => NetworkMode::Default,
        },
        publish: args.publish.iter().map(|p| PortBinding::parse(p)).collect::<Result<_, _>>()?,
        publish_all: args.publish_all,
        extra_hosts: crate::cli::commands::build::parse_add_hosts(&args.add_hosts)?,
        tty: args.tty,
        interactive: args.interactive,
        auto_remove: args.rm,
        seccomp,
    };
    let mut record = containers.create(&opts)?;
    if args.detach {
        containers.spawn_monitor(&record)?;
        p.line(&record.id)?;
        return Ok(());
    }
    p.flush()?;
    let outcome = containers.run_attached(&mut record, RunStdio::attached(args.tty, args.interactive));
    if args.rm {
        containers.remove(&record, true).with_context(|| format!("removing container {}", record.id))?;
    }
    finish(outcome, p)
}

/// Runs a detached container to its end: stdout and stderr are its log already.
pub fn monitor(args: MonitorArgs, p: &mut Printer) -> anyhow::Result<()> {
    let containers = open_containers()?;
    let mut record = containers.reload(&args.id)?;
    let outcome = containers.run_attached(&mut record, RunStdio::Inherit);
    if record.auto_remove {
        containers.remove(&record, true)?;
    }
    finish(outcome, p)
}
