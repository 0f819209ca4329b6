//! Talking to dockerd over its unix socket: the HTTP/1.1 upgrades to h2c that expose the
//! embedded BuildKit's control API (`/grpc`) and carry the client's session (`/session`), as
//! buildx's docker driver does, and the image calls a solve needs around it (`GET
//! /images/{name}/json` for where overlay2 keeps its layers, `GET /images/{name}/get`,
//! `DELETE /images/{name}`).

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::BuildkitError;

/// The longest HTTP response head read before the upgraded stream or body.
const MAX_HEAD: usize = 64 * 1024;

/// dockerd's socket for a `docker://[PATH]` builder.
pub fn socket_path(rest: &str) -> PathBuf {
    if rest.is_empty() || rest == "/" {
        PathBuf::from("/var/run/docker.sock")
    } else {
        PathBuf::from(rest)
    }
}

/// Sends `method path` with `headers` and returns the stream after the response head, with
/// the status code. The head is read byte by byte so that nothing of what follows it (the
/// upgraded protocol, the body) is consumed.
async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    version: &str,
    headers: &[(String, String)],
) -> Result<(u16, UnixStream), BuildkitError> {
    let io =
        |e: std::io::Error| BuildkitError::Connect { endpoint: socket.display().to_string(), error: e.to_string() };
    let mut stream = UnixStream::connect(socket).await.map_err(io)?;
    let mut head = format!("{method} {path} {version}\r\nHost: docker\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        if response.len() > MAX_HEAD || stream.read(&mut byte).await.map_err(io)? == 0 {
            return Err(BuildkitError::Protocol(format!("{method} {path}: dockerd closed before a full response")));
        }
        response.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
    Ok((status, stream))
}

/// Upgrades `POST path` to h2c with `headers`; the stream then speaks HTTP/2.
pub async fn upgrade(socket: &Path, path: &str, headers: &[(String, String)]) -> Result<UnixStream, BuildkitError> {
    let mut all = vec![
        ("Upgrade".to_string(), "h2c".to_string()),
        ("Connection".to_string(), "Upgrade".to_string()),
        ("Content-Length".to_string(), "0".to_string()),
    ];
    all.extend_from_slice(headers);
    let (status, stream) = request(socket, "POST", path, "HTTP/1.1", &all).await?;
    if status != 101 {
        return Err(BuildkitError::Protocol(format!(
            "dockerd answered {status} to the upgrade of {path}: its BuildKit API is not available (dockerd 18.09 or later with BuildKit is needed)"
        )));
    }
    Ok(stream)
}

/// `docker save NAME`: the docker archive's bytes, as a blocking stream to read to its end.
pub async fn save(socket: &Path, name: &str) -> Result<std::os::unix::net::UnixStream, BuildkitError> {
    // HTTP/1.0: the body is the rest of the stream, never chunked.
    let path = format!("/images/{}/get", percent_encode(name));
    let (status, stream) = request(socket, "GET", &path, "HTTP/1.0", &[]).await?;
    if status != 200 {
        return Err(BuildkitError::Protocol(format!("dockerd answered {status} to saving {name}")));
    }
    // Read with blocking calls and large buffers straight into the store's loader: no copy on
    // disk, no trip through the async runtime per chunk.
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// The layers of image `name` where dockerd's overlay2 driver keeps them: per layer, bottom
/// first, its diff ID and its diff directory (an overlay upper dir: whiteouts as 0/0 devices,
/// opaque dirs as xattrs), from `GraphDriver.Data` of `GET /images/{name}/json`. `None` when
/// dockerd uses another driver, the directories cannot be read from here (dockerd on
/// another host or in another mount namespace, rbuild not root), or the daemon runs as
/// neither root nor rbuild's user.
pub async fn image_layer_dirs(socket: &Path, name: &str) -> Result<Option<Vec<(String, PathBuf)>>, BuildkitError> {
    let path = format!("/images/{}/json", percent_encode(name));
    let (status, mut stream) = request(socket, "GET", &path, "HTTP/1.0", &[]).await?;
    if status != 200 {
        return Err(BuildkitError::Protocol(format!("dockerd answered {status} to inspecting {name}")));
    }
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await?;
    let inspect: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| BuildkitError::Protocol(format!("dockerd's inspection of {name} is not JSON: {e}")))?;
    let driver = &inspect["GraphDriver"];
    let Some(upper) = driver["Data"]["UpperDir"].as_str().filter(|_| driver["Name"] == "overlay2") else {
        return Ok(None);
    };
    // LowerDir lists the lower layers top-most first.
    let mut dirs: Vec<PathBuf> = driver["Data"]["LowerDir"]
        .as_str()
        .map(|l| l.split(':').rev().map(PathBuf::from).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from(upper));
    let diff_ids: Vec<String> = inspect["RootFS"]["Layers"]
        .as_array()
        .map(|layers| layers.iter().filter_map(|l| l.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if diff_ids.len() != dirs.len() || !dirs.iter().all(|d| std::fs::read_dir(d).is_ok()) {
        return Ok(None);
    }
    if !serves_as_root_or_us(socket) {
        return Ok(None);
    }
    Ok(Some(diff_ids.into_iter().zip(dirs).collect()))
}

/// Whether the process serving `socket` runs as root or as this process's own user: only
/// then are the host directories it names read (with rbuild's privileges, which may be
/// root's). Anyone else listening on a `--builder docker://SOCKET` path could otherwise have
/// root's rbuild copy any host directory into the image; such a daemon's image is saved
/// through its API instead.
fn serves_as_root_or_us(socket: &Path) -> bool {
    let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) else { return false };
    let Ok(peer) = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials) else {
        return false;
    };
    peer.uid() == 0 || peer.uid() == nix::unistd::geteuid().as_raw()
}

/// `docker rmi NAME` (the temporary tag a solve exported to).
pub async fn remove_image(socket: &Path, name: &str) -> Result<(), BuildkitError> {
    let path = format!("/images/{}", percent_encode(name));
    let (status, _) = request(socket, "DELETE", &path, "HTTP/1.0", &[]).await?;
    match status {
        200 | 404 => Ok(()),
        other => Err(BuildkitError::Protocol(format!("dockerd answered {other} to removing {name}"))),
    }
}

/// Escapes what a URL path segment cannot hold (`/` and `:` stay, as docker's client sends them).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket of this process's user is trusted; one served by another (non-root) user is
    /// not (checked as root, which can become that user; CI runs as root).
    #[test]
    fn only_a_daemon_of_root_or_our_user_names_directories_to_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = dir.path().join("ours.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&ours).expect("bind");
        assert!(serves_as_root_or_us(&ours));
        assert!(!serves_as_root_or_us(&dir.path().join("missing.sock")));
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("CI").is_none(), "CI runs this test as root");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let theirs = dir.path().join("theirs.sock");
        // A child that becomes `nobody` and listens on `theirs`: only async-signal-safe calls
        // after the fork, the address made before it.
        // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (to, from) in addr.sun_path.iter_mut().zip(theirs.as_os_str().as_encoded_bytes()) {
            *to = *from as libc::c_char;
        }
        // SAFETY: the child only makes raw syscalls on data prepared above, then pauses or exits.
        let child = match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => unsafe {
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    libc::_exit(1);
                }
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                if libc::bind(fd, (&raw const addr).cast(), len) != 0 || libc::listen(fd, 4) != 0 {
                    libc::_exit(2);
                }
                loop {
                    libc::pause();
                }
            },
            nix::unistd::ForkResult::Parent { child } => child,
        };
        for _ in 0..200 {
            if theirs.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let trusted = serves_as_root_or_us(&theirs);
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        assert!(theirs.exists(), "the other user's socket was made");
        assert!(!trusted, "a daemon of another user names no directory rbuild reads");
    }
}
