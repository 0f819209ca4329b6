//! `rbuild store check [--repair]`, `rbuild store gc` and `rbuild store reset --force`.

use crate::cli::Printer;
use crate::events::units::human_size;
use crate::store::ImageStore;

#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Verify every blob, manifest, tag and unpacked layer
    Check {
        /// Drop damaged images and corrupt blobs, clean leftovers
        #[arg(long)]
        repair: bool,
    },
    /// Remove blobs and unpacked layers that nothing references
    Gc,
    /// Delete the whole store (every image, container, cache and cache mount) and its
    /// directory; works without root for an unprivileged user's store
    Reset {
        /// Required: the deletion cannot be undone
        #[arg(short, long)]
        force: bool,
    },
}

pub fn run(args: StoreArgs, p: &mut Printer) -> anyhow::Result<()> {
    let store = ImageStore::open_default()?;
    if let StoreCommand::Reset { force } = args.command {
        return reset(store, force, p);
    }
    match args.command {
        StoreCommand::Check { repair } => {
            if repair {
                stop_leftover_containers(&store, p)?;
            }
            let report = store.check(repair)?;
            for problem in &report.problems {
                p.line(format!("error: {problem}"))?;
            }
            for g in &report.garbage {
                p.line(format!("garbage: {g} (store gc removes it)"))?;
            }
            for r in &report.repaired {
                p.line(format!("repaired: {r}"))?;
            }
            if report.problems.is_empty() {
                p.line(format!("store {} is consistent", store.root().display()))?;
            } else if !repair {
                p.flush()?;
                anyhow::bail!(
                    "{} problem(s) found in {}; run `rbuild store check --repair`",
                    report.problems.len(),
                    store.root().display()
                );
            }
        }
        StoreCommand::Gc => {
            stop_leftover_containers(&store, p)?;
            let r = store.gc()?;
            for b in &r.deleted_blobs {
                p.line(format!("deleted blob: {b}"))?;
            }
            for l in &r.deleted_layers {
                p.line(format!("deleted layer: {l}"))?;
            }
            for k in &r.kept {
                p.warn(format!("Note: {k}"));
            }
            p.line(format!("Total reclaimed space: {}", human_size(r.reclaimed)))?;
        }
        StoreCommand::Reset { .. } => {}
    }
    Ok(())
}

/// Stops what a killed rbuild left running for the store's containers and RUN steps (their
/// processes, pasta) and removes their runtime state, as every build and container command
/// does before it starts.
fn stop_leftover_containers(store: &ImageStore, p: &mut Printer) -> anyhow::Result<()> {
    let report = crate::runtime::cleanup_stale(&store.root().join("run"))?;
    for pid in &report.killed {
        p.line(format!("stopped process {pid}, left running by a killed rbuild"))?;
    }
    for id in &report.removed {
        p.line(format!("removed runtime state: {id}"))?;
    }
    Ok(())
}

/// `store reset`: refused without `--force` and while a container runs.
fn reset(store: ImageStore, force: bool, p: &mut Printer) -> anyhow::Result<()> {
    let root = store.root().to_owned();
    if !force {
        anyhow::bail!(
            "`store reset` deletes every image, container and cache in {}; run `rbuild store reset --force`",
            root.display()
        );
    }
    let containers = crate::containers::Containers::open(store.clone())?;
    let running: Vec<String> = containers
        .list()?
        .into_iter()
        .filter(|c| c.state == crate::containers::ContainerState::Running)
        .map(|c| c.short_id().to_owned())
        .collect();
    if !running.is_empty() {
        anyhow::bail!(
            "containers {} are running in {}; stop them first (rbuild stop)",
            running.join(", "),
            root.display()
        );
    }
    drop(containers);
    store.reset()?;
    p.line(format!("deleted store {}", root.display()))?;
    Ok(())
}
