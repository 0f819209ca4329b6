//! A container's network: the userspace stack that connects its network namespace to the
//! outside ([`NetworkStack`], `pasta` from the `passt` package), published ports
//! ([`PortMapping`]), and the `/etc/hosts` and `/etc/resolv.conf` it sees.
//!
//! Why pasta: it needs no privileges (the same path as root and rootless), it is a real
//! userspace TCP/UDP/ICMP translator made for network namespaces (podman's default), it
//! forwards published ports itself (`-t`/`-u`), and it can reach the host's resolvers through
//! its own sockets. slirp4netns would need an API socket and a process to talk to it for every
//! port; a veth pair with NAT needs root and iptables.
//!
//! The stack is started once the container's setup process has made its network namespace
//! (and, rootless, its user namespace with the id maps written): rbuild opens the namespaces
//! as files and hands them to pasta as `/proc/self/fd/N`, since pasta, which drops its
//! capabilities first, may not open another root process's `/proc/<pid>/ns` files. pasta
//! forks to the background once the interface, addresses and routes are configured; rbuild
//! kills it when the container ends (an explicit teardown: pasta does not notice that a
//! namespace it got by fd is gone), and [`crate::runtime::cleanup_stale`] kills one a killed
//! rbuild left.
//!
//! Isolation: the host's loopback is out of reach (`--no-map-gw`: the gateway address is the
//! real gateway, `-T none -U none`: no ports of the host are forwarded into the namespace).

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runtime::error::RuntimeError;
use crate::runtime::spec::NetworkMode;

/// The program that provides the default network.
const PASTA: &str = "pasta";

/// Docker's default DNS servers, used when the host has none a container can reach.
const FALLBACK_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The address inside the namespace that pasta forwards to the host's first resolver when the
/// host only has loopback resolvers (a local caching daemon).
const DNS_FORWARD: &str = "169.254.1.1";

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// `tcp` or `udp` (Docker's names; `sctp` is not supported).
    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// A published port: connections to `host_ip:host_port` on the host reach `container_port`
/// in the container (every host address when `host_ip` is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortMapping {
    /// The forwarding spec pasta takes after `-t`/`-u`: `[ADDR/]HOST_PORT:CONTAINER_PORT`.
    fn pasta_spec(&self) -> String {
        let ports = format!("{}:{}", self.host_port, self.container_port);
        match self.host_ip {
            Some(ip) => format!("{ip}/{ports}"),
            None => ports,
        }
    }
}

/// An `--add-host NAME:IP` entry of `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub name: String,
    pub ip: IpAddr,
}

impl HostEntry {
    /// Reads `NAME:IP` (`NAME=IP` too, as Docker accepts); IPv6 addresses may be bracketed.
    pub fn parse(text: &str) -> Result<HostEntry, String> {
        let (name, ip) = text
            .split_once('=')
            .or_else(|| text.split_once(':'))
            .ok_or_else(|| format!("invalid --add-host {text:?}: expected NAME:IP"))?;
        let ip_text = ip.trim_start_matches('[').trim_end_matches(']');
        if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
            return Err(format!("invalid --add-host {text:?}: invalid host name {name:?}"));
        }
        let ip = ip_text.parse().map_err(|_| format!("invalid --add-host {text:?}: invalid IP address {ip_text:?}"))?;
        Ok(HostEntry { name: name.to_string(), ip })
    }
}

/// The text of the container's `/etc/hosts`, as Docker writes it: the host's file for the
/// host network; else localhost, the IPv6 names, the `--add-host` entries and the container's
/// own address with its hostname.
pub(crate) fn hosts_file(mode: NetworkMode, hostname: &str, extra: &[HostEntry], own_ip: Option<IpAddr>) -> String {
    let mut text = match mode {
        NetworkMode::Host => std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        NetworkMode::Default | NetworkMode::None => String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        ),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for entry in extra {
        text.push_str(&format!("{}\t{}\n", entry.ip, entry.name));
    }
    if mode != NetworkMode::Host {
        if let Some(ip) = own_ip {
            text.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    text
}

/// The host's resolver configuration: systemd-resolved's upstream file when the stub
/// resolver is configured (its 127.0.0.53 is useless in a namespace).
fn host_resolv_conf() -> String {
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if resolv.contains("nameserver 127.0.0.53") {
        if let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            return upstream;
        }
    }
    resolv
}

/// The container's `/etc/resolv.conf` and, when the host only has loopback resolvers, the
/// address pasta must forward to them. Docker's rules: the host's file for the host network;
/// no nameserver for `none`; else the host's file without loopback nameservers (or Docker's
/// fallback servers when none is left).
pub(crate) fn resolv_conf(mode: NetworkMode) -> (String, Option<&'static str>) {
    let host = host_resolv_conf();
    match mode {
        NetworkMode::Host => (host, None),
        NetworkMode::None => (String::new(), None),
        NetworkMode::Default => {
            let is_loopback = |line: &str| {
                line.strip_prefix("nameserver")
                    .and_then(|rest| rest.trim().parse::<IpAddr>().ok())
                    .is_some_and(|ip| ip.is_loopback())
            };
            let had_loopback = host.lines().any(is_loopback);
            let mut text: String = host.lines().filter(|l| !is_loopback(l)).map(|l| format!("{l}\n")).collect();
            if text.lines().any(|l| l.starts_with("nameserver")) {
                return (text, None);
            }
            if had_loopback {
                text.push_str(&format!("nameserver {DNS_FORWARD}\n"));
                return (text, Some(DNS_FORWARD));
            }
            for server in FALLBACK_DNS {
                text.push_str(&format!("nameserver {server}\n"));
            }
            (text, None)
        }
    }
}

/// The address the container gets with the default network: pasta copies the host's address
/// on the interface of the default route. Found without sending anything (a UDP connect only
/// picks a source address).
pub(crate) fn default_route_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("8.8.8.8:53").ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

/// A running pasta serving one container's network namespace; killed (and waited for) on drop.
#[derive(Debug)]
pub(crate) struct NetworkStack {
    pid: i32,
    pidfd: OwnedFd,
    /// Whether it binds host ports: then the teardown waits until it is gone, so the ports
    /// are free when the container is. Without ports it is only killed: the kernel's release
    /// of its socket and pipe pools takes tens of milliseconds nobody needs to wait for.
    publishes: bool,
}

/// A network namespace held open as a file, with the user namespace that owns it when that
/// is not the host's (rootless).
#[derive(Debug)]
pub(crate) struct NamespaceFiles {
    pub net: File,
    pub user: Option<File>,
}

impl NamespaceFiles {
    /// Opens the network (and, with `user_namespace`, user) namespace of process `pid`.
    pub fn of_process(pid: i32, user_namespace: bool) -> Result<NamespaceFiles, RuntimeError> {
        let ns = |kind: &str| {
            let path = PathBuf::from(format!("/proc/{pid}/ns/{kind}"));
            File::open(&path).map_err(RuntimeError::io("opening namespace", path))
        };
        Ok(NamespaceFiles { net: ns("net")?, user: if user_namespace { Some(ns("user")?) } else { None } })
    }
}

/// What pasta needs to serve a container.
pub(crate) struct StackRequest<'a> {
    pub id: &'a str,
    /// The namespaces pasta serves (network) and joins first (user).
    pub namespaces: &'a NamespaceFiles,
    pub ports: &'a [PortMapping],
    pub dns_forward: Option<&'a str>,
    /// The container's state dir: pasta's pid file and log go there.
    pub dir: &'a Path,
}

impl NetworkStack {
    /// Starts pasta for `req.namespaces` and returns once the namespace is configured.
    pub fn start(req: &StackRequest<'_>) -> Result<NetworkStack, RuntimeError> {
        let failed = |reason: String| RuntimeError::Network { id: req.id.to_string(), reason };
        let (net, user) = (&req.namespaces.net, req.namespaces.user.as_ref());
        let pid_file = req.dir.join("pasta.pid");
        let log_path = req.dir.join("pasta.log");
        let log = File::create(&log_path).map_err(RuntimeError::io("creating", &log_path))?;
        let mut command = std::process::Command::new(PASTA);
        command.args(pasta_args(req, &pid_file, user.is_some()));
        command.stdin(std::process::Stdio::null()).stdout(log.try_clone().map_err(RuntimeError::io("dup", &log_path))?);
        command.stderr(log);
        let fds = [net.as_raw_fd(), user.as_ref().map_or(-1, |u| u.as_raw_fd())];
        use std::os::unix::process::CommandExt;
        // SAFETY: dup2 and fcntl are async-signal-safe; the fds are open in the parent.
        unsafe {
            command.pre_exec(move || {
                for (target, fd) in [(3, fds[0]), (4, fds[1])] {
                    if fd < 0 {
                        continue;
                    }
                    if fd == target {
                        // dup2 onto itself keeps close-on-exec: clear it.
                        libc::fcntl(fd, libc::F_SETFD, 0);
                    } else if libc::dup2(fd, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let status = command.status().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => failed(
                "the default network needs pasta (Debian/Ubuntu package passt); install it or use --network host"
                    .to_string(),
            ),
            _ => failed(format!("running pasta: {e}")),
        })?;
        let log_text = || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains("syslog")).collect();
            lines.join("; ")
        };
        if !status.success() {
            let mut reason = format!("pasta exited with {status}: {}", log_text());
            if reason.contains("tun") && user.is_some() {
                reason.push_str(" (rootless networking needs /dev/net/tun open to users, mode 0666)");
            }
            return Err(failed(reason));
        }
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .ok_or_else(|| failed(format!("pasta wrote no pid file: {}", log_text())))?;
        // SAFETY: pidfd_open returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(failed(format!("pasta (pid {pid}) is gone: {}", log_text())));
        }
        // SAFETY: fd is a fresh fd we own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(NetworkStack { pid, pidfd, publishes: !req.ports.is_empty() })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
}

/// pasta's arguments: configure the namespace on fds 3 (network) and 4 (user), forward
/// exactly the published ports, never the host's own ones, and keep the gateway the gateway.
fn pasta_args(req: &StackRequest<'_>, pid_file: &Path, with_userns: bool) -> Vec<String> {
    let mut args: Vec<String> = vec!["--config-net".into(), "--quiet".into(), "--no-map-gw".into()];
    if nix::unistd::geteuid().is_root() {
        // As root pasta switches to `nobody` before joining the namespaces, which then fails.
        args.extend(["--runas".into(), "0:0".into()]);
    }
    for (flag, protocol) in [("-t", Protocol::Tcp), ("-u", Protocol::Udp)] {
        let specs: Vec<String> =
            req.ports.iter().filter(|p| p.protocol == protocol).map(PortMapping::pasta_spec).collect();
        if specs.is_empty() {
            args.extend([flag.to_string(), "none".into()]);
        }
        for spec in specs {
            args.extend([flag.to_string(), spec]);
        }
    }
    args.extend(["-T".into(), "none".into(), "-U".into(), "none".into()]);
    if let Some(addr) = req.dns_forward {
        args.extend(["--dns-forward".into(), addr.to_string()]);
    }
    args.extend(["-P".into(), pid_file.display().to_string(), "--netns".into(), "/proc/self/fd/3".into()]);
    if with_userns {
        args.extend(["--userns".into(), "/proc/self/fd/4".into()]);
    }
    args
}

impl Drop for NetworkStack {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
        if !self.publishes {
            return;
        }
        // Wait (bounded) until it is gone, so its ports are free when the container is.
        let mut poll = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&self.pidfd), nix::poll::PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(Duration::from_secs(2).as_millis() as u16));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_entries_parse_like_docker() {
        let e = HostEntry::parse("db:10.0.0.5").expect("parse");
        assert_eq!((e.name.as_str(), e.ip.to_string().as_str()), ("db", "10.0.0.5"));
        let v6 = HostEntry::parse("v6:[::1]").expect("parse");
        assert_eq!(v6.ip.to_string(), "::1");
        assert_eq!(HostEntry::parse("plain=::2").expect("parse").ip.to_string(), "::2");
        assert!(HostEntry::parse("nohost").unwrap_err().contains("expected NAME:IP"));
        assert!(HostEntry::parse("x:notanip").unwrap_err().contains("invalid IP address"));
    }

    #[test]
    fn hosts_file_reads_as_docker_writes_it() {
        let extra = [HostEntry { name: "db".into(), ip: "10.0.0.5".parse().expect("ip") }];
        let text = hosts_file(NetworkMode::Default, "abc123", &extra, "192.0.2.2".parse().ok());
        assert!(text.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(text.ends_with("10.0.0.5\tdb\n192.0.2.2\tabc123\n"), "{text}");
        let none = hosts_file(NetworkMode::None, "abc123", &[], None);
        assert!(!none.contains("abc123"));
    }

    #[test]
    fn pasta_forwards_only_the_published_ports() {
        let ports = [
            PortMapping {
                host_ip: "127.0.0.1".parse().ok(),
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
            },
            PortMapping { host_ip: None, host_port: 5353, container_port: 53, protocol: Protocol::Udp },
        ];
        let namespaces = NamespaceFiles { net: File::open("/dev/null").expect("open"), user: None };
        let req =
            StackRequest { id: "c", namespaces: &namespaces, ports: &ports, dns_forward: None, dir: Path::new("/x") };
        let args = pasta_args(&req, Path::new("/x/pasta.pid"), false).join(" ");
        assert!(args.contains("-t 127.0.0.1/8080:80 -u 5353:53 -T none -U none"), "{args}");
        assert!(args.contains("--no-map-gw"));
        assert!(!args.contains("--userns"));
        let none = pasta_args(&StackRequest { ports: &[], ..req }, Path::new("/p"), true).join(" ");
        assert!(none.contains("-t none -u none -T none -U none") && none.ends_with("--userns /proc/self/fd/4"));
    }
}
