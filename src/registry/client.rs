//! One registry connection for one operation: the oci-client `Client` (plain HTTP or TLS for
//! this host), the credentials, and the current-thread tokio runtime its futures run on.
//! Also: which hosts are insecure, and oci-client's errors as [`RegistryError`]s.

use super::auth::{auth_files, credentials_for};
use super::{RegistryError, Result};
use crate::store::ImageReference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::net::IpAddr;
use std::path::PathBuf;

const USER_AGENT: &str = concat!("rbuild/", env!("CARGO_PKG_VERSION"));

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// `--tls-verify`: `Some(false)` talks plain HTTP to every registry (like skopeo's
    /// `--tls-verify=false`); `Some(true)` insists on TLS even for loopback hosts; `None`
    /// uses plain HTTP only for loopback hosts and `insecure_registries`.
    pub tls_verify: Option<bool>,
    /// Hosts (with or without a port) reached over plain HTTP when `tls_verify` is `None`:
    /// `RBUILD_INSECURE_REGISTRIES`, read once by the caller (see [`parse_insecure_registries`]).
    pub insecure_registries: Vec<String>,
    /// Where extra CAs are looked up (`<dir>/<host:port>/*.crt`): `--cert-dir` or
    /// `RBUILD_CERTS_DIR`; `None`: the system's certs.d dirs (see [`super::certs`]).
    pub cert_dir: Option<PathBuf>,
}

impl RegistryOptions {
    /// `--tls-verify` as given, the insecure registries of `RBUILD_INSECURE_REGISTRIES` and the
    /// CA directory of `RBUILD_CERTS_DIR`.
    pub fn from_env(tls_verify: Option<bool>) -> Self {
        let insecure_registries =
            std::env::var("RBUILD_INSECURE_REGISTRIES").map(|l| parse_insecure_registries(&l)).unwrap_or_default();
        let cert_dir = std::env::var_os("RBUILD_CERTS_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
        RegistryOptions { tls_verify, insecure_registries, cert_dir }
    }
}

/// The hosts of a comma- or space-separated `RBUILD_INSECURE_REGISTRIES` (an `http://` prefix
/// and a trailing `/` are ignored).
pub fn parse_insecure_registries(list: &str) -> Vec<String> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .map(|e| e.trim().trim_start_matches("http://").trim_end_matches('/'))
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// `host` and the port-less host of a `host[:port]` registry name (`[::1]:5000` too).
fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// Whether `registry` is reached over plain HTTP: Docker's defaults (`localhost`, loopback
/// addresses), any host listed (with or without its port) in `opts.insecure_registries`, or
/// every host with `tls_verify: Some(false)`.
pub fn is_insecure(registry: &str, opts: &RegistryOptions) -> bool {
    match opts.tls_verify {
        Some(false) => return true,
        Some(true) => return false,
        None => {}
    }
    let host = host_part(registry);
    if host == "localhost" || host.ends_with(".localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return true;
    }
    opts.insecure_registries.iter().any(|e| e == registry || e == host)
}

/// Whether requests to `registry` go over plain HTTP: `--tls-verify` decides when given; a
/// registry with its own CA files (see [`super::certs`]) is spoken to over TLS even on a
/// loopback address, as docker does for a host in `certs.d`; otherwise [`is_insecure`].
pub(crate) fn plain_http(registry: &str, opts: &RegistryOptions, has_ca: bool) -> bool {
    match opts.tls_verify {
        Some(verify) => !verify,
        None => !has_ca && is_insecure(registry, opts),
    }
}

/// The error chain of `e` on one line (`error sending request: … Connection refused`).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A connection to the registry of one image reference.
pub(crate) struct Remote {
    rt: tokio::runtime::Runtime,
    pub client: Client,
    pub auth: RegistryAuth,
    /// `host[:port]` as in the reference (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The reference as the user reads it, for errors.
    pub shown: String,
    pub action: &'static str,
    credentials_from: Option<PathBuf>,
}

impl Remote {
    /// Connects (lazily: nothing is sent yet) to the registry of `reference` to `action` it.
    pub fn new(reference: &ImageReference, action: &'static str, opts: &RegistryOptions) -> Result<Self> {
        // reqwest is built without a crypto provider: use ring, which ureq already brings.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Runtime(e.to_string()))?;
        let registry = reference.domain().to_owned();
        let pems = super::certs::registry_ca_pems(opts.cert_dir.as_deref(), &registry)?;
        let insecure = plain_http(&registry, opts, !pems.is_empty());
        let extra_root_certificates = pems
            .into_iter()
            .map(|(_, data)| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data,
            })
            .collect();
        let config = ClientConfig {
            protocol: if insecure { ClientProtocol::Http } else { ClientProtocol::Https },
            extra_root_certificates,
            // One PUT per blob, streamed from the file with its length.
            use_monolithic_push: true,
            platform_resolver: None,
            user_agent: USER_AGENT,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| RegistryError::Runtime(chain(&e)))?;
        let creds = credentials_for(&registry)?;
        let auth = match &creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let remote = Remote {
            rt,
            client,
            auth,
            shown: reference.familiar(),
            registry,
            action,
            credentials_from: creds.map(|c| c.source),
        };
        let oci = remote.oci_ref(reference);
        remote.rt.block_on(remote.client.store_auth_if_needed(oci.resolve_registry(), &remote.auth));
        Ok(remote)
    }

    /// Runs a future of this connection to completion.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The oci-client reference of `r` (by digest when it has one, else by tag).
    pub fn oci_ref(&self, r: &ImageReference) -> Reference {
        match (r.digest(), r.tag()) {
            (Some(d), _) => Reference::with_digest(r.domain().to_owned(), r.path().to_owned(), d.to_string()),
            (None, t) => Reference::with_tag(
                r.domain().to_owned(),
                r.path().to_owned(),
                t.unwrap_or(crate::store::reference::DEFAULT_TAG).to_owned(),
            ),
        }
    }

    fn unauthorized(&self) -> RegistryError {
        let hint = match &self.credentials_from {
            Some(p) => format!(" (the credentials for {} in {} were refused)", self.registry, p.display()),
            None => {
                let files: Vec<String> = auth_files().iter().map(|p| p.display().to_string()).collect();
                format!(" (no credentials for {} in {})", self.registry, files.join(", "))
            }
        };
        RegistryError::Unauthorized {
            action: self.action,
            reference: self.shown.clone(),
            registry: self.registry.clone(),
            hint,
        }
    }

    fn http(&self, status: Option<u16>, message: String) -> RegistryError {
        RegistryError::Http {
            action: self.action,
            reference: self.shown.clone(),
            registry: self.registry.clone(),
            status,
            message,
        }
    }

    /// oci-client's error about `what` (`manifest`, `blob sha256:…`) as a [`RegistryError`].
    pub fn error(&self, what: &str, e: OciDistributionError) -> RegistryError {
        use OciDistributionError as E;
        let not_found = || RegistryError::NotFound {
            action: self.action,
            reference: self.shown.clone(),
            registry: self.registry.clone(),
            what: what.to_owned(),
        };
        match e {
            E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => self.unauthorized(),
            E::ImageManifestNotFoundError(_) => not_found(),
            E::ServerError { code: 404, .. } => not_found(),
            E::ServerError { code: 401, .. } => self.unauthorized(),
            E::ServerError { code, message, url } => self.http(Some(code), format!("{message} ({url})")),
            E::RegistryError { envelope, url } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)) {
                    self.unauthorized()
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                }) {
                    not_found()
                } else {
                    let msgs: Vec<String> = envelope.errors.iter().map(|e| e.to_string()).collect();
                    self.http(None, format!("{} ({url})", msgs.join("; ")))
                }
            }
            E::RequestError(r) => {
                let status = r.status().map(|s| s.as_u16());
                if status == Some(401) {
                    return self.unauthorized();
                }
                if status == Some(404) {
                    return not_found();
                }
                self.http(status, chain(&r))
            }
            other => self.http(None, chain(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_insecure() {
        let d = RegistryOptions::default();
        assert!(is_insecure("localhost:5000", &d));
        assert!(is_insecure("127.0.0.1:5000", &d));
        assert!(is_insecure("127.1.2.3", &d));
        assert!(is_insecure("[::1]:5000", &d));
        assert!(!is_insecure("docker.io", &d));
        assert!(!is_insecure("10.0.0.1:5000", &d));
        assert!(is_insecure("docker.io", &RegistryOptions { tls_verify: Some(false), ..Default::default() }));
        let listed = RegistryOptions { insecure_registries: parse_insecure_registries("a:5000, http://b/"), ..d };
        assert_eq!(listed.insecure_registries, ["a:5000", "b"]);
        assert!(is_insecure("a:5000", &listed) && is_insecure("b:443", &listed) && !is_insecure("a:6000", &listed));
        assert!(!is_insecure("localhost:5000", &RegistryOptions { tls_verify: Some(true), ..Default::default() }));
    }
}
