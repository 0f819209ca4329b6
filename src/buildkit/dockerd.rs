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
/// dockerd uses another driver or the directories cannot be read from here (dockerd on
/// another host or in another mount namespace, rbuild not root).
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
    Ok(Some(diff_ids.into_iter().zip(dirs).collect()))
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
