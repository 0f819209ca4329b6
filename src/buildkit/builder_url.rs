//! `--builder URL`: which BuildKit solves the build and how rbuild reaches it.
//!
//! - `docker://[SOCKET]` — the BuildKit embedded in dockerd (default socket
//!   `/var/run/docker.sock`), its control API at the upgraded `/grpc`; the session goes over
//!   dockerd's `/session` upgrade, or with `?session=control` over the control API's `Session`
//!   stream as buildkitd takes it.
//! - `unix:///PATH` — buildkitd's unix socket (`/run/buildkit/buildkitd.sock`).
//! - `tcp://HOST:PORT` — buildkitd on TCP; TLS as buildx's remote driver takes it, as URL
//!   parameters: `?cacert=CA.pem&cert=CERT.pem&key=KEY.pem&servername=NAME` (any of them turns
//!   TLS on; `cert` and `key` go together).

use std::path::PathBuf;

use super::BuildkitError;

/// Where `--builder` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuilderUrl {
    /// `docker://[SOCKET]`: dockerd's embedded BuildKit.
    Docker { socket: PathBuf, session: SessionTransport },
    /// `unix://` or `tcp://`: a buildkitd.
    Buildkitd { endpoint: Endpoint, tls: Option<TlsFiles> },
}

/// How the client's session reaches BuildKit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTransport {
    /// dockerd's `/session` endpoint, upgraded to h2c (what the docker CLI does).
    DockerdUpgrade,
    /// The control API's `Session` stream, the session's HTTP/2 tunnelled in its messages
    /// (what buildctl and buildx do with buildkitd).
    ControlStream,
}

/// A buildkitd's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

/// TLS for a `tcp://` buildkitd (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
}

impl BuilderUrl {
    /// Reads `docker://[SOCKET][?session=upgrade|control]`, `unix:///PATH`,
    /// `tcp://HOST:PORT[?cacert=…&cert=…&key=…&servername=…]`.
    pub fn parse(text: &str) -> Result<BuilderUrl, BuildkitError> {
        let bad = |reason: &str| BuildkitError::BadUrl { url: text.to_string(), reason: reason.to_string() };
        let url = url::Url::parse(text)
            .map_err(|e| bad(&format!("{e} (expected docker://[SOCKET], unix:///PATH or tcp://HOST:PORT)")))?;
        let params: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        match url.scheme() {
            "docker" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad("a docker:// builder is a local socket path (docker:///PATH), not a host"));
                }
                let mut session = SessionTransport::DockerdUpgrade;
                for (key, value) in &params {
                    session = match (key.as_str(), value.as_str()) {
                        ("session", "upgrade") => SessionTransport::DockerdUpgrade,
                        ("session", "control") => SessionTransport::ControlStream,
                        _ => {
                            return Err(bad(&format!(
                                "unknown parameter {key}={value} (docker:// takes session=upgrade|control)"
                            )))
                        }
                    };
                }
                Ok(BuilderUrl::Docker { socket: super::dockerd::socket_path(url.path()), session })
            }
            "unix" => {
                if !params.is_empty() {
                    return Err(bad("unix:// takes no parameters (TLS is for tcp://)"));
                }
                if url.host_str().is_some_and(|h| !h.is_empty()) || url.path().len() < 2 {
                    return Err(bad("expected unix:///PATH (an absolute socket path)"));
                }
                Ok(BuilderUrl::Buildkitd { endpoint: Endpoint::Unix(PathBuf::from(url.path())), tls: None })
            }
            "tcp" => {
                let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("expected tcp://HOST:PORT"))?;
                let port = url.port().ok_or_else(|| bad("expected tcp://HOST:PORT: the port is missing"))?;
                if !matches!(url.path(), "" | "/") {
                    return Err(bad("expected tcp://HOST:PORT, with no path"));
                }
                Ok(BuilderUrl::Buildkitd {
                    endpoint: Endpoint::Tcp(format!("{host}:{port}")),
                    tls: tls_files(&params).map_err(|r| bad(&r))?,
                })
            }
            other => Err(bad(&format!("unknown scheme {other}:// (expected docker://, unix:// or tcp://)"))),
        }
    }
}

/// The TLS parameters of a `tcp://` URL, if any.
fn tls_files(params: &[(String, String)]) -> Result<Option<TlsFiles>, String> {
    let mut tls = TlsFiles::default();
    for (key, value) in params {
        if value.is_empty() {
            return Err(format!("{key}= needs a value"));
        }
        match key.as_str() {
            "cacert" => tls.ca = Some(PathBuf::from(value)),
            "cert" => tls.cert = Some(PathBuf::from(value)),
            "key" => tls.key = Some(PathBuf::from(value)),
            "servername" => tls.server_name = Some(value.clone()),
            _ => return Err(format!("unknown parameter {key} (tcp:// takes cacert, cert, key, servername)")),
        }
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err("cert= and key= go together (the client's certificate and its key)".to_string());
    }
    Ok((tls != TlsFiles::default()).then_some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> BuilderUrl {
        BuilderUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn error(text: &str) -> String {
        BuilderUrl::parse(text).expect_err(text).to_string()
    }

    #[test]
    fn docker_urls_name_a_socket_and_the_session_transport() {
        let docker = |socket: &str, session| BuilderUrl::Docker { socket: PathBuf::from(socket), session };
        assert_eq!(parse("docker://"), docker("/var/run/docker.sock", SessionTransport::DockerdUpgrade));
        assert_eq!(parse("docker:///run/d.sock"), docker("/run/d.sock", SessionTransport::DockerdUpgrade));
        assert_eq!(parse("docker://?session=control"), docker("/var/run/docker.sock", SessionTransport::ControlStream));
        assert!(error("docker://?session=other").contains("session=upgrade|control"));
        assert!(error("docker://host/x").contains("not a host"));
    }

    #[test]
    fn buildkitd_urls_take_a_socket_or_a_host_and_tls_files() {
        assert_eq!(
            parse("unix:///run/buildkit/buildkitd.sock"),
            BuilderUrl::Buildkitd { endpoint: Endpoint::Unix("/run/buildkit/buildkitd.sock".into()), tls: None }
        );
        assert_eq!(
            parse("tcp://10.0.0.2:1234"),
            BuilderUrl::Buildkitd { endpoint: Endpoint::Tcp("10.0.0.2:1234".into()), tls: None }
        );
        let tls = TlsFiles {
            ca: Some("/c/ca.pem".into()),
            cert: Some("/c/cert.pem".into()),
            key: Some("/c/key.pem".into()),
            server_name: Some("bk".into()),
        };
        assert_eq!(
            parse("tcp://bk.example:1234?cacert=/c/ca.pem&cert=/c/cert.pem&key=/c/key.pem&servername=bk"),
            BuilderUrl::Buildkitd { endpoint: Endpoint::Tcp("bk.example:1234".into()), tls: Some(tls) }
        );
        assert!(error("tcp://bk:1234?cert=/c.pem").contains("go together"));
        assert!(error("tcp://bk:1234?ca=/c.pem").contains("unknown parameter ca"));
        assert!(error("tcp://bk").contains("port is missing"));
        assert!(error("unix://relative").contains("unix:///PATH"));
        assert!(error("unix:///s?cacert=x").contains("no parameters"));
        assert!(error("ftp://x").contains("unknown scheme ftp://"));
        assert!(error("nonsense").contains("expected docker://"));
    }
}
