//! Docker's default policy for `RUN` and `rbuild run`, through the real binary, as root and
//! rootless (an unprivileged user made here, with a subordinate id range): the seccomp filter
//! is on (`Seccomp: 2`, `unshare -U` refused), a block device made with mknod cannot be
//! opened, PID 1 is the step's own command and no `--build-arg` value shows in any
//! `/proc/*/cmdline` the step can see; `run --security-opt seccomp=unconfined` turns the
//! filter off and `seccomp=PROFILE.json` applies a profile, a bad one refused with its line;
//! the workload ignores no signal (an ignored SIGPIPE would survive execve).
//! Needs root, busybox-static, and for the rootless case setpriv and newuidmap (uidmap).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fixture::{rbuild, rbuild_ok, Fixture};

/// What the probe prints, one line each.
const PROBE: &str = "grep -E '^(Seccomp|SigIgn):' /proc/self/status; \
    echo \"pid1=$(tr '\\0' ' ' < /proc/1/cmdline)\"; \
    echo \"all=$(cat /proc/[0-9]*/cmdline | tr '\\0' ' ')\"; \
    mknod /tmp/blk b 7 0 2>/dev/null; \
    if [ -b /tmp/blk ] && { (: < /tmp/blk) || (echo x > /tmp/blk); } 2>/dev/null; \
    then echo device-usable; else echo device-refused; fi; \
    unshare -U true 2>/dev/null && echo unshare-allowed || echo unshare-refused";

const DOCKERFILE: &str = "FROM busybox\nARG DECLARED\n";

/// Checks the probe's lines in `out`; `pid1` is the command PID 1 must show.
fn check_probe(out: &str, pid1: &str) {
    let line = |prefix: &str| {
        out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} line in:\n{out}")).to_string()
    };
    assert_eq!(line("Seccomp:"), "Seccomp:\t2");
    // No ignored signal leaks in from rbuild (it ignores SIGPIPE, as every Rust program does).
    assert_eq!(line("SigIgn:"), "SigIgn:\t0000000000000000");
    assert_eq!(line("pid1="), format!("pid1={pid1} "));
    let all = line("all=");
    assert!(all.contains(pid1), "{all}");
    assert!(!all.contains("rbuild") && !all.contains("s3cr3t"), "cmdlines leak the host's: {all}");
    assert!(out.lines().any(|l| l == "device-refused"), "{out}");
    assert!(out.lines().any(|l| l == "unshare-refused"), "{out}");
}

fn build_args(ctx: &Path) -> Vec<String> {
    [
        "build",
        "--no-cache",
        "--build-arg",
        "DECLARED=s3cr3t-declared",
        "--build-arg",
        "UNDECLARED=s3cr3t-undeclared",
        ctx.to_str().expect("utf-8 path"),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn run_steps_get_seccomp_no_devices_and_their_own_pid_1() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context("probe", &format!("{DOCKERFILE}RUN {PROBE}\n"), &[]);
    let args = build_args(&ctx);
    let out = rbuild_ok(&fx.root, &args.iter().map(String::as_str).collect::<Vec<_>>());
    check_probe(&out, &format!("/bin/sh -c {PROBE}"));
}

#[test]
fn run_gets_the_default_policy_and_seccomp_can_be_turned_off() {
    let Some(fx) = Fixture::new() else { return };
    let out = rbuild_ok(&fx.root, &["run", "--rm", "busybox", "sh", "-c", PROBE]);
    check_probe(&out, &format!("sh -c {PROBE}"));

    let out = rbuild_ok(
        &fx.root,
        &["run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "grep", "Seccomp:", "/proc/self/status"],
    );
    assert_eq!(out, "Seccomp:\t0\n");
}

#[test]
fn run_applies_a_seccomp_profile_file_and_refuses_a_bad_one() {
    let Some(fx) = Fixture::new() else { return };
    let profile = fx.dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .expect("write");
    let opt = format!("seccomp={}", profile.display());
    let out = rbuild(&fx.root, &["run", "--rm", "--security-opt", &opt, "busybox", "sh", "-c", "mkdir /x; echo rc=$?"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "rc=1\n", "{stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");

    let bad = fx.dir.path().join("bad.json");
    std::fs::write(&bad, "{\"defaultAction\": \"SCMP_ACT_ERRNO\",\n \"syscalls\": [}\n").expect("write");
    let opt = format!("seccomp={}", bad.display());
    let out = rbuild(&fx.root, &["run", "--rm", "--security-opt", &opt, "busybox", "true"]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("seccomp profile {}:2:", bad.display())), "{stderr}");
    assert_eq!(rbuild_ok(&fx.root, &["ps", "-aq"]), "", "a refused profile must not leave a container");

    let out = rbuild(&fx.root, &["run", "--rm", "--security-opt", "apparmor=x", "busybox", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("apparmor=x"));
}

/// An unprivileged user with its own store holding busybox, running the real binary.
struct Rootless {
    dir: tempfile::TempDir,
    user: &'static str,
}

impl Rootless {
    fn new() -> Option<Rootless> {
        if !crate::fixture::require(crate::fixture::is_root(), "root to create the unprivileged test user")
            || !crate::fixture::require(Path::new("/usr/bin/setpriv").exists(), "setpriv (util-linux)")
            || !crate::fixture::require(Path::new("/usr/bin/newuidmap").exists(), "newuidmap/newgidmap (uidmap)")
        {
            return None;
        }
        let user = "rbuild-policy";
        let sh = |cmd: &str| Command::new("sh").arg("-c").arg(cmd).status().is_ok_and(|s| s.success());
        if !sh(&format!("id -u {user} >/dev/null 2>&1")) {
            assert!(sh(&format!("useradd --system --no-create-home --shell /usr/sbin/nologin {user}")));
        }
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text.lines().any(|l| l.starts_with(&format!("{user}:"))) {
                std::fs::write(file, format!("{text}{user}:800000:65536\n")).expect("write subordinate ids");
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let tree = dir.path().join("rootfs");
        if !crate::fixture::busybox_tree(&tree) {
            return None;
        }
        crate::fixture::tar_of(&tree, &dir.path().join("busybox.tar"));
        std::fs::copy(crate::fixture::RBUILD, dir.path().join("rbuild")).expect("copy the binary");
        assert!(sh(&format!("chown -R {user}: {}", dir.path().display())));
        let r = Rootless { dir, user };
        let out = r.rbuild(&["import", "busybox.tar", "busybox"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Some(r)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn rbuild(&self, args: &[&str]) -> Output {
        // A hung container must fail the test, not the whole run.
        Command::new("timeout")
            .args(["-s", "KILL", "120", "setpriv", "--reuid", self.user, "--regid", self.user, "--clear-groups"])
            .arg(self.path("rbuild"))
            .args(args)
            .env("RBUILD_ROOT", self.path("store"))
            .env("HOME", self.dir.path())
            .env_remove("CI")
            .current_dir(self.dir.path())
            .output()
            .expect("run rbuild as the test user")
    }
}

#[test]
fn rootless_run_steps_and_run_get_the_same_policy() {
    let Some(r) = Rootless::new() else { return };
    let _tun = crate::fixture::TunForUsers::new();
    let ctx = r.path("ctx");
    std::fs::create_dir(&ctx).expect("mkdir");
    std::fs::write(ctx.join("Dockerfile"), format!("{DOCKERFILE}RUN {PROBE}\n")).expect("write");
    let args = build_args(&ctx);
    let out = r.rbuild(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Successfully built"), "{stdout}");
    check_probe(&stdout, &format!("/bin/sh -c {PROBE}"));

    let out = r.rbuild(&["run", "--rm", "busybox", "sh", "-c", PROBE]);
    check_probe(&String::from_utf8_lossy(&out.stdout), &format!("sh -c {PROBE}"));
    let out = r.rbuild(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Seccomp:\t0\n", "{}", String::from_utf8_lossy(&out.stderr));
}
