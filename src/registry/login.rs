//! `login` and `logout`: credentials are checked against the registry's `/v2/` (token or basic
//! auth, as the registry asks) before [`super::auth`] stores them where docker does; `logout`
//! erases them.

use super::auth::{erase_credentials, store_credentials, StoredIn};
use super::http::{BasicAuth, RegistryHttp};
use super::{RegistryError, RegistryOptions, Result};

/// The registry a `login`/`logout` SERVER names, as `host[:port]`: a scheme and a path are
/// dropped (`https://index.docker.io/v1/` is `docker.io`), no SERVER is Docker Hub.
pub fn server_registry(server: Option<&str>) -> Result<String> {
    let Some(server) = server.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok("docker.io".to_owned());
    };
    let bare = server.strip_prefix("https://").or_else(|| server.strip_prefix("http://")).unwrap_or(server);
    let host = bare.split('/').next().unwrap_or(bare).to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        && !host.starts_with(['-', '.', ':']);
    if !valid {
        return Err(RegistryError::Login {
            registry: server.to_owned(),
            reason: "not a registry address: expected HOST[:PORT] (e.g. registry.example.com:5000)".into(),
        });
    }
    Ok(match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host,
    })
}

/// Where a registry's API is served (Docker Hub's is not at `docker.io`).
fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// Checks `username`/`password` against `registry`'s `/v2/` and stores them.
pub fn login(registry: &str, username: &str, password: &str, opts: &RegistryOptions) -> Result<StoredIn> {
    let refuse = |reason: &str| RegistryError::Login { registry: registry.to_owned(), reason: reason.to_owned() };
    if username.is_empty() {
        return Err(refuse("a user name is required (-u USER)"));
    }
    if password.is_empty() {
        return Err(refuse("a password is required (-p PASSWORD or --password-stdin)"));
    }
    let auth = BasicAuth { username: username.to_owned(), password: password.to_owned() };
    let http = RegistryHttp::new(api_host(registry), opts, Some(auth))?;
    let answer = http.get("/v2/", None)?;
    match answer.status {
        200..=299 => {}
        401 | 403 => return Err(refuse("unauthorized: incorrect username or password")),
        status => {
            return Err(refuse(&format!(
                "{}/v2/ answered HTTP {status}: {}",
                http.base,
                String::from_utf8_lossy(&answer.body).trim()
            )))
        }
    }
    store_credentials(registry, username, password)
}

/// Erases what `login` stored for `registry`; whether there was anything.
pub fn logout(registry: &str) -> Result<bool> {
    erase_credentials(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_hosts() {
        assert_eq!(server_registry(None).unwrap(), "docker.io");
        assert_eq!(server_registry(Some("https://index.docker.io/v1/")).unwrap(), "docker.io");
        assert_eq!(server_registry(Some("https://127.0.0.1:5443/v2/")).unwrap(), "127.0.0.1:5443");
        assert_eq!(server_registry(Some("Registry.Example:5000")).unwrap(), "registry.example:5000");
        let err = server_registry(Some("bad host")).unwrap_err().to_string();
        assert!(err.contains("not a registry address"), "{err}");
    }
}
