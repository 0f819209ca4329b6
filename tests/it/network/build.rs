//! RUN steps: isolated by default (outbound access, no host loopback), `--network host` and
//! `none`, `--add-host`.

use std::io::Write as _;
use std::net::TcpListener;

use crate::fixture::{rbuild, rbuild_ok};

/// A listener on the host's 127.0.0.1 that answers every connection with `hello`.
fn host_listener() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"hello\n");
        }
    });
    port
}

#[test]
fn a_run_step_cannot_reach_the_hosts_loopback_unless_the_network_is_host() {
    let Some(fx) = super::fixture() else { return };
    let port = host_listener();
    let text = format!("FROM busybox\nRUN nc -w 3 127.0.0.1 {port} </dev/null > /got; cat /got; grep -q hello /got\n");
    let ctx = fx.context("loopback", &text, &[]);
    let ctx = ctx.to_str().expect("utf8");
    let isolated = rbuild(&fx.root, &["build", "--no-cache", "-t", "lo:default", ctx]);
    assert!(!isolated.status.success(), "the default network reached the host's 127.0.0.1:{port}");
    let named = rbuild(&fx.root, &["build", "--no-cache", "--network", "default", "-t", "lo:default", ctx]);
    assert!(!named.status.success(), "--network default reached the host's 127.0.0.1:{port}");
    let host = rbuild(&fx.root, &["build", "--no-cache", "--network", "host", "-t", "lo:host", ctx]);
    assert!(host.status.success(), "--network host: {}", String::from_utf8_lossy(&host.stderr));
    assert!(String::from_utf8_lossy(&host.stdout).contains("hello"));
}

#[test]
fn the_default_network_has_its_own_interface_hosts_file_and_resolver() {
    let Some(fx) = super::fixture() else { return };
    let ctx = fx.context(
        "ifaces",
        "FROM busybox\n\
         RUN tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort > /ifaces; \
             ip route > /routes; cat /etc/hosts > /hosts; cat /etc/resolv.conf > /resolv; hostname > /name\n\
         RUN --network=none tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /none\n",
        &[],
    );
    rbuild_ok(&fx.root, &["build", "-t", "ifaces:1", ctx.to_str().expect("utf8")]);
    let rootfs = fx.rootfs("ifaces:1");
    let read = |name: &str| std::fs::read_to_string(rootfs.join(name)).expect(name);
    let ifaces = read("ifaces");
    assert!(ifaces.lines().any(|l| l == "lo") && ifaces.lines().count() == 2, "interfaces: {ifaces}");
    assert!(!ifaces.contains("docker0"), "the host's interfaces leaked in: {ifaces}");
    assert!(read("routes").starts_with("default via"), "routes: {}", read("routes"));
    let hosts = read("hosts");
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"), "{hosts}");
    assert!(hosts.trim_end().ends_with(read("name").trim()), "the hostname is the last entry: {hosts}");
    let resolv = read("resolv");
    assert!(resolv.contains("nameserver ") && !resolv.contains("nameserver 127."), "resolv.conf: {resolv}");
    assert_eq!(read("none"), "lo\n");
}

#[test]
fn add_host_entries_reach_etc_hosts_and_a_bad_one_names_the_flag() {
    let Some(fx) = super::fixture() else { return };
    let ctx = fx.context("addhost", "FROM busybox\nRUN cat /etc/hosts > /hosts\n", &[]);
    rbuild_ok(
        &fx.root,
        &["build", "--add-host", "db.internal:10.1.2.3", "-t", "addhost:1", ctx.to_str().expect("utf8")],
    );
    let hosts = std::fs::read_to_string(fx.rootfs("addhost:1").join("hosts")).expect("hosts");
    assert!(hosts.contains("10.1.2.3\tdb.internal\n"), "{hosts}");
    let bad = rbuild(&fx.root, &["build", "--add-host", "db.internal", ctx.to_str().expect("utf8")]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid --add-host \"db.internal\""));
}

/// pasta processes whose command line names `dir` (their pid file is under the store),
/// after giving one that is being killed a moment to go (pasta is killed, not waited for).
fn pastas_under(dir: &std::path::Path) -> Vec<i32> {
    let mut found = pastas_now(dir);
    for _ in 0..40 {
        if found.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        found = pastas_now(dir);
    }
    found
}

fn pastas_now(dir: &std::path::Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline);
            text.starts_with("pasta") && text.contains(&needle)
        })
        .collect()
}

/// The pooled namespaces' state dirs in the store's runtime state dir.
fn pooled_dirs(root: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(root.join("run"))
        .map(|entries| {
            entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with("netns-")).collect()
        })
        .unwrap_or_default()
}

/// RUN steps of one build borrow one network namespace from the build's pool (pasta starts
/// once, not per step) and give it back: the next step is in the same namespace but finds
/// nothing of the last one (its listener is gone), the host's loopback stays out of reach,
/// and after the build no namespace, pasta or state dir is left.
#[test]
fn run_steps_reuse_a_pooled_network_namespace_and_leave_nothing_behind() {
    let Some(fx) = super::fixture() else { return };
    let port = host_listener();
    let text = format!(
        "FROM busybox\n\
         RUN readlink /proc/self/ns/net > /ns1; (nc -l -p 7000 -e true &); sleep 0.3; \
             nc -w 2 127.0.0.1 7000 </dev/null && echo listening > /step1\n\
         RUN readlink /proc/self/ns/net > /ns2; nc -w 2 127.0.0.1 7000 </dev/null && echo leaked > /leak; \
             nc -w 3 127.0.0.1 {port} </dev/null > /host 2>/dev/null; true\n"
    );
    let ctx = fx.context("pooled", &text, &[]);
    rbuild_ok(&fx.root, &["build", "--no-cache", "-t", "pooled:1", ctx.to_str().expect("utf8")]);
    let rootfs = fx.rootfs("pooled:1");
    let read = |name: &str| std::fs::read_to_string(rootfs.join(name)).unwrap_or_default();
    assert_eq!(read("step1"), "listening\n", "step 1's own listener answered it");
    assert!(read("ns1").starts_with("net:[") && read("ns1") == read("ns2"), "{} {}", read("ns1"), read("ns2"));
    assert!(!rootfs.join("leak").exists(), "step 2 reached step 1's listener");
    assert_eq!(read("host"), "", "a pooled namespace reached the host's 127.0.0.1:{port}");
    assert_eq!(pooled_dirs(&fx.root), Vec::<String>::new());
    assert_eq!(pastas_under(&fx.root), Vec::<i32>::new());
}

/// Starts a build whose RUN sleeps, waits until its pooled namespace's pasta is recorded and
/// the step runs, kills rbuild with SIGKILL and returns that pasta's pid.
fn kill_a_build_in_its_run_step(fx: &crate::fixture::Fixture, ctx: &std::path::Path) -> i32 {
    let mut child = crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", &fx.root)
        .env_remove("CI")
        .args(["build", "--no-cache", ctx.to_str().expect("utf8")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn rbuild");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // The pooled namespace's record names its pasta once pasta has configured it.
    let pasta = loop {
        let recorded = pooled_dirs(&fx.root).first().and_then(|dir| {
            let record = std::fs::read(fx.root.join("run").join(dir).join("container.json")).ok()?;
            let record: serde_json::Value = serde_json::from_slice(&record).ok()?;
            record["network_pid"].as_i64()
        });
        if let Some(pid) = recorded {
            break pid as i32;
        }
        assert!(std::time::Instant::now() < deadline, "no pooled pasta started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // The step is running once its container's state dir exists beside the pooled one.
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().expect("SIGKILL rbuild");
    let _ = child.wait();
    pasta
}

/// A build killed with SIGKILL while a RUN step uses a pooled namespace leaves its pasta
/// running; the next build's cleanup kills it and removes its state dir, and so does `store
/// gc` (so a kill followed by no build leaves nothing running after a gc).
#[test]
fn a_killed_builds_pooled_network_is_removed_by_the_next_cleanup() {
    let Some(fx) = super::fixture() else { return };
    let ctx = fx.context("killed", "FROM busybox\nRUN sleep 60\n", &[]);
    let pasta = kill_a_build_in_its_run_step(&fx, &ctx);
    assert_eq!(pastas_under(&fx.root), [pasta], "pasta outlives a killed rbuild until the cleanup");
    assert_eq!(pooled_dirs(&fx.root).len(), 1);
    let next = fx.context("next", "FROM busybox\nENV A=1\n", &[]);
    rbuild_ok(&fx.root, &["build", "-q", next.to_str().expect("utf8")]);
    assert_eq!(pastas_under(&fx.root), Vec::<i32>::new(), "the cleanup left pasta {pasta}");
    assert_eq!(pooled_dirs(&fx.root), Vec::<String>::new());

    let pasta = kill_a_build_in_its_run_step(&fx, &ctx);
    assert_eq!(pastas_under(&fx.root), [pasta]);
    let gc = rbuild_ok(&fx.root, &["store", "gc"]);
    assert!(gc.contains(&format!("stopped process {pasta}")), "{gc}");
    assert_eq!(pastas_under(&fx.root), Vec::<i32>::new(), "store gc left pasta {pasta}");
    assert_eq!(pooled_dirs(&fx.root), Vec::<String>::new());
}
