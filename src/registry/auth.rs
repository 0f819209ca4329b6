//! Registry credentials, found where podman and docker keep them. Files are searched in
//! podman's order and the first one with an entry for the host wins:
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`).
//! In a file, `credHelpers.<host>` names the credential helper for that registry, else
//! `credsStore` the one for all of them, as docker reads it: `docker-credential-<name> get` is
//! run with the server on stdin and answers `{"Username", "Secret"}` (a helper that has nothing
//! for the server sends the search on to the file's `auths`). An `auths.<host>` entry has
//! `auth` = base64 `user:pass` (or `username`/`password`); keys may carry a scheme or path
//! (`https://index.docker.io/v1/`).
//!
//! `login` and `logout` write where docker does ([`docker_config_file`]): through the credential
//! helper the file names for the server (`docker-credential-<name> store|erase`, the file then
//! keeps an empty `auths.<server>` entry, as docker leaves it), else `auths.<server>.auth`.

use super::{RegistryError, Result};
use base64::Engine as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

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

/// The file `login` and `logout` write, as docker: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn docker_config_file() -> Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    match (var("DOCKER_CONFIG"), var("HOME")) {
        (Some(d), _) => Ok(d.join("config.json")),
        (None, Some(h)) => Ok(h.join(".docker/config.json")),
        (None, None) => Err(RegistryError::AuthFile {
            path: "~/.docker/config.json".into(),
            reason: "neither DOCKER_CONFIG nor HOME is set".into(),
        }),
    }
}

/// Where `login` put the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredIn {
    /// `auths.<server>.auth` of this file.
    File(PathBuf),
    /// The credential helper `docker-credential-<name>`.
    Helper(String),
}

/// Reads a config file as a JSON object (`{}` when it does not exist).
fn read_config(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(serde_json::Map::new()),
        Err(e) => return Err(RegistryError::AuthFile { path: path.into(), reason: e.to_string() }),
    };
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(RegistryError::AuthFile { path: path.into(), reason: "not a JSON object".into() }),
        Err(e) => Err(RegistryError::AuthFile { path: path.into(), reason: format!("invalid JSON: {e}") }),
    }
}

/// Writes a config file readable by its owner only, whole or not at all (a temp file in its
/// directory, created mode 0600 by `tempfile`, renamed over it).
fn write_config(path: &Path, config: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    use std::io::Write;
    let failed = |e: &dyn std::fmt::Display| RegistryError::AuthFile { path: path.into(), reason: e.to_string() };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| failed(&e))?;
    let mut text = serde_json::to_vec_pretty(config).map_err(|e| failed(&e))?;
    text.push(b'\n');
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| failed(&e))?;
    temp.write_all(&text).and_then(|()| temp.as_file().sync_all()).map_err(|e| failed(&e))?;
    temp.persist(path).map_err(|e| failed(&e.error))?;
    Ok(())
}

/// The helper the config names for `registry`: `credHelpers.<server>`, else `credsStore`.
fn helper_for(config: &serde_json::Map<String, serde_json::Value>, registry: &str) -> Option<String> {
    let names = aliases(registry);
    let per_registry = config.get("credHelpers").and_then(|h| h.as_object()).and_then(|helpers| {
        helpers
            .iter()
            .find(|(k, _)| names.contains(&k.as_str()) || names.contains(&key_host(k)))
            .and_then(|(_, name)| name.as_str())
    });
    per_registry
        .or_else(|| config.get("credsStore").and_then(|s| s.as_str()))
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// Saves `username`/`password` for `registry` as `docker login` does, in the helper the
/// config names or as `auths.<server>.auth`.
pub fn store_credentials(registry: &str, username: &str, password: &str) -> Result<StoredIn> {
    let path = docker_config_file()?;
    let mut config = read_config(&path)?;
    let server = helper_server(registry);
    let helper = helper_for(&config, registry);
    let entry = match &helper {
        Some(name) => {
            let request = serde_json::json!({"ServerURL": server, "Username": username, "Secret": password});
            run_helper_action(name, "store", &request.to_string(), &path)?;
            serde_json::json!({})
        }
        None => {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            serde_json::json!({ "auth": auth })
        }
    };
    let auths = config.entry("auths").or_insert_with(|| serde_json::json!({}));
    let Some(auths) = auths.as_object_mut() else {
        return Err(RegistryError::AuthFile { path, reason: "\"auths\" is not an object".into() });
    };
    auths.insert(server, entry);
    write_config(&path, &config)?;
    Ok(helper.map_or(StoredIn::File(path), StoredIn::Helper))
}

/// Removes what `login` stored for `registry` (helper and `auths` entries, under any of the
/// server's names); whether there was anything.
pub fn erase_credentials(registry: &str) -> Result<bool> {
    let path = docker_config_file()?;
    let mut config = read_config(&path)?;
    let mut found = false;
    if let Some(name) = helper_for(&config, registry) {
        found |= run_helper_action(&name, "erase", &helper_server(registry), &path)?;
    }
    let names = aliases(registry);
    if let Some(auths) = config.get_mut("auths").and_then(|a| a.as_object_mut()) {
        let before = auths.len();
        auths.retain(|k, _| !names.contains(&k.as_str()) && !names.contains(&key_host(k)));
        if auths.len() != before {
            found = true;
            write_config(&path, &config)?;
        }
    }
    Ok(found)
}

/// `docker-credential-<name> store|erase` with `input` on stdin; `Ok(false)` when the helper
/// had nothing for the server.
fn run_helper_action(name: &str, action: &str, input: &str, config: &Path) -> Result<bool> {
    let program = PathBuf::from(format!("docker-credential-{name}"));
    Ok(helper_exchange(&program, action, input, config)?.is_some())
}

/// Runs `program action` with `input` on stdin: its stdout, or `None` when it answered the
/// helpers' own wording for "nothing stored for this server".
fn helper_exchange(program: &Path, action: &str, input: &str, config: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Write;
    let failed = |reason: String| RegistryError::AuthFile {
        path: config.to_path_buf(),
        reason: format!("credential helper {} {action}: {reason}", program.display()),
    };
    let mut child = std::process::Command::new(program)
        .arg(action)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(|e| failed(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        return Ok(Some(out.stdout));
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned() + String::from_utf8_lossy(&out.stderr).trim();
    if text.to_ascii_lowercase().contains("credentials not found") {
        return Ok(None);
    }
    Err(failed(format!("{} ({text})", out.status)))
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
        if let Some(c) = lookup(&bytes, registry, &path, &run_helper)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// What the server is called to a credential helper: docker's historical URL for Docker Hub,
/// the host for the others.
fn helper_server(registry: &str) -> String {
    if aliases(registry).len() > 1 {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

/// `docker-credential-<name> get`, with `server` on stdin, from `$PATH`.
fn run_helper(name: &str, server: &str, config: &std::path::Path) -> Result<Option<Credentials>> {
    run_helper_program(std::path::Path::new(&format!("docker-credential-{name}")), server, config)
}

fn run_helper_program(
    program: &std::path::Path,
    server: &str,
    config: &std::path::Path,
) -> Result<Option<Credentials>> {
    let failed = |reason: String| RegistryError::AuthFile {
        path: config.to_path_buf(),
        reason: format!("credential helper {}: {reason}", program.display()),
    };
    let Some(stdout) = helper_exchange(program, "get", server, config)? else {
        return Ok(None);
    };
    let answer: serde_json::Value =
        serde_json::from_slice(&stdout).map_err(|e| failed(format!("answered something not JSON: {e}")))?;
    let field = |name: &str| answer.get(name).and_then(|x| x.as_str()).filter(|s| !s.is_empty());
    match (field("Username"), field("Secret")) {
        // An identity token (OAuth refresh token) is not a password: rbuild cannot use it.
        (Some("<token>"), _) => Err(failed("answered an identity token, which rbuild cannot use".into())),
        (Some(u), Some(p)) => {
            Ok(Some(Credentials { username: u.to_owned(), password: p.to_owned(), source: config.into() }))
        }
        _ => Ok(None),
    }
}

/// Runs a credential helper: (helper name, server, config file) to what it has, if anything.
type HelperRunner<'a> = dyn Fn(&str, &str, &std::path::Path) -> Result<Option<Credentials>> + 'a;

fn lookup(
    bytes: &[u8],
    registry: &str,
    path: &std::path::Path,
    helper: &HelperRunner<'_>,
) -> Result<Option<Credentials>> {
    let bad = |reason: String| RegistryError::AuthFile { path: path.to_path_buf(), reason };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let names = aliases(registry);
    if let Some(name) = v.as_object().and_then(|config| helper_for(config, registry)) {
        if let Some(c) = helper(&name, &helper_server(registry), path)? {
            return Ok(Some(c));
        }
    }
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
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

    fn no_helper(name: &str, _: &str, _: &Path) -> Result<Option<Credentials>> {
        panic!("no helper should run, asked for {name}")
    }

    #[test]
    fn helpers_come_before_auths_per_registry_then_for_all() {
        let file = br#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"},"quay.io":{"auth":"cTp3"}},
            "credsStore":"desktop","credHelpers":{"gcr.io":"gcloud","https://index.docker.io/v1/":"hub"}}"#;
        let p = Path::new("config.json");
        let asked = std::cell::RefCell::new(Vec::new());
        let helper = |name: &str, server: &str, _: &Path| -> Result<Option<Credentials>> {
            asked.borrow_mut().push(format!("{name} {server}"));
            Ok((name != "desktop" || server == "127.0.0.1:5000").then(|| Credentials {
                username: name.to_owned(),
                password: "s".to_owned(),
                source: "config.json".into(),
            }))
        };
        assert_eq!(lookup(file, "gcr.io", p, &helper).unwrap().unwrap().username, "gcloud");
        assert_eq!(lookup(file, "docker.io", p, &helper).unwrap().unwrap().username, "hub");
        assert_eq!(lookup(file, "127.0.0.1:5000", p, &helper).unwrap().unwrap().username, "desktop");
        // The store has nothing for quay.io: the file's own entry answers.
        assert_eq!(lookup(file, "quay.io", p, &helper).unwrap().unwrap().username, "q");
        assert_eq!(
            *asked.borrow(),
            ["gcloud gcr.io", "hub https://index.docker.io/v1/", "desktop 127.0.0.1:5000", "desktop quay.io"]
        );
    }

    #[test]
    fn runs_a_helper_program() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker-credential-rbuildtest");
        let body = r#"#!/bin/sh
[ "$1" = get ] || exit 2
read server
case "$server" in
  reg.example) echo '{"ServerURL":"reg.example","Username":"u","Secret":"p"}' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#;
        std::fs::write(&script, body).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let config = Path::new("config.json");
        let c = run_helper_program(&script, "reg.example", config).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        assert!(run_helper_program(&script, "other.example", config).unwrap().is_none(), "not found: none");
        let missing = run_helper("rbuild-no-such-helper", "x", Path::new("/home/u/.docker/config.json")).unwrap_err();
        let text = missing.to_string();
        assert!(text.contains("docker-credential-rbuild-no-such-helper") && text.contains("config.json"), "{text}");
    }

    #[test]
    fn finds_entries_by_host() {
        let file = br#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="},
            "https://index.docker.io/v1/":{"auth":"ZDpo"},
            "quay.io":{"username":"q","password":"w"}}}"#;
        let p = Path::new("config.json");
        let c = lookup(file, "127.0.0.1:5000", p, &no_helper).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pa:ss"));
        let c = lookup(file, "docker.io", p, &no_helper).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("d", "h"));
        assert_eq!(lookup(file, "quay.io", p, &no_helper).unwrap().unwrap().username, "q");
        assert!(lookup(file, "127.0.0.1:5001", p, &no_helper).unwrap().is_none());
        assert!(lookup(br#"{"auths":{"h":{"auth":"!!"}}}"#, "h", p, &no_helper).is_err());
        assert!(lookup(b"{}", "h", p, &no_helper).unwrap().is_none());
    }
}
