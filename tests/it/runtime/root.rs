//! Containers in root mode on a busybox rootfs: exit codes, environment, user lookup,
//! /proc /dev /sys, the /etc files that must not leak into the upper dir, zombie reaping,
//! network none, and commit of a scripted upper dir checked against the merged view.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rbuild::layer::diff::{changes, write_layer, ChangeKind, DiffOptions};
use rbuild::runtime::{
    Container, ContainerExit, ContainerSpec, NetworkMode, OutputStream, OverlayKind, Rootfs, RuntimeError,
    SetupFailure, StdioMode,
};

struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    lower: PathBuf,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        if !crate::fixture::require(crate::fixture::is_root(), "root (overlay mounts, namespaces)")
            || !crate::fixture::require(crate::fixture::busybox_path().is_some(), "busybox-static")
        {
            return None;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().to_path_buf();
        let lower = base.join("lower");
        crate::fixture::busybox_rootfs(&lower);
        Some(Fixture { _tmp: tmp, base, lower })
    }

    /// A fresh upper/work pair named `name`.
    fn overlay(&self, name: &str) -> Rootfs {
        let upper = self.base.join(name).join("upper");
        let work = self.base.join(name).join("work");
        std::fs::create_dir_all(&upper).expect("upper");
        std::fs::create_dir_all(&work).expect("work");
        Rootfs::Overlay { lower: vec![self.lower.clone()], upper, work }
    }

    fn upper(&self, name: &str) -> PathBuf {
        self.base.join(name).join("upper")
    }

    fn state(&self) -> PathBuf {
        self.base.join("state")
    }

    fn spec(&self, name: &str, script: &str) -> ContainerSpec {
        ContainerSpec::new(name, self.overlay(name), vec!["/bin/sh".into(), "-c".into(), script.into()], self.state())
    }
}

/// Runs `spec` collecting stdout and stderr lines.
fn run_lines(mut spec: ContainerSpec) -> (Result<ContainerExit, RuntimeError>, Vec<String>, Vec<String>) {
    let lines: Arc<Mutex<(Vec<String>, Vec<String>)>> = Arc::default();
    let sink = lines.clone();
    spec.stdio = StdioMode::Lines(Box::new(move |stream, line, _| {
        let text = String::from_utf8_lossy(line).into_owned();
        let mut l = sink.lock().expect("lock");
        match stream {
            OutputStream::Stdout => l.0.push(text),
            OutputStream::Stderr => l.1.push(text),
        }
    }));
    let result = Container::new(spec).run();
    let l = lines.lock().expect("lock");
    (result, l.0.clone(), l.1.clone())
}

fn assert_state_clean(state: &Path) {
    let left: Vec<_> =
        std::fs::read_dir(state).map(|d| d.map(|e| e.expect("entry").file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "state dir not cleaned: {left:?}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mountinfo.contains(state.to_str().expect("utf8")), "mount left under {}", state.display());
}

#[test]
fn exit_codes_are_propagated() {
    let Some(fx) = Fixture::new() else { return };
    let (r, _, _) = run_lines(fx.spec("exit3", "exit 3"));
    let exit = r.expect("run");
    assert_eq!(exit.code, 3);
    assert_eq!(exit.overlay, OverlayKind::Kernel);
    assert!(!exit.user_namespace);
    // The workload is PID 1, which its own namespace cannot kill: a child killed by SIGKILL
    // gives the shell's 137.
    let (r, _, _) = run_lines(fx.spec("killed", "sh -c 'kill -9 $$'; exit $?"));
    assert_eq!(r.expect("run").code, 137);
    assert_state_clean(&fx.state());
}

#[test]
fn output_is_streamed_line_by_line() {
    let Some(fx) = Fixture::new() else { return };
    let (r, out, err) = run_lines(fx.spec("lines", "echo one; echo two >&2; printf 'three\\nfour'"));
    assert_eq!(r.expect("run").code, 0);
    assert_eq!(out, ["one", "three", "four"]);
    assert_eq!(err, ["two"]);
}

#[test]
fn environment_working_dir_and_hostname() {
    let Some(fx) = Fixture::new() else { return };
    let mut spec = fx.spec("envcheck", "echo $PATH; echo $FOO; pwd; hostname; cat /etc/hostname; echo $HOME");
    spec.env = vec!["FOO=bar baz".into()];
    spec.working_dir = Some("/work/dir".into());
    spec.hostname = "buildbox".into();
    let (r, out, err) = run_lines(spec);
    assert_eq!(r.expect("run").code, 0, "{err:?}");
    assert_eq!(
        out,
        [
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "bar baz",
            "/work/dir",
            "buildbox",
            "buildbox",
            "/root"
        ]
    );
    // The created working dir is a change of the container; /etc/hostname is not.
    let upper = fx.upper("envcheck");
    assert!(upper.join("work/dir").is_dir());
    assert!(!upper.join("etc").exists(), "bind-mounted /etc files leaked into the upper dir");
}

#[test]
fn users_are_looked_up_in_the_rootfs() {
    let Some(fx) = Fixture::new() else { return };
    for (user, expect) in [
        ("app", "1000 1000 /home/app"),
        ("1000:10", "1000 10 /home/app"),
        ("app:wheel", "1000 10 /home/app"),
        ("nobody", "65534 65534 /nonexistent"),
        ("4321", "4321 0 /"),
    ] {
        let name = format!("user-{}", user.replace(':', "-"));
        let mut spec = fx.spec(&name, "echo $(id -u) $(id -g) $HOME");
        spec.user = Some(user.into());
        let (r, out, err) = run_lines(spec);
        assert_eq!(r.expect("run").code, 0, "{user}: {err:?}");
        assert_eq!(out, [expect], "{user}");
    }
    let mut spec = fx.spec("ghost", "true");
    spec.user = Some("ghost".into());
    let (r, _, _) = run_lines(spec);
    match r {
        Err(RuntimeError::Setup { failure: SetupFailure::User { user, .. }, .. }) => assert_eq!(user, "ghost"),
        other => panic!("expected an unknown-user error, got {other:?}"),
    }
    assert_state_clean(&fx.state());
}

#[test]
fn a_missing_command_is_an_exec_error() {
    let Some(fx) = Fixture::new() else { return };
    let mut spec = fx.spec("nocmd", "");
    spec.args = vec!["no-such-command".into()];
    let (r, _, _) = run_lines(spec);
    let err = r.unwrap_err();
    assert!(err.to_string().contains("executable file not found"), "{err}");
}

#[test]
fn proc_dev_and_sys_are_set_up() {
    let Some(fx) = Fixture::new() else { return };
    let script = "echo pid=$$; ls /dev | tr '\\n' ' '; echo; \
                  head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; \
                  touch /sys/x 2>/dev/null || echo sys-ro; \
                  test -d /dev/pts && test -d /dev/shm && echo pts-shm; \
                  cat /proc/1/cmdline >/dev/null && echo proc-ok";
    let (r, out, err) = run_lines(fx.spec("devs", script));
    assert_eq!(r.expect("run").code, 0, "{err:?}");
    assert_eq!(out[0], "pid=1", "the workload is the container's PID 1, as in Docker");
    for dev in ["null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm"] {
        assert!(out[1].split(' ').any(|d| d == dev), "/dev/{dev} missing: {}", out[1]);
    }
    assert_eq!(&out[2..], ["4", "null-ok", "sys-ro", "pts-shm", "proc-ok"]);
}

#[test]
fn capabilities_and_kernel_interfaces_are_restricted_unless_privileged() {
    let Some(fx) = Fixture::new() else { return };
    let script = "grep CapBnd /proc/self/status; \
                  echo x > /proc/sys/kernel/domainname 2>/dev/null && echo sysctl-written || echo sysctl-ro; \
                  head -c 1 /proc/timer_list | wc -c; ls /sys/firmware | wc -l; echo end";
    let (r, out, err) = run_lines(fx.spec("caps", script));
    assert_eq!(r.expect("run").code, 0, "{err:?}");
    assert_eq!(out, ["CapBnd:\t00000000a80425fb", "sysctl-ro", "0", "0", "end"], "{err:?}");
    let mut spec = fx.spec("privileged", "grep CapBnd /proc/self/status; head -c 1 /proc/timer_list | wc -c");
    spec.privileged = true;
    let (r, out, err) = run_lines(spec);
    assert_eq!(r.expect("run").code, 0, "{err:?}");
    assert_ne!(out[0], "CapBnd:\t00000000a80425fb");
    assert_eq!(out[1], "1");
}

#[test]
fn network_none_has_only_loopback() {
    let Some(fx) = Fixture::new() else { return };
    let mut spec = fx.spec("nonet", "ls /sys/class/net; cat /sys/class/net/lo/operstate; cat /etc/resolv.conf | wc -c");
    spec.network = NetworkMode::None;
    let (r, out, err) = run_lines(spec);
    assert_eq!(r.expect("run").code, 0, "{err:?}");
    assert_eq!(out[0], "lo");
    assert_eq!(out[2], "0");
}

#[test]
fn zombies_are_reaped_by_the_container_init() {
    let Some(fx) = Fixture::new() else { return };
    // Each `sh -c 'sleep 0.2 &'` exits at once, orphaning its sleep to PID 1.
    let script = "for i in 1 2 3 4 5; do sh -c 'sleep 0.2 &'; done; sleep 1; \
                  for f in /proc/[0-9]*/stat; do cut -d' ' -f3 $f; done | tr -d '\\n'; echo; \
                  ls -d /proc/[0-9]* | wc -l";
    let (r, out, err) = run_lines(fx.spec("zombies", script));
    assert_eq!(r.expect("run").code, 0, "{err:?}");
    assert!(!out[0].contains('Z'), "zombie states: {}", out[0]);
}

#[test]
fn a_plain_rootfs_dir_runs_too() {
    let Some(fx) = Fixture::new() else { return };
    let dir = fx.base.join("plain");
    crate::fixture::busybox_rootfs(&dir);
    let spec = ContainerSpec::new(
        "plain",
        Rootfs::Dir(dir.clone()),
        vec!["sh".into(), "-c".into(), "echo hi > /made-here; exit 5".into()],
        fx.state(),
    );
    let (r, _, err) = run_lines(spec);
    let exit = r.expect("run");
    assert_eq!((exit.code, exit.overlay), (5, OverlayKind::PlainDir), "{err:?}");
    assert!(dir.join("made-here").exists());
}

#[test]
fn committed_layer_applied_to_the_parent_equals_the_merged_view() {
    let Some(fx) = Fixture::new() else { return };
    // Lower-layer material for the script to change.
    std::fs::create_dir_all(fx.lower.join("srv/old/deep")).expect("mkdir");
    std::fs::write(fx.lower.join("srv/old/deep/f"), "old").expect("write");
    std::fs::write(fx.lower.join("srv/old/g"), "old").expect("write");
    std::fs::write(fx.lower.join("srv/modify"), "v1").expect("write");
    std::fs::write(fx.lower.join("srv/delete"), "bye").expect("write");
    std::fs::write(fx.lower.join("srv/chmod"), "same").expect("write");
    let big_mb = std::env::var("RBUILD_TEST_BIG_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(300u32);
    let script = format!(
        "set -e
         mkdir -p /srv/new/sub && echo added > /srv/new/sub/file
         echo v2 > /srv/modify
         rm /srv/delete
         rm -rf /srv/old && mkdir /srv/old && echo again > /srv/old/g
         chmod 4755 /srv/chmod && chown 1000:10 /srv/chmod
         echo linked > /srv/new/a && ln /srv/new/a /srv/new/b
         ln -s ../modify /srv/new/sym
         dd if=/dev/urandom of=/srv/big bs=1M count={big_mb} 2>/dev/null
         echo 10.0.0.1 extra >> /etc/hosts"
    );
    let (r, _, err) = run_lines(fx.spec("commit", &script));
    assert_eq!(r.expect("run").code, 0, "{err:?}");
    let upper = fx.upper("commit");
    assert!(!upper.join("etc/hosts").exists(), "/etc/hosts leaked into the upper dir");

    let list = changes(&upper, std::slice::from_ref(&fx.lower)).expect("changes");
    let kind_of = |p: &str| list.iter().find(|c| c.path == Path::new(p)).map(|c| c.kind);
    assert_eq!(kind_of("/srv/delete"), Some(ChangeKind::Deleted));
    assert_eq!(kind_of("/srv/old/deep"), Some(ChangeKind::Deleted));
    assert_eq!(kind_of("/srv/new"), Some(ChangeKind::Added));
    assert_eq!(kind_of("/srv/modify"), Some(ChangeKind::Changed));

    let blobs = fx.base.join("blobs");
    std::fs::create_dir(&blobs).expect("mkdir");
    let layer = write_layer(&upper, &blobs, &DiffOptions::default()).expect("commit");
    assert!(layer.uncompressed_size > u64::from(big_mb) << 20);
    let entries = crate::fixture::layer_entries(&layer.path, layer.media_type);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"srv/.wh.delete"), "{names:?}");
    assert!(names.contains(&"srv/old/.wh..wh..opq"), "{names:?}");

    // The kernel's merged view of lower + upper, read-only, is what the container saw.
    let merged = fx.base.join("merged");
    std::fs::create_dir(&merged).expect("mkdir");
    let opts = format!("lowerdir={}:{}", upper.display(), fx.lower.display());
    nix::mount::mount(Some("overlay"), &merged, Some("overlay"), nix::mount::MsFlags::MS_RDONLY, Some(opts.as_str()))
        .expect("mount merged view");
    let applied = fx.base.join("applied");
    let status = std::process::Command::new("cp").arg("-a").arg(&fx.lower).arg(&applied).status().expect("cp");
    assert!(status.success());
    crate::fixture::apply_layer(&layer.path, layer.media_type, &applied);
    let expected = crate::fixture::snapshot(&merged, true);
    let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
    crate::fixture::assert_same_tree(&expected, &crate::fixture::snapshot(&applied, true));
}

#[test]
fn an_upper_dir_serves_as_the_next_lower_dir_as_it_is() {
    let Some(fx) = Fixture::new() else { return };
    let (r, _, err) =
        run_lines(fx.spec("step1", "rm /etc/group && rm -rf /home && mkdir /home && echo one > /home/new"));
    assert_eq!(r.expect("run").code, 0, "{err:?}");
    // The engine renames the committed upper dir into the layer store; here it is used in place.
    let upper = fx.base.join("step2/upper");
    let work = fx.base.join("step2/work");
    std::fs::create_dir_all(&upper).expect("upper");
    std::fs::create_dir_all(&work).expect("work");
    let spec = ContainerSpec::new(
        "step2",
        Rootfs::Overlay { lower: vec![fx.upper("step1"), fx.lower.clone()], upper, work },
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "test -e /etc/group && echo group-back; ls /home | tr '\\n' ' '; echo".into(),
        ],
        fx.state(),
    );
    let (r, out, err) = run_lines(spec);
    assert_eq!(r.expect("run").code, 0, "{err:?}");
    assert_eq!(out, ["new "]);
}

#[test]
fn a_deep_stack_of_long_layer_paths_mounts() {
    let Some(fx) = Fixture::new() else { return };
    // 80 layers of ~110-byte paths: the option string is far past mount(2)'s page.
    let mut lower = Vec::new();
    for i in 0..80 {
        let dir = fx.base.join("layers").join(format!("{i:0>64}-{}", "x".repeat(20)));
        std::fs::create_dir_all(dir.join("layer-files")).expect("mkdir");
        std::fs::write(dir.join(format!("layer-files/f{i}")), "x").expect("write");
        lower.push(dir);
    }
    lower.reverse();
    lower.push(fx.lower.clone());
    let upper = fx.base.join("deep/upper");
    let work = fx.base.join("deep/work");
    std::fs::create_dir_all(&upper).expect("upper");
    std::fs::create_dir_all(&work).expect("work");
    let spec = ContainerSpec::new(
        "deep",
        Rootfs::Overlay { lower, upper, work },
        vec!["/bin/sh".into(), "-c".into(), "ls /layer-files | wc -l".into()],
        fx.state(),
    );
    let (r, out, err) = run_lines(spec);
    let exit = r.expect("run");
    assert_eq!((exit.code, exit.overlay), (0, OverlayKind::Kernel), "{err:?}");
    assert_eq!(out, ["80"]);
}

#[test]
fn extra_mounts_are_visible_inside_and_leave_nothing_in_the_upper_dir() {
    let Some(fx) = Fixture::new() else { return };
    use rbuild::runtime::{Mount, MountKind};
    let src = fx.base.join("bind-src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("x"), "from the host\n").expect("write");
    let rw = fx.base.join("rw-src");
    std::fs::create_dir_all(&rw).expect("mkdir");
    let script = "cat /mnt/ro/x; touch /mnt/ro/y 2>/dev/null && echo ro-writable; echo kept > /mnt/rw/out; \
                  echo scratch > /scratch/f; grep -c ' /scratch tmpfs' /proc/mounts; \
                  cat /run/secrets/tok; stat -c %a /run/secrets/tok";
    let mut spec = fx.spec("mounts", script);
    spec.mounts = vec![
        Mount { target: "/mnt/ro".into(), kind: MountKind::Bind { source: src.clone(), readonly: true } },
        Mount { target: "/mnt/rw".into(), kind: MountKind::Bind { source: rw.clone(), readonly: false } },
        Mount { target: "/scratch".into(), kind: MountKind::Tmpfs { size: Some(1 << 20) } },
        Mount {
            target: "/run/secrets/tok".into(),
            kind: MountKind::File { contents: b"s3cr3t\n".to_vec(), mode: 0o400, uid: 0, gid: 0 },
        },
    ];
    let (r, out, err) = run_lines(spec);
    assert_eq!(r.expect("run").code, 0, "{err:?}");
    assert_eq!(out, ["from the host", "1", "s3cr3t", "400"], "{err:?}");
    assert_eq!(std::fs::read_to_string(rw.join("out")).expect("rw write reached the source"), "kept\n");
    let upper: Vec<_> = std::fs::read_dir(fx.upper("mounts")).expect("upper").map(|e| e.expect("e").path()).collect();
    assert!(upper.is_empty(), "mount targets leaked into the upper dir: {upper:?}");
    assert!(!src.join("y").exists());
    assert_state_clean(&fx.state());
}

#[test]
fn a_mount_target_below_a_file_or_of_the_wrong_kind_is_refused() {
    let Some(fx) = Fixture::new() else { return };
    use rbuild::runtime::{Mount, MountKind};
    for target in ["/etc/passwd/x", "/etc"] {
        let mut spec = fx.spec("badtarget", "true");
        let file = MountKind::File { contents: b"x".to_vec(), mode: 0o400, uid: 0, gid: 0 };
        spec.mounts = vec![Mount { target: target.into(), kind: file }];
        let err = Container::new(spec).run().expect_err("refused");
        assert!(matches!(err, RuntimeError::InvalidSpec { .. }), "{target}: {err}");
        assert!(err.to_string().contains(target), "{err}");
    }
    assert_state_clean(&fx.state());
}
