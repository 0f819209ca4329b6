//! RUN: the container spec a step runs in (argv through the SHELL or a heredoc script, the
//! environment with build and proxy args, user, working dir, mounts, network, the image's
//! layers as overlay lower dirs) handed to the [`crate::engine::runner::ContainerRunner`], and
//! Docker's wording of a failed command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fs_err as fs;

use crate::engine::commit::UpperDiff;
use crate::engine::executor::{ImageState, StageExecutor};
use crate::engine::run_mounts::RunMounts;
use crate::engine::scheduler::Cancel;
use crate::engine::BuildError;
use crate::events::BuildEvent;
use crate::frontend::instructions::{CommandForm, RunInstruction};
use crate::frontend::lower::PROXY_ARGS;
use crate::image::ImageConfig;
use crate::layer::digest::Sha256Digest;
use crate::plan::{Stage, Step};
use crate::runtime::{ContainerExit, ContainerSpec, OverlayKind, Rootfs, StdioMode};

static CONTAINER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh 64-hex container ID.
fn container_id() -> String {
    let n = CONTAINER_COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Sha256Digest::of(format!("{}-{}-{n}", std::process::id(), now.as_nanos()).as_bytes()).hex().to_string()
}

impl StageExecutor<'_> {
    /// The lower dirs of an image, top-most first as the runtime takes them.
    fn lower_dirs(&self, state: &ImageState, work: &Path) -> Result<Vec<PathBuf>, BuildError> {
        let mut lowers = match &state.stored {
            Some(image) => self.store.ensure_unpacked(image)?,
            None => Vec::new(),
        };
        lowers.reverse();
        if lowers.is_empty() {
            // An overlay needs one lower dir: scratch gets an empty one.
            let empty = work.join("empty");
            fs::create_dir_all(&empty)?;
            lowers.push(empty);
        }
        Ok(lowers)
    }

    /// Runs a RUN step on an overlay of the parent's layers; its writes land in `upper`. Returns
    /// the argv and how to read `upper` at commit (its lower dirs, whether fuse-overlayfs wrote it).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_step(
        &self,
        stage: &Stage,
        step: &Step,
        run: &RunInstruction,
        state: &ImageState,
        upper: &Path,
        work: &Path,
        done: &BTreeMap<usize, Arc<ImageState>>,
        cancel: &Cancel,
    ) -> Result<(Vec<String>, UpperDiff), BuildError> {
        let overlay_work = work.join("work");
        fs::create_dir_all(&overlay_work)?;
        let lowers = self.lower_dirs(state, work)?;
        let rootfs = Rootfs::Overlay { lower: lowers.clone(), upper: upper.to_path_buf(), work: overlay_work };
        let prepared = self.prepare_run(stage, step, run, state, rootfs, work, done)?;
        let (argv, exit) = self.start_run(step, state, run, prepared, cancel)?;
        // fuse-overlayfs may record whiteouts as `.wh.` files; otherwise such a name is refused.
        // The lowers tell which opaque markers and copy-ups are no change.
        Ok((argv, UpperDiff { whiteout_files: exit.overlay == OverlayKind::Fuse, lowers }))
    }

    /// The container of a RUN step on `rootfs`, with the mounts it holds until it ends.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn prepare_run(
        &self,
        stage: &Stage,
        step: &Step,
        run: &RunInstruction,
        state: &ImageState,
        rootfs: Rootfs,
        work: &Path,
        done: &BTreeMap<usize, Arc<ImageState>>,
    ) -> Result<PreparedRun, BuildError> {
        // Held until the container is gone: cache locks (the copies live in `work`).
        let mounts = self.run_mounts(stage, step, run, state, work, done)?;
        let argv = run_argv(&state.config, run);
        let script = shebang_script(run, work)?;
        let id = container_id();
        let mut spec = ContainerSpec::new(
            &id,
            rootfs,
            script.as_ref().map_or_else(|| argv.clone(), |m| vec![m.target.clone()]),
            self.state_dir.clone(),
        );
        let mut env = state.config.config.env.clone();
        for (k, v) in &step.build_args {
            if state.config.env_var(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        // Proxy args need no ARG and stay out of the history and the cache key; a
        // `--build-arg` beats the builder's own environment.
        for name in PROXY_ARGS {
            if let Some(v) = self.proxy_args.get(*name) {
                env.push(format!("{name}={v}"));
            }
        }
        env.extend(mounts.env.iter().cloned());
        spec.env = env;
        spec.mounts = mounts.mounts.clone();
        spec.mounts.extend(script);
        let wd = &state.config.config.working_dir;
        spec.working_dir = Some(if wd.is_empty() { "/".to_string() } else { wd.clone() });
        let user = &state.config.config.user;
        spec.user = (!user.is_empty()).then(|| user.clone());
        spec.network = run.network.unwrap_or_default().or(self.network);
        // `--security=insecure`, granted with `--allow security.insecure` (the plan was checked
        // before the build started; checked again here so no other path runs it privileged).
        if let Some(needed) = crate::plan::entitlements::needed_by_security(run.security.as_deref()) {
            if !self.allowed.contains(&needed) {
                return Err(BuildError::Internal(format!(
                    "step {} needs --allow {needed}, and the plan was not checked against --allow",
                    step.number
                )));
            }
            spec.privileged = true;
        }
        spec.extra_hosts = self.extra_hosts.clone();
        if let Ok(isolation) = self.isolation() {
            spec.isolation = isolation;
        }
        let events = Arc::clone(&self.events);
        let number = step.number;
        spec.stdio = StdioMode::Lines(Box::new(move |stream, bytes, _| {
            let line = String::from_utf8_lossy(bytes).trim_end_matches(['\n', '\r']).to_string();
            events(&BuildEvent::Output { step: number, stream, line });
        }));
        Ok(PreparedRun { spec, argv, mounts })
    }

    /// Runs a prepared RUN container to its end; a failed command is the step's error.
    pub(crate) fn start_run(
        &self,
        step: &Step,
        state: &ImageState,
        run: &RunInstruction,
        prepared: PreparedRun,
        cancel: &Cancel,
    ) -> Result<(Vec<String>, ContainerExit), BuildError> {
        let PreparedRun { spec, argv, mounts } = prepared;
        let id = spec.id.clone();
        self.emit(BuildEvent::ContainerStarted { step: step.number, container_id: id.clone() });
        let exit = self.runner.run(spec);
        drop(mounts);
        self.emit(BuildEvent::ContainerRemoved { step: step.number, container_id: id });
        let exit = exit?;
        if cancel.is_cancelled() {
            return Err(BuildError::Cancelled { last_image: state.id() });
        }
        if exit.code != 0 {
            return Err(BuildError::RunFailed {
                step: step.number,
                command: docker_command_text(&state.config, run),
                code: exit.code,
                last_image: state.id(),
            });
        }
        Ok((argv, exit))
    }
}

/// A RUN container ready to start: its spec, the argv its history shows, and the mounts
/// (cache locks, copies) that must outlive it.
pub(crate) struct PreparedRun {
    pub(crate) spec: ContainerSpec,
    pub(crate) argv: Vec<String>,
    pub(crate) mounts: RunMounts,
}

/// argv of a RUN: exec form as is; shell form through the SHELL; a heredoc-only command runs
/// the heredoc body as the script; a command with heredocs passes the whole text to the shell,
/// which reads the heredocs itself.
pub fn run_argv(config: &ImageConfig, run: &RunInstruction) -> Vec<String> {
    match &run.command {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(cmd) => {
            let script = match (sole_heredoc(run), run.heredocs.as_slice()) {
                (Some(body), _) => body,
                (None, []) => cmd.clone(),
                (None, docs) => {
                    let mut text = cmd.clone();
                    for d in docs {
                        text.push('\n');
                        text.push_str(&d.content);
                        text.push_str(&d.name);
                    }
                    text
                }
            };
            config.shell_argv(&script)
        }
    }
}

/// The body of a RUN that is one heredoc and nothing else (`RUN <<EOF`), chomped if `<<-`.
fn sole_heredoc(run: &RunInstruction) -> Option<String> {
    let CommandForm::Shell(cmd) = &run.command else { return None };
    let [only] = run.heredocs.as_slice() else { return None };
    let alone = cmd.trim().trim_start_matches(|c: char| c.is_ascii_digit()).starts_with("<<")
        && cmd.split_whitespace().count() == 1;
    alone.then(|| if only.chomp { crate::frontend::parser::chomp_heredoc(&only.content) } else { only.content.clone() })
}

/// BuildKit runs a sole heredoc that starts with `#!` as a program, not through the shell:
/// its body becomes an executable file at `/dev/pipes/<name>` (read-only, never in the image)
/// and that file is the command, so the kernel starts the interpreter the shebang names. The
/// file lives in the step's work dir and is bind-mounted (the runtime's tmpfs-backed file
/// mounts are `noexec`, rightly so for secrets).
fn shebang_script(run: &RunInstruction, work: &Path) -> Result<Option<crate::runtime::Mount>, BuildError> {
    let Some(body) = sole_heredoc(run).filter(|b| b.starts_with("#!")) else { return Ok(None) };
    let Some(name) = run.heredocs.first().map(|d| d.name.clone()) else { return Ok(None) };
    let source = work.join("heredoc-script");
    fs::write(&source, body)?;
    fs::set_permissions(&source, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(Some(crate::runtime::Mount {
        target: format!("/dev/pipes/{name}"),
        kind: crate::runtime::MountKind::Bind { source, readonly: true },
    }))
}

/// How classic docker names a failed command: `'/bin/sh -c false'` or `'["false"]'`; a
/// heredoc RUN shows the script it ran, not just `<<EOF`.
fn docker_command_text(config: &ImageConfig, run: &RunInstruction) -> String {
    match &run.command {
        CommandForm::Shell(_) => run_argv(config, run).join(" "),
        CommandForm::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}
