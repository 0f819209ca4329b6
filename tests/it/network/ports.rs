//! Published ports: the notes' static_web scenario (`run -d -p 127.0.0.1::80`, `port`, an
//! HTTP GET through the mapping, `-p HOST:80`, `-P`), `ps` PORTS, `inspect`'s
//! NetworkSettings.Ports, and the port free again after `stop`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::fixture::{rbuild, rbuild_ok, Fixture};

/// Builds `static_web:v1`: EXPOSE 80, CMD busybox httpd serving /www.
pub fn build_static_web(fx: &Fixture) {
    let ctx = fx.context(
        "static_web",
        "FROM busybox\n\
         RUN mkdir /www && echo '<h1>static_web</h1>' > /www/index.html\n\
         EXPOSE 80\n\
         CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
        &[],
    );
    rbuild_ok(&fx.root, &["build", "-q", "-t", "static_web:v1", ctx.to_str().expect("utf8")]);
}

/// `GET /` through `addr`, retried while the server starts.
fn http_get(addr: &str) -> String {
    let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("address {addr:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        });
        match attempt {
            Ok(body) if body.contains("200 OK") => return body,
            other if Instant::now() > deadline => panic!("GET {addr}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn run_web(root: &Path, name: &str, publish: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(publish);
    args.push("static_web:v1");
    rbuild_ok(root, &args);
}

fn stop_and_check_free(root: &Path, name: &str, addr: &str) {
    rbuild_ok(root, &["stop", "-t", "1", name]);
    assert!(TcpListener::bind(addr).is_ok(), "{addr} is still bound after stop");
    assert!(rbuild(root, &["port", name, "80"]).stdout.is_empty());
}

#[test]
fn static_web_serves_its_page_on_a_published_loopback_port() {
    let Some(fx) = super::fixture() else { return };
    build_static_web(&fx);
    run_web(&fx.root, "static_web", &["-p", "127.0.0.1::80"]);
    let addr = rbuild_ok(&fx.root, &["port", "static_web", "80"]).trim().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "port printed {addr:?}");
    assert!(http_get(&addr).contains("<h1>static_web</h1>"));
    let all = rbuild_ok(&fx.root, &["port", "static_web"]);
    assert_eq!(all, format!("80/tcp -> {addr}\n"));
    let ps = rbuild_ok(&fx.root, &["ps"]);
    assert!(ps.contains(&format!("{addr}->80/tcp")), "ps: {ps}");
    let ports = rbuild_ok(&fx.root, &["inspect", "--format", "{{json .NetworkSettings.Ports}}", "static_web"]);
    let port = addr.rsplit(':').next().expect("port");
    assert_eq!(ports.trim(), format!(r#"{{"80/tcp":[{{"HostIp":"127.0.0.1","HostPort":"{port}"}}]}}"#));
    let missing = rbuild(&fx.root, &["port", "static_web", "81"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("No public port '81/tcp' published for static_web"));
    stop_and_check_free(&fx.root, "static_web", &addr);
}

#[test]
fn a_fixed_host_port_and_publish_all_reach_the_page() {
    let Some(fx) = super::fixture() else { return };
    build_static_web(&fx);
    // A port free now, as the notes' 8080 would be.
    let fixed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    run_web(&fx.root, "fixed", &["-p", &format!("{fixed}:80")]);
    let printed = rbuild_ok(&fx.root, &["port", "fixed", "80/tcp"]);
    assert_eq!(printed, format!("0.0.0.0:{fixed}\n[::]:{fixed}\n"));
    assert!(http_get(&format!("127.0.0.1:{fixed}")).contains("static_web"));
    stop_and_check_free(&fx.root, "fixed", &format!("0.0.0.0:{fixed}"));

    run_web(&fx.root, "all", &["-P"]);
    let printed = rbuild_ok(&fx.root, &["port", "all", "80"]);
    let port = printed.lines().next().and_then(|l| l.rsplit(':').next()).expect("a port").to_string();
    assert!(http_get(&format!("127.0.0.1:{port}")).contains("static_web"));
    stop_and_check_free(&fx.root, "all", &format!("0.0.0.0:{port}"));
}

#[test]
fn bad_publish_values_and_ports_without_the_default_network_are_refused() {
    let Some(fx) = super::fixture() else { return };
    build_static_web(&fx);
    let bad = rbuild(&fx.root, &["run", "-d", "-p", "80/sctp", "static_web:v1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid -p \"80/sctp\""));
    let host = rbuild(&fx.root, &["run", "-d", "--network", "host", "-p", "80", "static_web:v1"]);
    assert!(!host.status.success());
    assert!(String::from_utf8_lossy(&host.stderr).contains("--network host has no ports to publish"));
}
