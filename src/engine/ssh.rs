//! SSH agent forwarding: `rbuild build --ssh default|ID[=SOCKET]` and `RUN --mount=type=ssh`.
//!
//! The RUN step sees a socket (default `/run/buildkit/ssh_agent.<N>`, mode 0600, owned by the
//! mount's `uid`/`gid`) that forwards every connection to the agent's socket on the host, as
//! BuildKit does. The step never sees the host socket itself (whose owner and mode are the
//! host user's), nor any key: only the agent protocol crosses. Nothing of it enters a cache key
//! or a layer. buildx also takes private key files and loads them into an agent of its own;
//! rbuild takes agent sockets only and says so.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One `--ssh`: an id and the agent socket it forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAgent {
    pub id: String,
    pub socket: PathBuf,
}

/// A `--ssh` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("invalid --ssh {spec:?}: {reason}")]
    Invalid { spec: String, reason: String },
    #[error("--ssh {id}: no agent socket given and SSH_AUTH_SOCK is not set")]
    NoAgent { id: String },
    #[error("--ssh {id}: {path}: {source}")]
    Unusable { id: String, path: PathBuf, source: io::Error },
    #[error(
        "--ssh {id}: {path} is not an agent socket (rbuild forwards ssh agents only: add the key with ssh-add and pass the agent's socket)"
    )]
    NotASocket { id: String, path: PathBuf },
}

impl SshAgent {
    /// Parses `ID[=SOCKET]` as `docker buildx build --ssh` does; without a socket, the agent
    /// is `$SSH_AUTH_SOCK`. Several comma-separated paths (key files) are refused.
    pub fn parse(spec: &str) -> Result<Self, SshError> {
        let invalid = |reason: &str| SshError::Invalid { spec: spec.to_string(), reason: reason.to_string() };
        let (id, path) = match spec.split_once('=') {
            Some((id, path)) => (id.trim(), Some(path.trim())),
            None => (spec.trim(), None),
        };
        if id.is_empty() || id.contains(',') {
            return Err(invalid("expected ID or ID=SOCKET"));
        }
        let socket = match path {
            Some(p) if p.contains(',') => return Err(invalid("one agent socket per id (key files are not supported)")),
            Some("") => return Err(invalid("empty socket path")),
            Some(p) => PathBuf::from(p),
            None => std::env::var_os("SSH_AUTH_SOCK")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .ok_or_else(|| SshError::NoAgent { id: id.to_string() })?,
        };
        Ok(SshAgent { id: id.to_string(), socket })
    }

    /// Checks the socket is there and is a socket, before the build starts.
    pub fn check(&self) -> Result<(), SshError> {
        let meta = std::fs::metadata(&self.socket).map_err(|source| SshError::Unusable {
            id: self.id.clone(),
            path: self.socket.clone(),
            source,
        })?;
        if !meta.file_type().is_socket() {
            return Err(SshError::NotASocket { id: self.id.clone(), path: self.socket.clone() });
        }
        Ok(())
    }
}

/// A socket at `path` forwarding each connection to an agent, until dropped. It accepts on a
/// thread of its own; each connection is copied both ways by two more, which end when either
/// side closes.
pub struct AgentProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl AgentProxy {
    /// Listens at `path` (which must not exist) with `mode` and owner `uid:gid`, forwarding to
    /// the agent socket `agent`.
    pub fn start(agent: &Path, path: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<Self> {
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (agent, flag) = (agent.to_path_buf(), Arc::clone(&stop));
        let accept = std::thread::Builder::new().name("ssh-agent-proxy".into()).spawn(move || {
            for client in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                match UnixStream::connect(&agent) {
                    Ok(upstream) => forward(client, upstream),
                    Err(e) => tracing::warn!(agent = %agent.display(), error = %e, "ssh agent unreachable"),
                }
            }
        })?;
        Ok(AgentProxy { path: path.to_path_buf(), stop, accept: Some(accept) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for AgentProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentProxy").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that the thread sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.accept.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies `a` to `b` and `b` to `a` on two threads; a side's end of input shuts the other's
/// writing half, so both threads finish when the conversation does.
fn forward(a: UnixStream, b: UnixStream) {
    let pipe = |from: UnixStream, to: UnixStream| {
        move || {
            let (mut from, mut to) = (from, to);
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        }
    };
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { return };
    let _ = std::thread::Builder::new().name("ssh-agent-copy".into()).spawn(pipe(a, b2));
    let _ = std::thread::Builder::new().name("ssh-agent-copy".into()).spawn(pipe(b, a2));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn parses_buildx_forms() {
        let a = SshAgent::parse("default=/run/agent.sock").expect("parse");
        assert_eq!((a.id.as_str(), a.socket.as_path()), ("default", Path::new("/run/agent.sock")));
        assert!(SshAgent::parse("default=/k1,/k2").is_err(), "key files are refused");
        assert!(SshAgent::parse("=/x").is_err());
        assert!(SshAgent::parse("a=").is_err());
    }

    #[test]
    fn a_file_is_not_an_agent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("id_ed25519");
        std::fs::write(&file, b"key").expect("write");
        let err = SshAgent { id: "default".into(), socket: file }.check().expect_err("a file");
        assert!(err.to_string().contains("not an agent socket"), "{err}");
        let missing = SshAgent { id: "x".into(), socket: dir.path().join("nope") }.check().expect_err("missing");
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    #[test]
    fn the_proxy_forwards_both_ways_with_its_own_mode_and_goes_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A stand-in agent that answers each request with its bytes reversed.
        let agent_path = dir.path().join("agent.sock");
        let agent = UnixListener::bind(&agent_path).expect("bind");
        std::thread::spawn(move || {
            for conn in agent.incoming().flatten() {
                let mut conn = conn;
                let mut buf = [0u8; 5];
                if conn.read_exact(&mut buf).is_ok() {
                    buf.reverse();
                    let _ = conn.write_all(&buf);
                }
            }
        });
        let proxy_path = dir.path().join("proxy.sock");
        // SAFETY: getuid and getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let proxy = AgentProxy::start(&agent_path, &proxy_path, 0o600, uid, gid).expect("proxy");
        let mode = std::fs::metadata(proxy.path()).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        for _ in 0..2 {
            let mut client = UnixStream::connect(&proxy_path).expect("connect");
            client.write_all(b"hello").expect("write");
            let mut answer = [0u8; 5];
            client.read_exact(&mut answer).expect("read");
            assert_eq!(&answer, b"olleh");
        }
        drop(proxy);
        assert!(!proxy_path.exists(), "the socket is removed with the proxy");
    }
}
