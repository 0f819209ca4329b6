//! Extra certificate authorities per registry, found as Docker and podman keep them: every
//! `*.crt` file (PEM) in `<dir>/<host[:port]>/`, where `<dir>` is `--cert-dir` or
//! `$RBUILD_CERTS_DIR` when given, else `/etc/containers/certs.d` and `/etc/docker/certs.d`
//! (host-global, so tests and unprivileged users point `RBUILD_CERTS_DIR` at their own).
//! Both HTTP stacks take them: oci-client for pull and push, ureq for login and search.

use super::{RegistryError, Result};
use std::path::{Path, PathBuf};

/// The system-wide directories searched when no directory is given.
const SYSTEM_DIRS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// The PEM text of each CA file for `registry` (`host[:port]`), in file-name order.
pub fn registry_ca_pems(cert_dir: Option<&Path>, registry: &str) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let dirs: Vec<PathBuf> = match cert_dir {
        Some(d) => vec![d.to_path_buf()],
        None => SYSTEM_DIRS.iter().map(PathBuf::from).collect(),
    };
    let mut out = Vec::new();
    for dir in dirs {
        // A registry name never holds `/`, so this stays inside `dir`.
        let host_dir = dir.join(registry.replace('/', "_"));
        let entries = match std::fs::read_dir(&host_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(RegistryError::Certificate { path: host_dir, reason: e.to_string() }),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        files.sort();
        for path in files {
            let pem = std::fs::read(&path)
                .map_err(|e| RegistryError::Certificate { path: path.clone(), reason: e.to_string() })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(RegistryError::Certificate { path, reason: "no PEM certificate in it".into() });
            }
            out.push((path, pem));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_crt_files_of_the_host_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = dir.path().join("127.0.0.1:5443");
        std::fs::create_dir(&host).expect("mkdir");
        std::fs::write(host.join("ca.crt"), "-----BEGIN CERTIFICATE-----\nx\n").expect("write");
        std::fs::write(host.join("client.key"), "key").expect("write");
        let found = registry_ca_pems(Some(dir.path()), "127.0.0.1:5443").expect("certs");
        assert_eq!(found.len(), 1);
        assert!(registry_ca_pems(Some(dir.path()), "other:5000").expect("none").is_empty());
        std::fs::write(host.join("bad.crt"), "not pem").expect("write");
        let err = registry_ca_pems(Some(dir.path()), "127.0.0.1:5443").unwrap_err();
        assert!(err.to_string().contains("bad.crt: no PEM certificate in it"), "{err}");
    }
}
