//! Registry commands for CI jobs against real registries (`docker-registry` on 127.0.0.1,
//! started per test by `crate::registry::Registry`): `login`/`logout` with htpasswd auth
//! behind TLS signed by a test CA made with `openssl`, credential helpers, `search` over the
//! catalog, and a build's outputs (`--push`, `--output`, `--iidfile`, `--metadata-file`),
//! read back with skopeo, umoci and `docker load`.
//!
//! Needs docker-registry, skopeo, htpasswd, curl and openssl (and umoci, dockerd for the
//! outputs); skips with a message without them, fails under CI=true.

mod login;
mod outputs;
mod search;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A test CA and a certificate for 127.0.0.1 it signed, as PEM files in a temp dir.
pub struct TestCa {
    pub dir: tempfile::TempDir,
}

impl TestCa {
    /// Makes the CA and the server certificate (P-256 keys, valid two days).
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ext = d.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write");
        let script = format!(
            "set -e; cd {0}
             openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt \
               -days 2 -subj /CN=rbuild-test-ca 2>/dev/null
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
               -subj /CN=127.0.0.1 2>/dev/null
             openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
               -extfile {1} 2>/dev/null",
            d.display(),
            ext.display()
        );
        let out = Command::new("sh").args(["-c", &script]).output().expect("openssl");
        assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
        TestCa { dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A certs dir (`<dir>/<host>/ca.crt`) trusting this CA for `host`, as `RBUILD_CERTS_DIR`.
    pub fn certs_dir_for(&self, host: &str) -> PathBuf {
        let certs = self.dir.path().join("certs.d");
        std::fs::create_dir_all(certs.join(host)).expect("mkdir");
        std::fs::copy(self.dir.path().join("ca.crt"), certs.join(host).join("ca.crt")).expect("copy");
        certs
    }
}

/// Whether the registry tests can run here.
pub fn ready() -> bool {
    crate::registry::ready() && crate::fixture::require(crate::fixture::have_tool("openssl"), "openssl")
}

/// A store under `dir` with the busybox tree imported as `busybox` (no root needed).
pub fn store_with_busybox(dir: &Path) -> Option<PathBuf> {
    let tree = dir.join("busybox-tree");
    if !crate::fixture::busybox_tree(&tree) {
        return None;
    }
    let tar = dir.join("busybox.tar");
    crate::fixture::tar_of(&tree, &tar);
    let root = dir.join("store");
    crate::fixture::rbuild_ok(&root, &["import", tar.to_str().expect("utf-8"), "busybox"]);
    Some(root)
}
