//! Registry credentials, found where podman and docker keep them. Files are searched in
//! podman's order and the first one with an entry for the host wins:
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`).
//! An entry is `auths.<host>` with `auth` = base64 `user:pass` (or `username`/`password`);
//! keys may carry a scheme or path (`https://index.docker.io/v1/`). Credential helpers
//! (`credsStore`, `credHelpers`) are not run.

use super::{RegistryError, Result};
use base64::Engine as _;
use std::path::PathBuf;

/// A user name and password for one registry, and the file they came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub source: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("source", &self.source).finish()
    }
}

/// The files searched, in order (those that exist or not).
pub fn auth_files() -> Vec<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut out = Vec::new();
    if let Some(p) = var("REGISTRY_AUTH_FILE") {
        out.push(p);
    }
    if let Some(x) = var("XDG_RUNTIME_DIR") {
        out.push(x.join("containers/auth.json"));
    }
    match var("DOCKER_CONFIG") {
        Some(d) => out.push(d.join("config.json")),
        None => {
            if let Some(h) = var("HOME") {
                out.push(h.join(".docker/config.json"));
            }
        }
    }
    out
}

/// The host part of an `auths` key: `https://index.docker.io/v1/` is `index.docker.io`.
fn key_host(key: &str) -> &str {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Names under which a registry's credentials may be stored.
fn aliases(registry: &str) -> Vec<&str> {
    if matches!(registry, "docker.io" | "index.docker.io" | "registry-1.docker.io") {
        vec!["docker.io", "index.docker.io", "registry-1.docker.io"]
    } else {
        vec![registry]
    }
}

/// Credentials for `registry` (`host[:port]`) from the first file that has them.
pub fn credentials_for(registry: &str) -> Result<Option<Credentials>> {
    for path in auth_files() {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(RegistryError::AuthFile { path, reason: e.to_string() }),
        };
        if let Some(c) = lookup(&bytes, registry, &path)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn lookup(bytes: &[u8], registry: &str, path: &std::path::Path) -> Result<Option<Credentials>> {
    let bad = |reason: String| RegistryError::AuthFile { path: path.to_path_buf(), reason };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let names = aliases(registry);
    // An exact key first, then one with a scheme or path.
    let entry = auths
        .iter()
        .find(|(k, _)| names.contains(&k.as_str()))
        .or_else(|| auths.iter().find(|(k, _)| names.contains(&key_host(k))));
    let Some((key, entry)) = entry else {
        return Ok(None);
    };
    let field = |name: &str| entry.get(name).and_then(|x| x.as_str()).filter(|s| !s.is_empty());
    if let Some(encoded) = field("auth") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| bad(format!("auths.{key:?}.auth is not base64: {e}")))?;
        let text = String::from_utf8(decoded).map_err(|_| bad(format!("auths.{key:?}.auth is not UTF-8")))?;
        let (user, pass) =
            text.split_once(':').ok_or_else(|| bad(format!("auths.{key:?}.auth is not base64 of user:password")))?;
        return Ok(Some(Credentials { username: user.to_owned(), password: pass.to_owned(), source: path.into() }));
    }
    match (field("username"), field("password")) {
        (Some(u), Some(p)) => {
            Ok(Some(Credentials { username: u.to_owned(), password: p.to_owned(), source: path.into() }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn finds_entries_by_host() {
        let file = br#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="},
            "https://index.docker.io/v1/":{"auth":"ZDpo"},
            "quay.io":{"username":"q","password":"w"}}}"#;
        let p = Path::new("config.json");
        let c = lookup(file, "127.0.0.1:5000", p).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pa:ss"));
        let c = lookup(file, "docker.io", p).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("d", "h"));
        assert_eq!(lookup(file, "quay.io", p).unwrap().unwrap().username, "q");
        assert!(lookup(file, "127.0.0.1:5001", p).unwrap().is_none());
        assert!(lookup(br#"{"auths":{"h":{"auth":"!!"}}}"#, "h", p).is_err());
        assert!(lookup(b"{}", "h", p).unwrap().is_none());
    }
}
