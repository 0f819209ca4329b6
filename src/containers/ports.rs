//! Published ports of a container: `-p` as the user wrote it ([`PortBinding`]), the host ports
//! chosen when it starts ([`PortMapping`]), and how `port`, `ps` and `inspect` show them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::runtime::{PortMapping, Protocol};

/// One `-p [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]` (or a port `-P` published): the host port
/// is chosen at start when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortBinding {
    pub host_ip: Option<IpAddr>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// Why a `-p` value or a port argument is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct PortSyntaxError {
    pub what: &'static str,
    pub value: String,
    pub reason: String,
}

fn port_number(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) if text.contains('-') => Err(format!("port ranges ({text}) are not supported")),
        Ok(0) | Err(_) => Err(format!("invalid port {text:?}")),
        Ok(n) => Ok(n),
    }
}

/// `PORT[/PROTO]`, as EXPOSE and `rbuild port` write it.
pub fn parse_port_proto(text: &str, what: &'static str) -> Result<(u16, Protocol), PortSyntaxError> {
    let err = |reason: String| PortSyntaxError { what, value: text.to_string(), reason };
    let (port, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let protocol = Protocol::parse(&proto.to_ascii_lowercase())
        .ok_or_else(|| err(format!("unsupported protocol {proto:?} (tcp or udp)")))?;
    Ok((port_number(port).map_err(err)?, protocol))
}

impl PortBinding {
    /// Reads a `-p` value.
    pub fn parse(text: &str) -> Result<PortBinding, PortSyntaxError> {
        let err = |reason: String| PortSyntaxError { what: "-p", value: text.to_string(), reason };
        // A bracketed IPv6 address first: `[::1]:8080:80`.
        let (ip, rest) = match text.strip_prefix('[') {
            Some(after) => {
                let (ip, rest) = after.split_once("]:").ok_or_else(|| err("unclosed [ in the address".into()))?;
                (Some(ip), rest)
            }
            None => (None, text),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match (ip, parts.as_slice()) {
            (None, [c]) => (None, None, *c),
            (None, [h, c]) => (None, Some(*h), *c),
            (None, [i, h, c]) => (Some(*i), Some(*h), *c),
            (Some(i), [h, c]) => (Some(i), Some(*h), *c),
            _ => return Err(err("expected [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]".into())),
        };
        let (container_port, protocol) = parse_port_proto(container, "-p").map_err(|e| err(e.reason))?;
        let host_ip = match ip.filter(|i| !i.is_empty()) {
            Some(i) => Some(i.parse::<IpAddr>().map_err(|_| err(format!("invalid IP address {i:?}")))?),
            None => None,
        };
        let host_port = match host.filter(|h| !h.is_empty()) {
            Some(h) => Some(port_number(h).map_err(err)?),
            None => None,
        };
        Ok(PortBinding { host_ip: host_ip.filter(|ip| !ip.is_unspecified()), host_port, container_port, protocol })
    }

    /// The mapping with a host port: the given one, or a free one the kernel picks.
    pub fn resolve(&self) -> std::io::Result<PortMapping> {
        let host_port = match self.host_port {
            Some(port) => port,
            None => free_port(self.host_ip, self.protocol)?,
        };
        Ok(PortMapping {
            host_ip: self.host_ip,
            host_port,
            container_port: self.container_port,
            protocol: self.protocol,
        })
    }
}

/// A port the kernel considers free now (as Docker's port allocator does, from the
/// ephemeral range); pasta binds it right after.
fn free_port(ip: Option<IpAddr>, protocol: Protocol) -> std::io::Result<u16> {
    let ip = ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    Ok(match protocol {
        Protocol::Tcp => std::net::TcpListener::bind((ip, 0))?.local_addr()?.port(),
        Protocol::Udp => std::net::UdpSocket::bind((ip, 0))?.local_addr()?.port(),
    })
}

/// `80/tcp`, Docker's key for a container port.
pub fn port_key(port: u16, protocol: Protocol) -> String {
    format!("{port}/{}", protocol.as_str())
}

/// The host addresses a mapping is reachable on, as Docker prints them: its address, or
/// `0.0.0.0` and `[::]` when it is bound on every address.
pub fn host_addresses(m: &PortMapping) -> Vec<String> {
    match m.host_ip {
        Some(IpAddr::V6(ip)) => vec![format!("[{ip}]:{}", m.host_port)],
        Some(ip) => vec![format!("{ip}:{}", m.host_port)],
        None => vec![format!("0.0.0.0:{}", m.host_port), format!("[::]:{}", m.host_port)],
    }
}

/// `rbuild port` lines: `80/tcp -> 0.0.0.0:49153` for every mapping, or the addresses of one
/// container port.
pub fn port_lines(mappings: &[PortMapping], only: Option<(u16, Protocol)>) -> Vec<String> {
    let mut sorted = mappings.to_vec();
    sorted.sort_by_key(|m| (m.container_port, m.protocol, m.host_ip, m.host_port));
    let mut out = Vec::new();
    for m in &sorted {
        match only {
            Some((port, proto)) if (port, proto) != (m.container_port, m.protocol) => {}
            Some(_) => out.extend(host_addresses(m)),
            None => {
                let key = port_key(m.container_port, m.protocol);
                out.extend(host_addresses(m).into_iter().map(|a| format!("{key} -> {a}")));
            }
        }
    }
    out
}

/// The PORTS column of `ps`: published ports as `ADDR:HOST->PORT/PROTO`, exposed ones as
/// `PORT/PROTO`.
pub fn ps_column(mappings: &[PortMapping], exposed: &[(u16, Protocol)]) -> String {
    let mut parts = Vec::new();
    for m in mappings {
        let key = port_key(m.container_port, m.protocol);
        parts.extend(host_addresses(m).into_iter().map(|a| format!("{}->{key}", a.replace("[::]", "::"))));
    }
    for (port, proto) in exposed {
        if !mappings.iter().any(|m| (m.container_port, m.protocol) == (*port, *proto)) {
            parts.push(port_key(*port, *proto));
        }
    }
    parts.join(", ")
}

/// `NetworkSettings.Ports` of `inspect`: every exposed or published port, with its host
/// bindings (`null` for one only exposed).
pub fn inspect_ports(mappings: &[PortMapping], exposed: &[(u16, Protocol)]) -> serde_json::Value {
    let mut map: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (port, proto) in exposed {
        map.insert(port_key(*port, *proto), serde_json::Value::Null);
    }
    for m in mappings {
        let entry = map.entry(port_key(m.container_port, m.protocol)).or_insert_with(|| serde_json::json!([]));
        if entry.is_null() {
            *entry = serde_json::json!([]);
        }
        if let Some(list) = entry.as_array_mut() {
            let ips = match m.host_ip {
                Some(ip) => vec![ip.to_string()],
                None => vec!["0.0.0.0".to_string(), "::".to_string()],
            };
            for ip in ips {
                list.push(serde_json::json!({ "HostIp": ip, "HostPort": m.host_port.to_string() }));
            }
        }
    }
    serde_json::to_value(map).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &str) -> PortBinding {
        PortBinding::parse(text).expect("valid")
    }

    #[test]
    fn publish_values_parse_as_docker_reads_them() {
        assert_eq!(
            b("80"),
            PortBinding { host_ip: None, host_port: None, container_port: 80, protocol: Protocol::Tcp }
        );
        assert_eq!(b("8080:80").host_port, Some(8080));
        let local = b("127.0.0.1::80/udp");
        assert_eq!((local.host_ip, local.host_port, local.protocol), ("127.0.0.1".parse().ok(), None, Protocol::Udp));
        assert_eq!(b("[::1]:8080:80").host_ip, "::1".parse().ok());
        assert_eq!(b("0.0.0.0:8080:80").host_ip, None);
        for bad in ["", "x", "1:2:3:4", "80/sctp", "8000-8010:80", "999999", "nope:1:80"] {
            let e = PortBinding::parse(bad).expect_err(bad);
            assert!(e.to_string().starts_with(&format!("invalid -p {bad:?}")), "{e}");
        }
    }

    #[test]
    fn mappings_print_as_docker_port_ps_and_inspect_do() {
        let m = [
            PortMapping {
                host_ip: "127.0.0.1".parse().ok(),
                host_port: 49153,
                container_port: 80,
                protocol: Protocol::Tcp,
            },
            PortMapping { host_ip: None, host_port: 18080, container_port: 81, protocol: Protocol::Tcp },
        ];
        assert_eq!(port_lines(&m, Some((80, Protocol::Tcp))), ["127.0.0.1:49153"]);
        assert_eq!(
            port_lines(&m, None),
            ["80/tcp -> 127.0.0.1:49153", "81/tcp -> 0.0.0.0:18080", "81/tcp -> [::]:18080"]
        );
        assert_eq!(
            ps_column(&m, &[(80, Protocol::Tcp), (443, Protocol::Tcp)]),
            "127.0.0.1:49153->80/tcp, 0.0.0.0:18080->81/tcp, :::18080->81/tcp, 443/tcp"
        );
        let ports = inspect_ports(&m[..1], &[(80, Protocol::Tcp), (443, Protocol::Tcp)]);
        assert_eq!(
            ports,
            serde_json::json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}], "443/tcp": null})
        );
    }
}
