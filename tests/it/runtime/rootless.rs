//! Unprivileged mode: containers run by a created non-root user, in a user namespace with a
//! subordinate id range (newuidmap) or a single-id map, on the kernel overlay or on
//! fuse-overlayfs, and the upper dirs they leave commit to layers with OCI whiteouts.
//! The test itself runs as root to create the users; the container runs as the user, from
//! this test binary re-run on `rootless_child`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild::layer::diff::{write_layer, DiffOptions};
use rbuild::runtime::{Container, ContainerSpec, NetworkMode, OverlayDriver, Rootfs, StdioMode};

/// Runs a container from `RBUILD_CHILD_*` variables and prints its output and outcome.
#[test]
#[ignore = "entry point for the tests below, run as a non-root user"]
fn rootless_child() {
    let Ok(base) = std::env::var("RBUILD_CHILD_BASE") else {
        return;
    };
    let base = PathBuf::from(base);
    let script = std::env::var("RBUILD_CHILD_SCRIPT").expect("script");
    let mut spec = ContainerSpec::new(
        "rootless",
        Rootfs::Overlay { lower: vec![base.join("lower")], upper: base.join("upper"), work: base.join("work") },
        vec!["/bin/sh".into(), "-c".into(), script],
        base.join("state"),
    );
    spec.overlay = match std::env::var("RBUILD_CHILD_OVERLAY").as_deref() {
        Ok("fuse") => OverlayDriver::Fuse,
        Ok("kernel") => OverlayDriver::Kernel,
        _ => OverlayDriver::Auto,
    };
    spec.user = std::env::var("RBUILD_CHILD_USER").ok();
    if let Some(mode) = std::env::var("RBUILD_CHILD_NETWORK").ok().and_then(|m| NetworkMode::parse(&m)) {
        spec.network = mode;
    }
    spec.stdio = StdioMode::Lines(Box::new(|_, line, _| {
        println!("container: {}", String::from_utf8_lossy(line));
    }));
    match Container::new(spec).run() {
        Ok(exit) => println!("outcome: code={} overlay={:?} userns={}", exit.code, exit.overlay, exit.user_namespace),
        Err(e) => println!("outcome: error: {e}"),
    }
}

fn sh(cmd: &str) -> bool {
    Command::new("sh").arg("-c").arg(cmd).status().is_ok_and(|s| s.success())
}

/// Serializes edits of /etc/passwd, /etc/subuid and /etc/subgid by the tests of this binary.
static USERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Creates the system user `name` if missing, with (or without) an /etc/subuid and
/// /etc/subgid range.
pub(crate) fn ensure_user(name: &str, sub_start: Option<u32>) {
    let _lock = USERS.lock().unwrap_or_else(|e| e.into_inner());
    if !sh(&format!("id -u {name} >/dev/null 2>&1")) {
        assert!(sh(&format!("useradd --system --no-create-home --shell /usr/sbin/nologin {name}")));
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let mut lines: Vec<String> =
            text.lines().filter(|l| !l.starts_with(&format!("{name}:"))).map(str::to_string).collect();
        if let Some(start) = sub_start {
            lines.push(format!("{name}:{start}:65536"));
        }
        let mut out = lines.join("\n");
        out.push('\n');
        std::fs::write(file, out).expect("write subordinate ids");
    }
}

struct Rootless {
    tmp: tempfile::TempDir,
    user: String,
}

impl Rootless {
    fn new(user: &str, sub_start: Option<u32>) -> Option<Rootless> {
        if !crate::fixture::require(crate::fixture::is_root(), "root to create the non-root test users")
            || !crate::fixture::require(crate::fixture::busybox_path().is_some(), "busybox-static")
            || !crate::fixture::require(Path::new("/usr/bin/setpriv").exists(), "setpriv (util-linux)")
            || !crate::fixture::require(
                sub_start.is_none() || Path::new("/usr/bin/newuidmap").exists(),
                "newuidmap/newgidmap (uidmap)",
            )
        {
            return None;
        }
        ensure_user(user, sub_start);
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path();
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        crate::fixture::busybox_rootfs(&base.join("lower"));
        for d in ["upper", "work", "state"] {
            std::fs::create_dir(base.join(d)).expect("mkdir");
        }
        std::fs::copy(std::env::current_exe().expect("exe"), base.join("testbin")).expect("copy");
        assert!(sh(&format!("chown -R {user}: {}", base.display())));
        Some(Rootless { tmp, user: user.to_string() })
    }

    fn base(&self) -> &Path {
        self.tmp.path()
    }

    /// [`Rootless::new`] for tests of the default network: needs pasta, and opens
    /// /dev/net/tun to users while the guard lives.
    fn with_network(user: &str, sub_start: Option<u32>) -> Option<(Rootless, crate::fixture::TunForUsers)> {
        if !crate::fixture::require(crate::fixture::have_tool("pasta"), "pasta (Debian package passt)") {
            return None;
        }
        let r = Rootless::new(user, sub_start)?;
        Some((r, crate::fixture::TunForUsers::new()))
    }

    /// Copies the rbuild binary and a busybox tarball into the base dir (owned by the user),
    /// and writes `ctx/Dockerfile`.
    fn with_rbuild_and_context(&self, dockerfile: &str) {
        let base = self.base();
        std::fs::copy(crate::fixture::RBUILD, base.join("rbuild")).expect("copy rbuild");
        std::fs::create_dir(base.join("ctx")).expect("mkdir");
        std::fs::write(base.join("ctx/Dockerfile"), dockerfile).expect("write");
        let tar = format!("tar --numeric-owner -C {0}/lower -cf {0}/busybox.tar .", base.display());
        assert!(sh(&format!("{tar} && chown -R {1}: {0}", base.display(), self.user)));
    }

    /// Runs `script` with `sh -c` as the user in the base dir (store `store/`), asserts that
    /// it succeeded; returns its stdout and its stdout followed by its stderr.
    fn as_user(&self, script: &str) -> (String, String) {
        let base = self.base();
        let out = Command::new("timeout")
            .args(["-s", "KILL", "120", "setpriv", "--reuid", &self.user, "--regid", &self.user, "--clear-groups"])
            .args(["sh", "-c", script])
            .env("RBUILD_ROOT", base.join("store"))
            .env("HOME", base)
            .env_remove("CI")
            .current_dir(base)
            .output()
            .expect("rbuild");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let text = stdout.clone() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{script}: {text}");
        (stdout, text)
    }

    /// Runs `script` in a container as the test user; returns the container's lines and the
    /// outcome line.
    fn run(&self, script: &str, overlay: &str, container_user: Option<&str>) -> (Vec<String>, String) {
        self.run_on(script, overlay, container_user, "host")
    }

    /// [`Rootless::run`] on network `network` (`default`, `host`, `none`).
    fn run_on(&self, script: &str, overlay: &str, user: Option<&str>, network: &str) -> (Vec<String>, String) {
        let container_user = user;
        // A hung container must fail the test, not the whole run.
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL", "120", "setpriv", "--reuid", &self.user, "--regid", &self.user, "--clear-groups"])
            .arg(self.base().join("testbin"))
            .args([
                "--exact",
                &crate::fixture::test_name(module_path!(), "rootless_child"),
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RBUILD_CHILD_BASE", self.base())
            .env("RBUILD_CHILD_SCRIPT", script)
            .env("RBUILD_CHILD_OVERLAY", overlay)
            .env("RBUILD_CHILD_NETWORK", network)
            .current_dir(self.base());
        if let Some(u) = container_user {
            cmd.env("RBUILD_CHILD_USER", u);
        }
        let out = cmd.output().expect("run as the test user");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines = stdout
            .lines()
            .filter_map(|l| l.split_once("container: ").map(|(_, rest)| rest))
            .map(str::to_string)
            .collect();
        let outcome = stdout
            .lines()
            .find_map(|l| l.split_once("outcome: ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no outcome; stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr)))
            .to_string();
        (lines, outcome)
    }

    /// The layer names the upper dir commits to (read as root). `fuse`: fuse-overlayfs wrote
    /// it, so its `.wh.` files are whiteouts (the engine says so for a fuse step).
    fn layer_names(&self, fuse: bool) -> Vec<String> {
        let out = self.base().join("blobs");
        std::fs::create_dir_all(&out).expect("mkdir");
        let opts = DiffOptions { whiteout_files: fuse, ..DiffOptions::default() };
        let layer = write_layer(&self.base().join("upper"), &out, &opts).expect("commit");
        crate::fixture::layer_entries(&layer.path, layer.media_type).into_iter().map(|(n, _)| n).collect()
    }
}

const SCRIPT: &str = "id -u; echo made > /new; rm /etc/group; \
                      mkdir -p /home/app/x && rm -rf /home/app && mkdir /home/app && echo re > /home/app/f; \
                      chown 1000:1000 /new 2>/dev/null && echo chown-ok || echo chown-failed; exit 3";

fn check_layer(names: &[String]) {
    for want in ["etc/.wh.group", "new", "home/app/f"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
}

#[test]
fn rootless_kernel_overlay_with_a_subuid_range() {
    let Some(r) = Rootless::new("rbuild-rootless", Some(400_000)) else {
        return;
    };
    let (lines, outcome) = r.run(SCRIPT, "kernel", None);
    assert_eq!(outcome, "code=3 overlay=Kernel userns=true", "{lines:?}");
    assert_eq!(lines, ["0", "chown-ok"]);
    check_layer(&r.layer_names(false));
    // Same upper and work dirs again: the volatile marker of the first run is gone.
    let (lines, outcome) = r.run("id -u; id -g", "kernel", Some("app"));
    assert_eq!(outcome, "code=0 overlay=Kernel userns=true");
    assert_eq!(lines, ["1000", "1000"]);
}

#[test]
fn rootless_single_id_map_without_subuid() {
    let Some(r) = Rootless::new("rbuild-single", None) else {
        return;
    };
    let (lines, outcome) = r.run(SCRIPT, "auto", None);
    assert_eq!(outcome, "code=3 overlay=Kernel userns=true", "{lines:?}");
    assert_eq!(lines, ["0", "chown-failed"]);
    check_layer(&r.layer_names(false));
}

#[test]
fn rootless_fuse_overlayfs() {
    let Some(r) = Rootless::new("rbuild-fuse", Some(500_000)) else {
        return;
    };
    if !crate::fixture::require(Path::new("/usr/bin/fuse-overlayfs").exists(), "fuse-overlayfs")
        || !crate::fixture::require(Path::new("/dev/fuse").exists(), "/dev/fuse")
    {
        return;
    }
    // Debian's default mode for /dev/fuse; some VMs come up with 0600.
    assert!(sh("chmod 0666 /dev/fuse"));
    let (lines, outcome) = r.run(SCRIPT, "fuse", None);
    assert_eq!(outcome, "code=3 overlay=Fuse userns=true", "{lines:?}");
    assert_eq!(lines, ["0", "chown-ok"]);
    check_layer(&r.layer_names(true));
}

/// The README example built by the unprivileged user and by root gives one image ID: what a
/// RUN creates as container root is recorded as root (not as the user's host uid), and
/// `COPY --chown=1000:1000` works and records 1000:1000.
#[test]
fn rootless_and_root_builds_of_the_example_give_one_image_id() {
    let Some(r) = Rootless::new("rbuild-build", Some(700_000)) else {
        return;
    };
    let _tun = crate::fixture::TunForUsers::new();
    let base = r.base();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example");
    assert!(sh(&format!("cp -a {} {}/example", example.display(), base.display())));
    let dockerfile = std::fs::read_to_string(example.join("Dockerfile")).expect("Dockerfile");
    let extra = "COPY --chown=1000:1000 app/app.conf /home/app/conf\nRUN cat /home/app/conf > /copied\n";
    std::fs::write(base.join("example/Dockerfile.chown"), format!("{dockerfile}{extra}")).expect("write");
    std::fs::copy(crate::fixture::RBUILD, base.join("rbuild")).expect("copy rbuild");
    // One import (its `created` is the import time), given to the user as a copy.
    let tar = format!("tar --numeric-owner -C {0}/lower -cf {0}/busybox.tar .", base.display());
    let import = format!("RBUILD_ROOT={0}/store-root {0}/rbuild import {0}/busybox.tar busybox", base.display());
    let copy = format!("cp -a {0}/store-root {0}/store-user && chown -R {1}: {0}/store-user", base.display(), r.user);
    assert!(sh(&format!("{tar} && {import} >/dev/null && {copy}")));
    let build = |as_user: bool, store: &str, dockerfile: &str| -> String {
        let script = format!("{0}/rbuild build -q -f {0}/example/{dockerfile} {0}/example", base.display());
        let mut cmd = if as_user {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", &r.user, "--regid", &r.user, "--clear-groups", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        let out = cmd
            .env("RBUILD_ROOT", base.join(store))
            .env("SOURCE_DATE_EPOCH", "0")
            .env("HOME", base)
            .env_remove("CI")
            .output()
            .expect("rbuild");
        let who = if as_user { r.user.as_str() } else { "root" };
        assert!(out.status.success(), "build as {who}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for dockerfile in ["Dockerfile", "Dockerfile.chown"] {
        let rootless = build(true, "store-user", dockerfile);
        let root = build(false, "store-root", dockerfile);
        assert!(root.starts_with("sha256:"), "{root}");
        assert_eq!(rootless, root, "{dockerfile}: the unprivileged build differs from root's");
    }
}

/// The default network rootless: pasta joins the container's user and network namespaces, the
/// container has an interface and a route of its own, and a listener on the host's 127.0.0.1
/// is out of reach (with the host network it is reached).
#[test]
fn rootless_default_network_is_isolated_from_the_hosts_loopback() {
    use std::io::Write as _;
    let Some((r, _tun)) = Rootless::with_network("rbuild-rootless", Some(400_000)) else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"hello\n");
        }
    });
    let script = format!(
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '; echo; ip route | head -1; \
         nc -w 3 127.0.0.1 {port} </dev/null 2>/dev/null || echo unreachable"
    );
    let (lines, outcome) = r.run_on(&script, "auto", None, "default");
    assert!(outcome.starts_with("code=0"), "{outcome} {lines:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].split_whitespace().count() == 2 && lines[0].contains("lo"), "interfaces: {lines:?}");
    assert!(lines[1].starts_with("default via"), "{lines:?}");
    assert_eq!(lines[2], "unreachable");
    let (lines, _) = r.run_on(&format!("nc -w 3 127.0.0.1 {port} </dev/null"), "auto", None, "host");
    assert_eq!(lines, ["hello"]);
}

/// An unprivileged user's `rmi` and `store gc` remove what its containers wrote: files owned
/// by its subordinate ids and read-only directories, which it cannot delete from the host
/// ("Permission denied" on `tmp/trash-*` before the store removed such trees in a user
/// namespace).
#[test]
fn rootless_rmi_and_gc_remove_files_of_subordinate_ids() {
    let Some(r) = Rootless::new("rbuild-rmi", Some(800_000)) else {
        return;
    };
    let _tun = crate::fixture::TunForUsers::new();
    let base = r.base();
    r.with_rbuild_and_context(
        "FROM busybox\nRUN mkdir -p /a/b /c/d && echo x > /a/b/f && echo y > /c/d/g && \
         chown -R 1000:1000 /a && chmod 555 /c/d /c\n",
    );
    let as_user = |script: &str| r.as_user(script).1;
    as_user("./rbuild import busybox.tar busybox && ./rbuild build -q -t owned ctx");
    let layers = |dir: &str| std::fs::read_dir(base.join("store").join(dir)).expect("read_dir").count();
    assert_eq!(layers("layers"), 2, "the base and the RUN step's layer are unpacked");
    let owner = std::fs::read_dir(base.join("store/layers"))
        .expect("read_dir")
        .filter_map(|e| std::fs::symlink_metadata(e.ok()?.path().join("a")).ok())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .next();
    assert_eq!(owner, Some(801_000 - 1), "/a is owned by container uid 1000 through the subuid range");
    let rmi = as_user("./rbuild rmi owned");
    assert!(rmi.contains("Untagged: owned:latest") && rmi.contains("Deleted: sha256:"), "{rmi}");
    assert_eq!(layers("layers"), 1, "rmi removed the RUN step's layer: {rmi}");
    as_user("./rbuild rmi busybox && ./rbuild store gc");
    assert_eq!((layers("layers"), layers("tmp")), (0, 0), "gc left layers or trash behind");
    // Uninstalling: the whole store goes, without root, even with a RUN layer in it.
    as_user("./rbuild import busybox.tar busybox && ./rbuild build -q -t owned ctx && ./rbuild run --rm owned true");
    let refused = Command::new("setpriv")
        .args(["--reuid", &r.user, "--regid", &r.user, "--clear-groups", "./rbuild", "store", "reset"])
        .env("RBUILD_ROOT", base.join("store"))
        .current_dir(base)
        .output()
        .expect("rbuild");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("run `rbuild store reset --force`"), "{refused:?}");
    let reset = as_user("./rbuild store reset --force");
    assert!(reset.starts_with("deleted store "), "{reset}");
    assert!(!base.join("store").exists(), "store reset left the store behind");
}

/// A user without /etc/subuid and /etc/subgid ranges is told what to add before a build
/// whose RUN steps could only chown to root; the build still works.
#[test]
fn rootless_without_subordinate_ids_warns_and_builds() {
    let Some(r) = Rootless::new("rbuild-nosub", None) else {
        return;
    };
    let _tun = crate::fixture::TunForUsers::new();
    let base = r.base();
    std::fs::copy(crate::fixture::RBUILD, base.join("rbuild")).expect("copy rbuild");
    std::fs::create_dir(base.join("ctx")).expect("mkdir");
    std::fs::write(base.join("ctx/Dockerfile"), "FROM busybox\nRUN echo hi > /f\n").expect("write");
    let tar = format!("tar --numeric-owner -C {0}/lower -cf {0}/busybox.tar .", base.display());
    assert!(sh(&format!("{tar} && chown -R {1}: {0}", base.display(), r.user)));
    let script = "./rbuild import busybox.tar busybox >/dev/null && ./rbuild build -q ctx";
    let out = Command::new("setpriv")
        .args(["--reuid", &r.user, "--regid", &r.user, "--clear-groups", "sh", "-c", script])
        .env("RBUILD_ROOT", base.join("store"))
        .env_remove("CI")
        .current_dir(base)
        .output()
        .expect("rbuild");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("[Warning] rootless mode without a range for rbuild-nosub in /etc/subuid or a range for rbuild-nosub in /etc/subgid")
            && err.contains("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 rbuild-nosub"),
        "{err}"
    );
}

/// An unprivileged user's `exec` joins the container it started: the same mount, PID and
/// network namespaces (it reads the container's files, sees its httpd, fetches the page from
/// the container's own `localhost`), with a terminal of the container's own for `-t`. Its
/// build's RUN steps share one pooled network namespace (a user namespace's, rootless) and
/// find nothing of the step before.
#[test]
fn rootless_exec_joins_the_containers_namespaces_and_run_steps_share_a_pooled_network() {
    let Some((r, _tun)) = Rootless::with_network("rbuild-exec", Some(900_000)) else {
        return;
    };
    r.with_rbuild_and_context(
        "FROM busybox\n\
         RUN readlink /proc/self/ns/net > /ns1; (nc -l -p 7000 -e true &); sleep 0.3; \
             nc -w 2 127.0.0.1 7000 </dev/null && echo step1-listening\n\
         RUN nc -w 2 127.0.0.1 7000 </dev/null && echo leaked; \
             echo \"same-ns=$(test \"$(cat /ns1)\" = \"$(readlink /proc/self/ns/net)\" && echo yes)\"\n",
    );
    let as_user = |script: &str| r.as_user(script).0;
    as_user("./rbuild import busybox.tar busybox >/dev/null");
    let built = as_user("./rbuild build --no-cache ctx");
    let printed = |line: &str| built.lines().any(|l| l == line);
    assert!(printed("step1-listening") && printed("same-ns=yes"), "{built}");
    assert!(!printed("leaked"), "step 2 reached step 1's listener: {built}");
    let left: Vec<String> = std::fs::read_dir(r.base().join("store/run"))
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    assert_eq!(left, Vec::<String>::new(), "the build left state dirs (a pooled namespace?)");
    // pasta is killed, not waited for: give a dying one a moment.
    let pasta_running = || {
        let out = Command::new("pgrep").args(["-f", "-u", &r.user, "^pasta "]).output().expect("pgrep");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for _ in 0..40 {
        if pasta_running().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(pasta_running(), "", "the build left pasta running");

    as_user(
        "./rbuild run -d --name web busybox sh -c \
         'mkdir -p /www && echo rootless-page > /www/index.html && exec httpd -f -p 8080 -h /www' >/dev/null",
    );
    as_user("for i in $(seq 100); do ./rbuild exec web wget -qO- http://127.0.0.1:8080/ >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1");
    let seen = as_user(
        "./rbuild exec web sh -c 'cat /www/index.html; wget -qO- http://127.0.0.1:8080/; \
         ps -o comm | grep -c httpd; id -u'",
    );
    assert_eq!(seen.lines().collect::<Vec<_>>(), ["rootless-page", "rootless-page", "1", "0"], "{seen}");
    let tty = as_user("./rbuild exec -t web tty </dev/null");
    assert!(tty.trim_end().starts_with("/dev/pts/"), "{tty:?}");
    let host = std::net::TcpStream::connect(("127.0.0.1", 8080));
    assert!(host.is_err(), "the container's unpublished port is reachable from the host");
    as_user("./rbuild rm -f web >/dev/null");
}
