//! The chroot-snapshot mode's process runner: a [`ContainerSpec`] whose root is a plain
//! directory ([`Rootfs::Dir`]) runs without any namespace or mount, as Kaniko and
//! `buildah --isolation chroot` do inside an unprivileged CI container.
//!
//! Decision: **proot first, chroot(2) only without it.** Inside `docker run` with the default
//! seccomp profile and no added capability there is no mount, no unshare and no user
//! namespace; proot needs only ptrace, so it works there for root and for uid 1000 alike, and
//! it gives the step `/proc`, `/dev` and `/sys` (bound from the host, never written to the
//! rootfs), the extra mounts as binds and the step's user as the ids the step sees (`-i`).
//! chroot(2) needs CAP_SYS_CHROOT (root in Docker has it, uid 1000 has not) and can mount
//! nothing, so a step there has no `/proc` or `/dev`; it does switch to the step's user for
//! real (setgroups/setgid/setuid). Both leave the network as the host's (no network
//! namespace is possible) and have no seccomp filter of their own beyond the one the outer
//! container has. Ownership: under proot the ids are faked (`-0`, `-i`), also for root, so
//! what the step creates belongs on disk to whoever runs rbuild and the layer gives it the
//! step's user (see `layer::snapshot`): a `chown` inside RUN is lost.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::runtime::container::ContainerExit;
use crate::runtime::error::{RuntimeError, SetupFailure};
use crate::runtime::isolation::{chroot_executor_here, ChrootExecutor};
use crate::runtime::mounts::OverlayKind;
use crate::runtime::spec::{ContainerSpec, LineSplitter, MountKind, OutputStream, Rootfs, StdioMode, DEFAULT_PATH};
use crate::runtime::user::{resolve_user, ExecUser};

/// Host paths bound into every proot step at the same place.
const KERNEL_DIRS: [&str; 3] = ["/proc", "/dev", "/sys"];
/// Host files a step sees as Docker's bind-mounted ones (the host network's names).
const HOST_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

/// The paths (relative to the root) that the runner puts into the step from outside, so a
/// comparison of the rootfs leaves them out as the namespaces mode's upper dir does: the
/// kernel dirs, `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` and every extra mount target.
pub fn bound_paths(spec: &ContainerSpec) -> Vec<String> {
    let mut out: Vec<String> = KERNEL_DIRS.iter().map(|d| d.trim_start_matches('/').to_string()).collect();
    out.extend(["etc/hosts", "etc/resolv.conf", "etc/hostname"].map(String::from));
    out.extend(spec.mounts.iter().map(|m| m.target.trim_matches('/').to_string()));
    out
}

/// Placeholders [`make_bind_targets`] made in a rootfs: the top-most new entry of each, and
/// the directory it went in with that directory's times before.
#[derive(Debug, Default)]
pub struct BindTargets {
    made: Vec<(PathBuf, PathBuf, std::fs::FileTimes)>,
}

impl BindTargets {
    /// Removes the placeholders, newest first, and gives their directories their times back,
    /// so the rootfs holds what the image holds again (for a next step run in it).
    pub fn remove(self) -> std::io::Result<()> {
        for (made, dir, times) in self.made.into_iter().rev() {
            match made.symlink_metadata()?.is_dir() {
                true => std::fs::remove_dir_all(&made)?,
                false => std::fs::remove_file(&made)?,
            }
            std::fs::File::open(&dir)?.set_times(times)?;
        }
        Ok(())
    }
}

/// Makes the targets proot binds host paths onto that the rootfs lacks (an empty file or
/// directory, parents included), keeping the times of the directory they go in: made before
/// the rootfs is snapshotted, they stay out of the step's changes (the namespaces mode makes
/// them in its init layer). A target under a symlink is left to proot, which resolves it
/// inside the rootfs (following it here could reach the host).
pub fn make_bind_targets(spec: &ContainerSpec) -> std::io::Result<BindTargets> {
    let mut made = BindTargets::default();
    let Rootfs::Dir(root) = &spec.rootfs else { return Ok(made) };
    let host_files = HOST_FILES.iter().filter(|p| Path::new(p).exists()).map(|p| (p.to_string(), false));
    let mounts = spec.mounts.iter().map(|m| (m.target.clone(), m.kind.target_is_dir()));
    for (target, is_dir) in host_files.chain(mounts) {
        let comps: Vec<&str> = target.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        if comps.is_empty() || comps.contains(&"..") {
            continue;
        }
        let mut dir = root.clone();
        for (i, comp) in comps.iter().enumerate() {
            let next = dir.join(comp);
            match next.symlink_metadata() {
                Ok(meta) if meta.is_dir() => dir = next,
                Ok(_) => break,
                Err(_) => {
                    let meta = dir.symlink_metadata()?;
                    let times = std::fs::FileTimes::new().set_modified(meta.modified()?).set_accessed(meta.accessed()?);
                    let mut path = dir.clone();
                    for (j, comp) in comps.iter().enumerate().skip(i) {
                        path.push(comp);
                        match j + 1 == comps.len() && !is_dir {
                            true => drop(std::fs::File::create(&path)?),
                            false => std::fs::create_dir(&path)?,
                        }
                    }
                    std::fs::File::open(&dir)?.set_times(times)?;
                    made.made.push((next, dir, times));
                    break;
                }
            }
        }
    }
    Ok(made)
}

/// Runs `spec` (its root a [`Rootfs::Dir`]) to its end.
pub(crate) fn run(mut spec: ContainerSpec) -> Result<ContainerExit, RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidSpec { id: spec.id.clone(), reason };
    let Rootfs::Dir(root) = spec.rootfs.clone() else {
        return Err(invalid("the chroot-snapshot mode runs on a plain directory, not an overlay".into()));
    };
    let executor = chroot_executor_here().map_err(|e| invalid(e.to_string()))?;
    let read = |name: &str| std::fs::read_to_string(root.join("etc").join(name)).unwrap_or_default();
    let user =
        resolve_user(spec.user.as_deref(), &read("passwd"), &read("group")).map_err(|e| RuntimeError::Setup {
            id: spec.id.clone(),
            failure: SetupFailure::User { user: spec.user.clone().unwrap_or_default(), reason: e.to_string() },
        })?;
    let env = step_env(&spec, &user);
    let cwd = spec.working_dir.clone().unwrap_or_else(|| "/".into());
    let scratch = tempfile::Builder::new()
        .prefix(&format!("chroot-{}-", spec.id.chars().take(12).collect::<String>()))
        .tempdir_in(&spec.state_dir)
        .map_err(RuntimeError::io("creating a state dir in", &spec.state_dir))?;
    let mut command = match &executor {
        ChrootExecutor::Proot(proot) => proot_command(proot, &spec, &root, &cwd, &user, scratch.path())?,
        ChrootExecutor::Chroot => chroot_command(&spec, &root, &cwd, &user, &env)?,
    };
    command.env_clear().envs(env.iter().filter_map(|e| e.split_once('=')));
    if let ChrootExecutor::Proot(_) = executor {
        // proot's own scratch files (its glue for bind targets) stay out of the rootfs.
        command.env("PROOT_TMP_DIR", scratch.path());
    }
    let stdio = std::mem::replace(&mut spec.stdio, StdioMode::Null);
    let status = spawn_and_wait(&mut command, stdio, &spec.id)?;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ContainerExit { code, overlay: OverlayKind::PlainDir, user_namespace: false })
}

/// The step's environment with Docker's defaults (`PATH`, `HOSTNAME`, `HOME`).
fn step_env(spec: &ContainerSpec, user: &ExecUser) -> Vec<String> {
    let mut env = spec.env.clone();
    let has = |env: &[String], key: &str| env.iter().any(|e| e.starts_with(&format!("{key}=")));
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={}", spec.hostname));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    env
}

/// `proot -r ROOT -w CWD -b /proc -b /dev -b /sys [-b SRC:TARGET]... (-0 | -i UID:GID) ARGS`.
fn proot_command(
    proot: &Path,
    spec: &ContainerSpec,
    root: &Path,
    cwd: &str,
    user: &ExecUser,
    scratch: &Path,
) -> Result<Command, RuntimeError> {
    let mut command = Command::new(proot);
    command.arg("-r").arg(root).arg("-w").arg(cwd);
    for dir in KERNEL_DIRS.iter().filter(|p| Path::new(p).exists()) {
        command.arg("-b").arg(dir);
    }
    // Copies, as Docker gives each container its own: a step that writes /etc/hosts must
    // not change the host's.
    for file in HOST_FILES.iter().filter(|p| Path::new(p).exists()) {
        let copy = scratch.join(Path::new(file).file_name().unwrap_or_default());
        std::fs::copy(file, &copy).map_err(RuntimeError::io("copying", *file))?;
        let mut bind = copy.into_os_string();
        bind.push(":");
        bind.push(file);
        command.arg("-b").arg(bind);
    }
    for (n, mount) in spec.mounts.iter().enumerate() {
        let source = match &mount.kind {
            MountKind::Bind { source, .. } => source.clone(),
            MountKind::Tmpfs { .. } => {
                let dir = scratch.join(format!("tmpfs-{n}"));
                std::fs::create_dir(&dir).map_err(RuntimeError::io("creating", &dir))?;
                dir
            }
            MountKind::File { contents, mode, .. } => {
                let file = scratch.join(format!("file-{n}"));
                std::fs::write(&file, contents).map_err(RuntimeError::io("writing", &file))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                    .map_err(RuntimeError::io("chmod", &file))?;
                file
            }
        };
        let mut bind = source.into_os_string();
        bind.push(":");
        bind.push(&mount.target);
        command.arg("-b").arg(bind);
    }
    // Even as real root the ids are faked (-0 too): a step that drops privileges (apt-get's
    // `_apt` download methods) would otherwise exec host paths inside the store, which is
    // closed to other users. The cost: a chown in RUN is dropped (documented).
    match (user.uid, user.gid) {
        (0, 0) => command.arg("-0"),
        (uid, gid) => command.arg("-i").arg(format!("{uid}:{gid}")),
    };
    command.args(&spec.args);
    // proot fakes the uid and gid only: the step sees proot's supplementary groups. As root,
    // make them the step user's (an unprivileged rbuild cannot: the step sees its own).
    if nix::unistd::geteuid().is_root() {
        let groups = user.groups.clone();
        // SAFETY: the closure runs in the forked child before exec and only calls setgroups(2)
        // on a list made before the fork.
        unsafe {
            command.pre_exec(move || match libc::setgroups(groups.len(), groups.as_ptr()) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
    }
    Ok(command)
}

/// chroot(2) into `root` in the child, then the step's groups, gid and uid, then exec.
fn chroot_command(
    spec: &ContainerSpec,
    root: &Path,
    cwd: &str,
    user: &ExecUser,
    env: &[String],
) -> Result<Command, RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidSpec { id: spec.id.clone(), reason };
    if !spec.mounts.is_empty() {
        return Err(invalid(
            "RUN --mount needs proot in the chroot-snapshot mode (chroot(2) cannot mount); install proot".into(),
        ));
    }
    let program = program_in_root(root, &spec.args[0], env)
        .ok_or_else(|| invalid(format!("exec {:?}: no such file in the image's PATH", spec.args[0])))?;
    let nul = |_| invalid("a path contains a NUL byte".into());
    let c_root = CString::new(root.as_os_str().as_bytes()).map_err(nul)?;
    let c_cwd = CString::new(cwd.as_bytes()).map_err(nul)?;
    let (uid, gid, groups) = (user.uid, user.gid, user.groups.clone());
    let mut command = Command::new(program);
    command.args(&spec.args[1..]);
    // SAFETY: the closure runs in the forked child before exec and only makes raw syscalls
    // (no allocation: the strings and the group list were made before the fork).
    unsafe {
        command.pre_exec(move || {
            let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
            check(libc::chroot(c_root.as_ptr()))?;
            check(libc::chdir(c_cwd.as_ptr()))?;
            check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))
        });
    }
    Ok(command)
}

/// The path inside the root of `name` looked up in the step's `PATH` (as is when it has a `/`).
fn program_in_root(root: &Path, name: &str, env: &[String]) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    path.split(':').filter(|d| d.starts_with('/')).map(|d| Path::new(d).join(name)).find(|inside| {
        let host = root.join(inside.strip_prefix("/").unwrap_or(inside));
        host.symlink_metadata().is_ok()
    })
}

/// Starts `command` with `stdio` wired and waits for it.
fn spawn_and_wait(command: &mut Command, stdio: StdioMode, id: &str) -> Result<std::process::ExitStatus, RuntimeError> {
    let spawn_err = |source| RuntimeError::Io { op: "starting the step", path: PathBuf::from(id), source };
    match stdio {
        StdioMode::Lines(sink) => {
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = command.spawn().map_err(spawn_err)?;
            let sink = Arc::new(Mutex::new(sink));
            let readers: Vec<_> = [
                child.stdout.take().map(|r| (Box::new(r) as Box<dyn Read + Send>, OutputStream::Stdout)),
                child.stderr.take().map(|r| (Box::new(r) as Box<dyn Read + Send>, OutputStream::Stderr)),
            ]
            .into_iter()
            .flatten()
            .map(|(reader, stream)| {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || {
                    let mut reader = reader;
                    let mut splitter = LineSplitter::new(stream);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match reader.read(&mut buf) {
                            Ok(n) => n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(_) => 0,
                        };
                        let Ok(mut sink) = sink.lock() else { return };
                        if n == 0 {
                            splitter.finish(&mut sink);
                            return;
                        }
                        splitter.push(&buf[..n], &mut sink);
                    }
                })
            })
            .collect();
            let status = child.wait().map_err(spawn_err)?;
            for reader in readers {
                let _ = reader.join();
            }
            Ok(status)
        }
        StdioMode::Null => {
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().map_err(spawn_err)
        }
        // No pseudo-terminal without mounts: the terminal is passed on as it is.
        StdioMode::Inherit | StdioMode::Pty => command.status().map_err(spawn_err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::Mount;

    #[test]
    fn bind_targets_are_made_and_removed_leaving_the_directory_times() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("rootfs");
        std::fs::create_dir_all(root.join("var")).expect("mkdir");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::open(root.join("var")).expect("open").set_modified(old).expect("set mtime");
        let mut spec = ContainerSpec::new("c", Rootfs::Dir(root.clone()), vec!["true".into()], t.path().into());
        spec.mounts.push(Mount { target: "/var/cache/x".into(), kind: MountKind::Tmpfs { size: None } });
        let made = make_bind_targets(&spec).expect("make");
        assert!(root.join("var/cache/x").is_dir(), "the mount target exists for proot to bind onto");
        let mtime = |p: &Path| p.symlink_metadata().expect("stat").modified().expect("mtime");
        assert_eq!(mtime(&root.join("var")), old, "its directory keeps its time");
        made.remove().expect("remove");
        assert!(!root.join("var/cache").exists(), "the placeholders are gone");
        assert_eq!(mtime(&root.join("var")), old);
        assert_eq!(bound_paths(&spec).last().map(String::as_str), Some("var/cache/x"));
    }
}
