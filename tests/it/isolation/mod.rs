//! Isolation modes (`--isolation auto|namespaces|rootless|chroot`): the chroot-snapshot mode
//! builds inside `docker run` with Docker's default seccomp and capabilities, as root and as
//! uid 1000, and every mode gives the image ID of the host's namespaces build.
//!
//! Needs root, busybox-static, proot, and for the container case a running dockerd
//! (/usr/bin/docker), for the rootless case setpriv and newuidmap (uidmap). `.ci/run`
//! installs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fixture::{have_tool, is_root, require, RBUILD};

/// `SOURCE_DATE_EPOCH` on every side, as the README example uses it: equal timestamps.
const EPOCH: &str = "0";

/// A Dockerfile whose RUN steps write, modify and delete files of the base, make, chmod and
/// link, recreate a directory (an opaque one in a layer), run as a USER in a WORKDIR, with a
/// cache mount, one after the other (the kept rootfs) and after a WORKDIR (its layer applied
/// to the kept rootfs).
const STEPS: &str = "FROM busybox
RUN echo hello > /etc/greeting && echo 'extra:x:2000:2000::/:/bin/sh' >> /etc/passwd && rm /bin/vi \\
    && mkdir -p /opt/app/data && chmod 750 /opt/app && ln -s /opt/app /app
RUN rm -rf /home/app && mkdir /home/app && echo fresh > /home/app/note && chmod 1777 /tmp
USER app
WORKDIR /home/app/work
RUN echo mine > mine.txt && id -u > uid && id -g > gid && ls /proc/self >/dev/null
RUN --mount=type=cache,target=/var/cache/x,uid=1000 echo c > /var/cache/x/f && echo after > after
WORKDIR /home/app/two
RUN echo two > t && (ls -d /var/cache || echo the cache mount left nothing > t2)
";

fn sh(cmd: &str) -> bool {
    Command::new("sh").arg("-c").arg(cmd).status().is_ok_and(|s| s.success())
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The README's busybox base image (testdata/busybox-rootfs.sh) as a tar at `out`.
fn readme_busybox_tar(out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/busybox-rootfs.sh");
    assert!(sh(&format!("{} > {}", script.display(), out.display())), "busybox-rootfs.sh");
}

/// A build context with `dockerfile` at `dir` (the README example when `None`).
fn context(dir: &Path, dockerfile: Option<&str>) -> PathBuf {
    let ctx = dir.join("ctx");
    match dockerfile {
        Some(text) => {
            std::fs::create_dir_all(&ctx).expect("ctx");
            std::fs::write(ctx.join("Dockerfile"), text).expect("Dockerfile");
        }
        None => {
            let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example");
            assert!(sh(&format!("cp -a {} {}", example.display(), ctx.display())));
        }
    }
    ctx
}

/// Imports `base_tar` as busybox into `store` and builds `ctx` there with `--isolation mode`
/// on the host (as root); returns the image ID and the build's output.
fn host_build(store: &Path, base_tar: &Path, ctx: &Path, mode: &str) -> (String, String) {
    let run = |args: &[&str], stdin: std::process::Stdio| {
        let out = Command::new(RBUILD)
            .env("RBUILD_ROOT", store)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env_remove("CI")
            .args(args)
            .stdin(stdin)
            .output()
            .expect("rbuild");
        assert!(out.status.success(), "rbuild {args:?}: {}", text(&out));
        out
    };
    // From stdin, as the README does: the history says `Imported from -` on every side.
    run(&["import", "-", "busybox"], std::fs::File::open(base_tar).expect("base tar").into());
    let iid = store.with_extension("iid");
    let args = ["build", "--isolation", mode, "--iidfile", iid.to_str().expect("path"), ctx.to_str().expect("ctx")];
    let out = run(&args, std::process::Stdio::null());
    (std::fs::read_to_string(&iid).expect("iidfile").trim().to_string(), text(&out))
}

/// The shared libraries `ldd` lists for `binary`.
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from).collect()
}

/// A docker image the test made, removed on drop (a failed test leaves none behind).
struct DockerImage(String);

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// A docker image with busybox, rbuild, proot and their libraries, the base image tar at
/// /work/busybox.tar, the context at /work/ctx and a writable /home/u.
fn docker_image(dir: &Path, base_tar: &Path, ctx: &Path) -> DockerImage {
    let root = dir.join("image");
    assert!(crate::fixture::busybox_tree(&root), "busybox-static installed");
    let proot = PathBuf::from("/usr/bin/proot");
    for (binary, to) in [(PathBuf::from(RBUILD), "usr/local/bin/rbuild"), (proot.clone(), "usr/bin/proot")] {
        std::fs::create_dir_all(root.join(to).parent().expect("parent")).expect("mkdir");
        std::fs::copy(&binary, root.join(to)).expect("copy binary");
        for lib in libraries(&binary) {
            let inside = root.join(lib.strip_prefix("/").expect("absolute"));
            std::fs::create_dir_all(inside.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&lib, &inside).expect("copy library");
        }
    }
    for d in ["work", "home/u", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy(base_tar, root.join("work/busybox.tar")).expect("copy base");
    assert!(sh(&format!("cp -a {} {}/work/ctx", ctx.display(), root.display())));
    assert!(sh(&format!("chmod 1777 {0}/tmp {0}/home/u && chmod -R a+rX {0}/work", root.display())));
    let tar = dir.join("image.tar");
    crate::fixture::tar_of(&root, &tar);
    let name = format!("rbuild-isolation-test:{}", std::process::id());
    let out = Command::new("/usr/bin/docker").args(["import"]).arg(&tar).arg(&name).output().expect("docker");
    assert!(out.status.success(), "docker import: {}", text(&out));
    DockerImage(name)
}

/// Builds /work/ctx inside `docker run` (default seccomp and no added capabilities, unless
/// `options` adds some) as `user` with `--isolation auto`; returns the image ID and the output.
fn container_build(image: &str, user: &str, options: &[&str]) -> (String, String) {
    let script = "rbuild import - busybox </work/busybox.tar >/dev/null \
        && rbuild build --isolation auto --iidfile /home/u/iid /work/ctx && echo \"iid=$(cat /home/u/iid)\"";
    let out = Command::new("timeout")
        .args(["-s", "KILL", "600", "/usr/bin/docker", "run", "--rm", "--network", "host", "--user", user])
        .args(options)
        .args(["-e", "HOME=/home/u", "-e", "RBUILD_ROOT=/home/u/store", "-e"])
        .arg(format!("SOURCE_DATE_EPOCH={EPOCH}"))
        .args([image, "/bin/sh", "-c", script])
        .output()
        .expect("docker run");
    let shown = text(&out);
    assert!(out.status.success(), "build in docker as {user}: {shown}");
    let iid = shown.lines().find_map(|l| l.strip_prefix("iid=")).expect("image ID printed").to_string();
    (iid, shown)
}

#[test]
fn builds_in_an_unprivileged_docker_container_equal_the_host_build() {
    if !require(is_root(), "root (the host's namespaces build)")
        || !require(crate::fixture::busybox_path().is_some(), "busybox-static")
        || !require(have_tool("proot"), "proot (Debian package proot)")
        || !require(sh("/usr/bin/docker version >/dev/null 2>&1"), "a running dockerd (/usr/bin/docker)")
    {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base_tar = t.path().join("busybox.tar");
    readme_busybox_tar(&base_tar);
    let ctx = context(t.path(), Some(STEPS));
    let (host, _) = host_build(&t.path().join("host"), &base_tar, &ctx, "namespaces");
    let image = docker_image(t.path(), &base_tar, &ctx);
    // Root with CAP_SYS_ADMIN and no seccomp may make namespaces, but its store is on the
    // container's overlay root, which the kernel overlay refuses as an upper dir.
    let admin =
        ["--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"];
    let runs = [
        ("root", "0:0", &[][..], "[isolation] chroot-snapshot: unshare(CLONE_NEWNS) not permitted"),
        ("uid 1000", "1000:1000", &[][..], "[isolation] chroot-snapshot: rbuild is not running as root"),
        ("root with SYS_ADMIN", "0:0", &admin[..], "[isolation] chroot-snapshot: the kernel overlay refuses"),
    ];
    let results: Vec<(String, String)> =
        runs.iter().map(|(_, user, options, _)| container_build(&image.0, user, options)).collect();
    for ((iid, shown), (user, _, _, why)) in results.iter().zip(runs) {
        assert!(shown.contains(why), "auto picks the chroot-snapshot mode and says why ({user}): {shown}");
        assert_eq!(iid, &host, "the image built in docker as {user} equals the host's namespaces build: {shown}");
    }
}

/// The test user for the rootless build, with a subordinate id range.
const USER: &str = "rbuild-isolation";

#[test]
fn every_mode_gives_the_same_image_id_for_the_readme_example() {
    if !require(is_root(), "root (namespaces mode, and a user for the rootless one)")
        || !require(crate::fixture::busybox_path().is_some(), "busybox-static")
        || !require(have_tool("proot"), "proot (Debian package proot)")
        || !require(Path::new("/usr/bin/setpriv").exists(), "setpriv (util-linux)")
        || !require(Path::new("/usr/bin/newuidmap").exists(), "newuidmap/newgidmap (uidmap)")
    {
        return;
    }
    crate::runtime::rootless::ensure_user(USER, Some(900_000));
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path();
    assert!(sh(&format!("chmod 755 {}", base.display())));
    let base_tar = base.join("busybox.tar");
    readme_busybox_tar(&base_tar);
    let ctx = context(base, None);
    let (namespaces, _) = host_build(&base.join("ns"), &base_tar, &ctx, "namespaces");
    let (chroot, shown) = host_build(&base.join("chroot"), &base_tar, &ctx, "chroot");
    assert!(shown.contains("[isolation] chroot-snapshot: asked for (--isolation chroot)"), "{shown}");
    assert_eq!(chroot, namespaces, "chroot == namespaces");
    // The rootless mode and the unprivileged chroot mode, as the test user.
    std::fs::copy(RBUILD, base.join("rbuild")).expect("copy rbuild");
    assert!(sh(&format!("chown -R {USER}: {}", base.display())));
    for mode in ["rootless", "chroot"] {
        let script = format!(
            "{0}/rbuild import - busybox <{0}/busybox.tar >/dev/null && {0}/rbuild build -q --network host --isolation {mode} {0}/ctx",
            base.display()
        );
        let out = Command::new("setpriv")
            .args(["--reuid", USER, "--regid", USER, "--clear-groups", "sh", "-c", &script])
            .env("RBUILD_ROOT", base.join(format!("store-{mode}")))
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("HOME", base)
            .env_remove("CI")
            .output()
            .expect("rbuild as the test user");
        assert!(out.status.success(), "--isolation {mode} as {USER}: {}", text(&out));
        let iid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(iid, namespaces, "--isolation {mode} as {USER} == namespaces");
    }
}

#[test]
fn an_unavailable_mode_names_the_permission_and_the_fix() {
    if is_root() {
        // As a plain user, namespaces mode cannot work: checked through setpriv.
        if !require(Path::new("/usr/bin/setpriv").exists(), "setpriv (util-linux)") {
            return;
        }
        crate::runtime::rootless::ensure_user(USER, Some(900_000));
    }
    let t = tempfile::tempdir().expect("tempdir");
    assert!(sh(&format!("chmod 755 {}", t.path().display())));
    context(t.path(), Some("FROM scratch\nRUN true\n"));
    std::fs::copy(RBUILD, t.path().join("rbuild")).expect("copy rbuild");
    let script = format!("{0}/rbuild build --isolation namespaces {0}/ctx", t.path().display());
    let mut cmd = Command::new("setpriv");
    match is_root() {
        true => cmd.args(["--reuid", USER, "--regid", USER, "--clear-groups", "sh", "-c", &script]),
        false => cmd.args(["sh", "-c", &script]),
    };
    assert!(sh(&format!("chmod -R a+rwX {}", t.path().display())));
    let out = cmd.env("RBUILD_ROOT", t.path().join("store")).env("HOME", t.path()).output().expect("rbuild");
    assert!(!out.status.success());
    let shown = text(&out);
    assert!(
        shown.contains("--isolation namespaces is not available: rbuild is not running as root")
            && shown.contains("--cap-add SYS_ADMIN")
            && shown.contains("--isolation chroot"),
        "{shown}"
    );
}

#[test]
fn without_proot_root_runs_steps_with_chroot_and_gets_the_same_image_id() {
    if !require(is_root(), "root (CAP_SYS_CHROOT)")
        || !require(crate::fixture::busybox_path().is_some(), "busybox-static")
    {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base_tar = t.path().join("busybox.tar");
    readme_busybox_tar(&base_tar);
    let ctx = context(t.path(), None);
    let (namespaces, _) = host_build(&t.path().join("ns"), &base_tar, &ctx, "namespaces");
    // No proot on rbuild's PATH: the chroot(2) executor (the steps' PATH is the image's).
    let store = t.path().join("chroot");
    let import = Command::new(RBUILD)
        .env("RBUILD_ROOT", &store)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("PATH", "/nonexistent")
        .args(["import", "-", "busybox"])
        .stdin(std::fs::File::open(&base_tar).expect("base tar"))
        .output()
        .expect("rbuild import");
    assert!(import.status.success(), "{}", text(&import));
    let out = Command::new(RBUILD)
        .env("RBUILD_ROOT", &store)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("PATH", "/nonexistent")
        .env_remove("CI")
        .args(["build", "--progress", "json", "--isolation", "chroot", "--iidfile"])
        .arg(t.path().join("iid"))
        .arg(&ctx)
        .output()
        .expect("rbuild build");
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let event = shown.lines().find(|l| l.contains(r#""event":"isolation""#)).expect("an isolation event");
    assert!(event.contains(r#""mode":"chroot-snapshot""#) && event.contains("chroot(2)"), "{event}");
    let iid = std::fs::read_to_string(t.path().join("iid")).expect("iidfile").trim().to_string();
    assert_eq!(iid, namespaces, "chroot(2) == namespaces: {shown}");
}
