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
