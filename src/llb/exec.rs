//! RUN as an LLB exec op: argv, env (the image's, then the build args it does not set), cwd,
//! user, network, the root filesystem as mount 0, and one mount per `RUN --mount` (bind from
//! the context or a stage, cache with its id and sharing, tmpfs, secret, ssh), as BuildKit's
//! Dockerfile frontend lowers them.

use super::graph::{OpOrigin, Output};
use super::{pb, Fs, LlbError, Lowering, StepFacts};
use crate::image::{resolve_workdir, ImageConfig};
use crate::plan::instruction::{parse_size, CacheSharing, MountSpec, MountType, RunInstruction};
use crate::plan::{NetworkMode, Stage, Step};

/// BuildKit's index meaning "no input" (scratch) and "no output".
const EMPTY: i64 = -1;

/// The inputs of one exec op, each listed once.
#[derive(Default)]
struct Inputs(Vec<Output>);

impl Inputs {
    /// The index of `fs` among the op's inputs; scratch is [`EMPTY`].
    fn index(&mut self, fs: &Fs) -> i64 {
        let Some(out) = fs else { return EMPTY };
        match self.0.iter().position(|o| o == out) {
            Some(i) => i as i64,
            None => {
                self.0.push(out.clone());
                (self.0.len() - 1) as i64
            }
        }
    }
}

impl Lowering<'_> {
    /// Lowers a RUN on `fs` with the config `before` it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &mut self,
        stage: &Stage,
        step: &Step,
        run: &RunInstruction,
        before: &ImageConfig,
        fact: &StepFacts,
        fs: Fs,
        origin: &OpOrigin,
    ) -> Result<Output, LlbError> {
        let args = fact.run_argv.clone().ok_or(LlbError::MissingFacts { stage: stage.index, step: step.number })?;
        let mut caps = vec!["exec.meta.base"];
        let mut inputs = Inputs::default();
        let root = pb::Mount { input: inputs.index(&fs), dest: "/".into(), output: 0, ..Default::default() };
        let mut mounts = vec![root];
        let mut env = before.config.env.clone();
        for (k, v) in &step.build_args {
            if before.env_var(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        let workdir = if before.config.working_dir.is_empty() { "/" } else { before.config.working_dir.as_str() };
        let mut secret_env = Vec::new();
        for spec in &run.mounts {
            let lowered = self.mount(stage, step, spec, workdir, &mut inputs, origin)?;
            caps.extend(lowered.caps);
            if let Some(m) = lowered.mount {
                mounts.push(m);
            }
            if let Some(e) = lowered.secret_env {
                secret_env.push(e);
            }
            if let Some(e) = lowered.env {
                env.push(e);
            }
        }
        // BuildKit's client sorts the mounts by destination; "/" comes first.
        mounts.sort_by(|a, b| a.dest.cmp(&b.dest));
        let network = match run.network.unwrap_or_default().or(self.request.network) {
            NetworkMode::Default => pb::NetMode::Unset,
            NetworkMode::Host => pb::NetMode::Host,
            NetworkMode::None => pb::NetMode::None,
        };
        if network != pb::NetMode::Unset {
            caps.push("exec.meta.network");
        }
        if run.security.as_deref() == Some("insecure") {
            caps.push("exec.meta.security");
        }
        let exec = pb::ExecOp {
            meta: Some(pb::Meta {
                args,
                env,
                cwd: workdir.to_string(),
                user: before.config.user.clone(),
                ..Default::default()
            }),
            mounts,
            network: network as i32,
            security: if run.security.as_deref() == Some("insecure") {
                pb::SecurityMode::Insecure as i32
            } else {
                pb::SecurityMode::Sandbox as i32
            },
            secretenv: secret_env,
            cdi_devices: Vec::new(),
        };
        let op = pb::Op {
            inputs: inputs.0.iter().map(Output::input).collect(),
            op: Some(pb::op::Op::Exec(exec)),
            platform: Some(self.platform.clone()),
            constraints: Some(pb::WorkerConstraints::default()),
        };
        let origin = OpOrigin { caps, ..origin.clone() };
        Ok(self.graph.add(op, &origin))
    }

    /// One `RUN --mount`.
    fn mount(
        &mut self,
        stage: &Stage,
        step: &Step,
        spec: &MountSpec,
        workdir: &str,
        inputs: &mut Inputs,
        origin: &OpOrigin,
    ) -> Result<LoweredMount, LlbError> {
        let target = spec.target.as_deref().filter(|t| !t.is_empty()).map(|t| resolve_workdir(workdir, t));
        let selector = spec.source.as_deref().map(|s| resolve_workdir("/", s)).unwrap_or_default();
        let source_fs = |this: &mut Self| match &spec.from {
            Some(from) => this.source_named(stage, from, origin),
            None => Some(this.context_source()),
        };
        let file = self.file();
        let unsupported = |reason: &str| LlbError::unsupported(&file, step, reason);
        let mut lowered = LoweredMount::default();
        let mut mount = pb::Mount { input: EMPTY, output: EMPTY, ..Default::default() };
        match spec.kind {
            MountType::Bind => {
                let fs = source_fs(self);
                mount.input = inputs.index(&fs);
                mount.selector = selector;
                mount.readonly = spec.readonly.unwrap_or(true);
                mount.dest = target.ok_or_else(|| unsupported("a bind mount needs target="))?;
                lowered.caps = vec!["exec.mount.bind", "exec.mount.selector"];
            }
            MountType::Cache => {
                let dest = target.ok_or_else(|| unsupported("a cache mount needs target="))?;
                if spec.from.is_some() {
                    let fs = source_fs(self);
                    mount.input = inputs.index(&fs);
                    mount.selector = selector;
                } else if spec.uid.is_some() || spec.gid.is_some() || spec.mode.is_some() {
                    // The frontend seeds such a cache with a directory owned and moded as asked.
                    let seed = self.cache_seed(spec, origin);
                    mount.input = inputs.index(&Some(seed));
                    mount.selector = "/cache".to_string();
                }
                let sharing = match spec.sharing.unwrap_or(CacheSharing::Shared) {
                    CacheSharing::Shared => pb::CacheSharingOpt::Shared,
                    CacheSharing::Private => pb::CacheSharingOpt::Private,
                    CacheSharing::Locked => pb::CacheSharingOpt::Locked,
                };
                mount.mount_type = pb::MountType::Cache as i32;
                mount.cache_opt = Some(pb::CacheOpt {
                    id: spec.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| dest.clone()),
                    sharing: sharing as i32,
                });
                mount.readonly = spec.readonly.unwrap_or(false);
                mount.dest = dest;
                lowered.caps = vec!["exec.mount.cache", "exec.mount.cache.sharing"];
            }
            MountType::Tmpfs => {
                mount.mount_type = pb::MountType::Tmpfs as i32;
                let size = match &spec.size {
                    Some(text) => parse_size(text)
                        .and_then(|n| i64::try_from(n).ok())
                        .ok_or_else(|| unsupported(&format!("tmpfs size {text:?}")))?,
                    None => 0,
                };
                mount.tmpfs_opt = Some(pb::TmpfsOpt { size });
                mount.dest = target.ok_or_else(|| unsupported("a tmpfs mount needs target="))?;
                lowered.caps = vec!["exec.mount.tmpfs"];
                if size > 0 {
                    lowered.caps.push("exec.mount.tmpfs.size");
                }
            }
            MountType::Secret => return Ok(secret_mount(spec, target, mount)),
            MountType::Ssh => {
                let id = spec.ssh_id();
                let dest = target.unwrap_or_else(|| "/run/buildkit/ssh_agent.0".to_string());
                mount.mount_type = pb::MountType::Ssh as i32;
                mount.ssh_opt = Some(pb::SshOpt {
                    id,
                    uid: spec.uid.unwrap_or(0),
                    gid: spec.gid.unwrap_or(0),
                    mode: spec.mode.unwrap_or(0o600),
                    optional: !spec.required.unwrap_or(false),
                });
                lowered.env = Some(format!("SSH_AUTH_SOCK={dest}"));
                mount.dest = dest;
                lowered.caps = vec!["exec.mount.ssh"];
            }
        }
        lowered.mount = Some(mount);
        Ok(lowered)
    }

    /// A scratch filesystem holding `/cache` with the cache mount's uid, gid and mode.
    fn cache_seed(&mut self, spec: &MountSpec, origin: &OpOrigin) -> Output {
        let owner = pb::ChownOpt {
            user: Some(pb::UserOpt { user: Some(pb::user_opt::User::ById(spec.uid.unwrap_or(0))) }),
            group: Some(pb::UserOpt { user: Some(pb::user_opt::User::ById(spec.gid.unwrap_or(0))) }),
        };
        let mkdir = pb::FileActionMkDir {
            path: "/cache".to_string(),
            mode: spec.mode.unwrap_or(0o755) as i32,
            make_parents: true,
            owner: Some(owner),
            timestamp: -1,
        };
        let action = pb::FileAction {
            input: EMPTY,
            secondary_input: EMPTY,
            output: 0,
            action: Some(pb::file_action::Action::Mkdir(mkdir)),
        };
        let op = pb::Op {
            op: Some(pb::op::Op::File(pb::FileOp { actions: vec![action] })),
            platform: Some(self.platform.clone()),
            constraints: Some(pb::WorkerConstraints::default()),
            ..Default::default()
        };
        self.graph.add(op, &OpOrigin { caps: vec!["file.base"], ..origin.clone() })
    }
}

/// What one `RUN --mount` adds to the exec op.
#[derive(Default)]
struct LoweredMount {
    mount: Option<pb::Mount>,
    secret_env: Option<pb::SecretEnv>,
    /// A variable the step gets (`SSH_AUTH_SOCK`).
    env: Option<String>,
    caps: Vec<&'static str>,
}

/// `--mount=type=secret`: a file under `/run/secrets/` (or `target=`), or with `env=` a
/// variable (and a file only if `target=` is given too).
fn secret_mount(spec: &MountSpec, target: Option<String>, mut mount: pb::Mount) -> LoweredMount {
    let id = spec
        .id
        .clone()
        .filter(|i| !i.is_empty())
        .or_else(|| target.as_deref().map(|t| t.rsplit('/').next().unwrap_or(t).to_string()))
        .unwrap_or_default();
    let optional = !spec.required.unwrap_or(false);
    let mut lowered = LoweredMount::default();
    if let Some(name) = &spec.env {
        lowered.secret_env = Some(pb::SecretEnv { id: id.clone(), name: name.clone(), optional });
        lowered.caps.push("exec.secretenv");
        if target.is_none() {
            return lowered;
        }
    }
    mount.mount_type = pb::MountType::Secret as i32;
    mount.dest = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
    mount.secret_opt = Some(pb::SecretOpt {
        id,
        uid: spec.uid.unwrap_or(0),
        gid: spec.gid.unwrap_or(0),
        mode: spec.mode.unwrap_or(0o400),
        optional,
    });
    mount.readonly = true;
    lowered.mount = Some(mount);
    lowered.caps.push("exec.mount.secret");
    lowered
}
