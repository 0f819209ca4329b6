//! SSH agent forwarding: `rbuild build --ssh default|ID[=SOCKET]` and `RUN --mount=type=ssh`.
//!
//! The RUN step sees a socket (default `/run/buildkit/ssh_agent.<N>`, mode 0600, owned by the
//! mount's `uid`/`gid`) that forwards every connection to the agent's socket on the host, as
//! BuildKit does. The step never sees the host socket itself (whose owner and mode are the
//! host user's), nor any key: only listing the keys and signing with them cross (as buildx's
//! read-only agent, adding, removing and locking keys are refused). Nothing of it enters a
//! cache key or a layer. buildx also takes private key files and loads them into an agent of its own;
//! rbuild takes agent sockets only and says so.

use std::io::{self, Read, Write};
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

    /// Every `--ssh`, parsed; an id given twice is refused (as buildx refuses it).
    pub fn parse_all(specs: &[String]) -> Result<Vec<Self>, SshError> {
        let mut agents: Vec<SshAgent> = Vec::with_capacity(specs.len());
        for spec in specs {
            let agent = SshAgent::parse(spec)?;
            if agents.iter().any(|a| a.id == agent.id) {
                return Err(SshError::Invalid {
                    spec: spec.clone(),
                    reason: format!("the agent id {} is given twice", agent.id),
                });
            }
            agents.push(agent);
        }
        Ok(agents)
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

/// A socket at `path` forwarding each connection to an agent, until dropped, with only the
/// requests a build may make ([`ALLOWED_REQUESTS`]). It accepts on a thread of its own; each
/// connection is served by one more, which ends when either side closes.
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

/// The agent requests a build step may make: list the keys (`SSH_AGENTC_REQUEST_IDENTITIES`)
/// and sign with one (`SSH_AGENTC_SIGN_REQUEST`), as buildx's read-only agent allows. Adding,
/// removing and locking keys, smartcards and extensions are refused: a Dockerfile from a pull
/// request must not empty or lock the agent of whoever builds it.
const ALLOWED_REQUESTS: [u8; 2] = [11, 13];

/// The reply to a refused request (`SSH_AGENT_FAILURE`), framed.
const FAILURE_REPLY: [u8; 5] = [0, 0, 0, 1, 5];

/// The longest agent message taken (OpenSSH's own limit, `AGENT_MAX_LEN`).
const MAX_AGENT_MESSAGE: usize = 256 * 1024;

/// One framed agent message (4-byte big-endian length, then the message), length included;
/// `None` at a clean end of input. A message over [`MAX_AGENT_MESSAGE`] is an error.
fn read_agent_message(from: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match from.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_AGENT_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("agent message of {n} bytes")));
    }
    let mut message = vec![0u8; 4 + n];
    message[..4].copy_from_slice(&len);
    from.read_exact(&mut message[4..])?;
    Ok(Some(message))
}

/// Serves one client of the proxy on a thread of its own: each request is read whole; an
/// allowed one goes to the agent and the agent's one reply comes back, any other is answered
/// with a failure without reaching the agent. One request at a time, as agent clients ask.
fn forward(client: UnixStream, agent: UnixStream) {
    let relay = move || -> io::Result<()> {
        let (mut client, mut agent) = (client, agent);
        while let Some(request) = read_agent_message(&mut client)? {
            if request.get(4).is_some_and(|kind| ALLOWED_REQUESTS.contains(kind)) {
                agent.write_all(&request)?;
                let reply = read_agent_message(&mut agent)?.ok_or(io::ErrorKind::UnexpectedEof)?;
                client.write_all(&reply)?;
            } else {
                client.write_all(&FAILURE_REPLY)?;
            }
        }
        Ok(())
    };
    let _ = std::thread::Builder::new().name("ssh-agent-relay".into()).spawn(move || {
        if let Err(e) = relay() {
            tracing::debug!("an ssh agent connection ended: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn an_id_given_twice_is_refused() {
        let specs = ["a=/run/x.sock".to_string(), "b=/run/y.sock".to_string(), "a=/run/z.sock".to_string()];
        let err = SshAgent::parse_all(&specs).expect_err("twice");
        assert!(err.to_string().contains("the agent id a is given twice"), "{err}");
        assert_eq!(SshAgent::parse_all(&specs[..2]).expect("distinct").len(), 2);
    }

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
    fn the_proxy_passes_listing_and_signing_only_with_its_own_mode_and_goes_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A stand-in agent: answers each request `[kind, body..]` with `[kind + 1, body..]`
        // and reports the kinds it was asked.
        let agent_path = dir.path().join("agent.sock");
        let agent = UnixListener::bind(&agent_path).expect("bind");
        let (asked_tx, asked) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in agent.incoming().flatten() {
                let mut conn = conn;
                while let Ok(Some(mut message)) = read_agent_message(&mut conn) {
                    let _ = asked_tx.send(message[4]);
                    message[4] += 1;
                    let _ = conn.write_all(&message);
                }
            }
        });
        let proxy_path = dir.path().join("proxy.sock");
        // SAFETY: getuid and getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let proxy = AgentProxy::start(&agent_path, &proxy_path, 0o600, uid, gid).expect("proxy");
        let mode = std::fs::metadata(proxy.path()).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let ask = |client: &mut UnixStream, message: &[u8]| {
            client.write_all(&(message.len() as u32).to_be_bytes()).expect("write");
            client.write_all(message).expect("write");
            read_agent_message(client).expect("read").expect("a reply")[4..].to_vec()
        };
        for _ in 0..2 {
            let mut client = UnixStream::connect(&proxy_path).expect("connect");
            assert_eq!(ask(&mut client, &[11]), [12], "listing keys reaches the agent");
            assert_eq!(ask(&mut client, &[13, 1, 2, 3]), [14, 1, 2, 3], "signing reaches the agent");
            // Remove all, lock, add, an extension: refused here, never seen by the agent.
            for refused in [[19u8].as_slice(), &[22, 0, 0, 0, 1, b'p'], &[17, 9], &[27], &[]] {
                assert_eq!(ask(&mut client, refused), [5], "{refused:?} is answered SSH_AGENT_FAILURE");
            }
            assert_eq!(ask(&mut client, &[11]), [12]);
        }
        assert_eq!(asked.try_iter().collect::<Vec<_>>(), [11, 13, 11, 11, 13, 11]);
        // A message over OpenSSH's limit ends the connection.
        let mut client = UnixStream::connect(&proxy_path).expect("connect");
        client.write_all(&(1u32 << 20).to_be_bytes()).expect("write");
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).expect("read"), 0, "closed without a reply");
        drop(proxy);
        assert!(!proxy_path.exists(), "the socket is removed with the proxy");
    }
}
