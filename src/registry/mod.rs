//! The OCI distribution API client: `pull` (registry ─► store) and `push` (store ─► registry).
//!
//! Built on the `oci-client` crate, as DESIGN.md says. oci-client is async; every operation
//! here creates a small current-thread tokio runtime for its own duration ([`client`]), so the
//! rest of rbuild stays synchronous. TLS is rustls with the `ring` provider (already used by
//! `ureq`), so no second crypto library is built. oci-client 0.18 needs Rust 1.88 through
//! `sha2` 0.11 and reqwest's `icu_*` crates; the lock file already needed 1.88 for `pest` 2.9,
//! so this adds no new floor over what `rust-version = "1.85"` in Cargo.toml already misstates.
//!
//! What this module owns:
//! - [`client`]: which registries are plain HTTP (`localhost`, `127.0.0.0/8`, `::1`, hosts in
//!   `RBUILD_INSECURE_REGISTRIES`, or everything with `--tls-verify=false`), the runtime, and
//!   mapping oci-client's errors to [`RegistryError`] (reference, host, HTTP status, digest).
//! - [`auth`]: credentials from `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`
//!   (podman) and `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (docker): the
//!   credential helper `credHelpers.<host>` or `credsStore` names, else `auths.<host>.auth`
//!   base64 `user:pass`. oci-client turns them into basic auth or a bearer
//!   token as the registry's `WWW-Authenticate` challenge asks.
//! - [`certs`]: extra CAs per registry (`RBUILD_CERTS_DIR` or `/etc/{containers,docker}/certs.d`).
//! - [`http`]: plain requests outside the distribution API's image calls (the `/v2/` check of
//!   `login`, `/v2/_catalog` of `search`), with Docker's token or basic auth.
//! - [`login`]: check credentials against `/v2/`, then store or erase them as docker does.
//! - [`catalog`]: `search` over a registry's `/v2/_catalog`.
//! - [`pull`]: manifest (OCI or Docker schema2; an index or manifest list picks
//!   `linux/<host arch>`), config and layers (gzip, zstd or plain, stored as served). Every blob
//!   is hashed while it streams into the store's `tmp/` work dir; only when all of them matched
//!   their digests are they renamed into `blobs/` and the manifest (kept byte for byte, so the
//!   local manifest digest is the registry's) added to the index. A killed pull leaves at worst
//!   a dead work dir, which `store gc` removes.
//! - [`push`]: blobs the registry lacks (HEAD first), then the config, then the manifest's own
//!   bytes, so the pushed digest is the local one.
//!
//! Image references are normalised by [`crate::store::ImageReference`] (one normalisation for
//! the store and the registry: `busybox` is `docker.io/library/busybox:latest`).
//! - [`cache`]: the shared build cache as an OCI artifact (`--cache-to`/`--cache-from`
//!   `type=registry` or `type=local`), its blobs shared with images and mounted across
//!   repositories on push.

pub mod auth;
pub mod cache;
pub mod catalog;
pub mod certs;
pub mod client;
pub mod http;
pub mod login;
pub mod pull;
pub mod push;

pub use client::RegistryOptions;
pub use pull::{pull, PullEvent, PullOutcome};
pub use push::{push, PushEvent, PushOutcome};

use crate::layer::digest::Sha256Digest;
use std::path::PathBuf;

/// What went wrong talking to a registry; each variant names the reference and registry host.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] crate::store::ReferenceError),
    #[error("{action} {reference}: unauthorized: authentication required by {registry}{hint}")]
    Unauthorized { action: &'static str, reference: String, registry: String, hint: String },
    #[error("{action} {reference}: {what} unknown to {registry}")]
    NotFound { action: &'static str, reference: String, registry: String, what: String },
    #[error("{action} {reference}: registry {registry}{}: {message}", status.map(|s| format!(" answered HTTP {s}")).unwrap_or_default())]
    Http { action: &'static str, reference: String, registry: String, status: Option<u16>, message: String },
    #[error("pull {reference}: blob {digest} from {registry} is corrupt: its content hashes to {actual}")]
    DigestMismatch { reference: String, registry: String, digest: Sha256Digest, actual: Sha256Digest },
    #[error("pull {reference}: {registry} has no image for platform {platform} (the manifest list has: {available})")]
    NoMatchingPlatform { reference: String, registry: String, platform: String, available: String },
    #[error("pull {reference}: {registry} served an unusable manifest {digest}: {reason}")]
    BadManifest { reference: String, registry: String, digest: String, reason: String },
    #[error("push {reference}: {reason}")]
    BadPush { reference: String, reason: String },
    #[error("credentials file {}: {reason}", path.display())]
    AuthFile { path: PathBuf, reason: String },
    #[error("registry certificate {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("login to {registry}: {reason}")]
    Login { registry: String, reason: String },
    #[error("search {registry}: {reason}")]
    Search { registry: String, reason: String },
    #[error("starting the registry client: {0}")]
    Runtime(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl RegistryError {
    /// Whether the user can fix it (bad name, no such image, credentials, network) rather
    /// than a fault of rbuild.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, RegistryError::Runtime(_))
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
