//! `pull`: registry ─► store. The manifest is fetched (an index or manifest list resolves to
//! `linux/<host arch>`), then the config and every layer the store lacks are streamed into the
//! store's `tmp/` work dir, hashed on the way; only when every blob matched its digest are
//! they moved into `blobs/`, then the manifest (byte for byte) is added and tagged. A digest
//! mismatch or a failure leaves the store as it was; a killed pull leaves only a dead work dir.

use super::client::{chain, Remote};
use super::{RegistryError, RegistryOptions, Result};
use crate::image::Platform;
use crate::layer::digest::{HashingWriter, Sha256Digest};
use crate::store::{ImageReference, ImageStore, PutImage, StoredImage};
use futures_util::StreamExt as _;
use oci_spec::image::ImageManifest;
use std::io::Write;
use std::path::PathBuf;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPTED: [&str; 4] = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];

/// What a pull reports as it goes (the CLI prints Docker's lines from these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullEvent {
    /// The reference had neither tag nor digest: `latest` is pulled.
    DefaultTag(String),
    /// The manifest was found: `what` (tag or digest) is pulled from `repository`.
    Pulling { what: String, repository: String },
    /// This layer is already in the store.
    LayerExists(Sha256Digest),
    /// This layer starts downloading.
    Downloading { digest: Sha256Digest, size: u64 },
    /// This layer was downloaded and verified.
    LayerPulled(Sha256Digest),
}

impl PullEvent {
    /// The line `docker pull` prints for this event (`None` for those it does not print).
    pub fn message(&self) -> Option<String> {
        Some(match self {
            PullEvent::DefaultTag(t) => format!("Using default tag: {t}"),
            PullEvent::Pulling { what, repository } => format!("{what}: Pulling from {repository}"),
            PullEvent::LayerExists(d) => format!("{}: Already exists", d.short()),
            PullEvent::Downloading { .. } => return None,
            PullEvent::LayerPulled(d) => format!("{}: Pull complete", d.short()),
        })
    }
}

/// A finished pull.
#[derive(Clone, Debug)]
pub struct PullOutcome {
    /// The normalised reference that was pulled (with its tag, or its digest).
    pub reference: ImageReference,
    /// The image manifest's digest (for a manifest list, the chosen platform's manifest).
    pub manifest_digest: Sha256Digest,
    pub image: StoredImage,
    /// Blobs (config and layers) downloaded, and their bytes.
    pub downloaded_blobs: usize,
    pub downloaded_bytes: u64,
    /// The tag already pointed at this manifest and nothing was missing.
    pub up_to_date: bool,
}

/// A manifest as served: its bytes, their digest and media type.
struct Fetched {
    bytes: Vec<u8>,
    digest: Sha256Digest,
    media_type: String,
}

/// Pulls `name` (`busybox`, `host:5000/app:1`, `app@sha256:…`) into `store`.
pub fn pull(
    store: &ImageStore,
    name: &str,
    opts: &RegistryOptions,
    on: &mut dyn FnMut(&PullEvent),
) -> Result<PullOutcome> {
    let parsed = ImageReference::parse(name)?;
    if parsed.tag().is_none() && parsed.digest().is_none() {
        on(&PullEvent::DefaultTag(crate::store::reference::DEFAULT_TAG.to_owned()));
    }
    let reference = parsed.with_default_tag();
    let remote = Remote::new(&reference, "pull", opts)?;
    let fetched = fetch_image_manifest(&remote, &reference)?;
    let what = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, t) => t.unwrap_or_default().to_owned(),
    };
    on(&PullEvent::Pulling { what, repository: reference.path().to_owned() });
    let bad = |reason: String| RegistryError::BadManifest {
        reference: remote.shown.clone(),
        registry: remote.registry.clone(),
        digest: fetched.digest.to_string(),
        reason,
    };
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes).map_err(|e| bad(e.to_string()))?;
    let config = digest_of(manifest.config().digest().as_ref()).map_err(|e| bad(e.to_string()))?;
    let mut layers = Vec::new();
    for l in manifest.layers() {
        layers.push((digest_of(l.digest().as_ref()).map_err(|e| bad(e.to_string()))?, l.size()));
    }
    let tags: Vec<ImageReference> = if reference.digest().is_none() { vec![reference.clone()] } else { Vec::new() };
    let was_tagged_here =
        reference.digest().is_none() && store.tagged_manifest(&reference)? == Some(fetched.digest.clone());

    let work = store.work_dir()?;
    let oci = remote.oci_ref(&reference);
    let mut pending: Vec<(PathBuf, Sha256Digest)> = Vec::new();
    let mut downloaded_bytes = 0u64;
    let blobs = std::iter::once((config.clone(), manifest.config().size(), false))
        .chain(layers.iter().map(|(d, s)| (d.clone(), *s, true)));
    for (digest, size, is_layer) in blobs {
        if pending.iter().any(|(_, d)| *d == digest) {
            continue;
        }
        {
            // Pin what the store has under its lock, so a concurrent gc cannot take it away.
            let _lock = store.lock()?;
            if store.has_blob(&digest) {
                work.pin("blob", &digest)?;
                if is_layer {
                    on(&PullEvent::LayerExists(digest.clone()));
                }
                continue;
            }
        }
        if is_layer {
            on(&PullEvent::Downloading { digest: digest.clone(), size });
        }
        let path = work.path().join(format!("pull-{}", digest.hex()));
        downloaded_bytes += download(&remote, &oci, &digest, size, &path)?;
        pending.push((path, digest.clone()));
        if is_layer {
            on(&PullEvent::LayerPulled(digest));
        }
    }
    // Every blob is verified: now they enter the store, then the manifest and the tag.
    for (path, digest) in &pending {
        work.commit_blob_file(store, path, digest)?;
    }
    let image = store.put_manifest_raw(&work, &fetched.bytes, &PutImage { tags, parent: None })?;
    drop(work);
    Ok(PullOutcome {
        reference,
        manifest_digest: fetched.digest,
        image,
        downloaded_blobs: pending.len(),
        downloaded_bytes,
        up_to_date: was_tagged_here && pending.is_empty(),
    })
}

/// A digest in a manifest that rbuild cannot use.
#[derive(Debug, thiserror::Error)]
#[error("unsupported digest {digest:?} (only sha256 is supported)")]
struct UnsupportedDigest {
    digest: String,
}

/// Why no entry of an image index was chosen for a platform.
#[derive(Debug, thiserror::Error)]
enum PlatformPickError {
    #[error("invalid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The platforms the index has (`linux/amd64, linux/arm/v7`), or `nothing`.
    #[error("{available}")]
    NoMatch { available: String },
}

fn digest_of(s: &str) -> std::result::Result<Sha256Digest, UnsupportedDigest> {
    s.parse::<Sha256Digest>().map_err(|_| UnsupportedDigest { digest: s.to_string() })
}

/// Fetches the manifest of `reference`; an index or manifest list is resolved to the entry
/// for this machine's platform.
fn fetch_image_manifest(remote: &Remote, reference: &ImageReference) -> Result<Fetched> {
    let top = fetch_manifest(remote, reference, reference.digest())?;
    if top.media_type != OCI_INDEX && top.media_type != DOCKER_LIST {
        return Ok(top);
    }
    let chosen = pick_platform(&top.bytes, &Platform::native()).map_err(|e| RegistryError::NoMatchingPlatform {
        reference: remote.shown.clone(),
        registry: remote.registry.clone(),
        platform: Platform::native().to_string(),
        available: e.to_string(),
    })?;
    let digest = digest_of(&chosen).map_err(|e| RegistryError::BadManifest {
        reference: remote.shown.clone(),
        registry: remote.registry.clone(),
        digest: top.digest.to_string(),
        reason: e.to_string(),
    })?;
    let by_digest = ImageReference::parse(&format!("{}@{digest}", reference.full_name()))?;
    let image = fetch_manifest(remote, &by_digest, Some(&digest))?;
    if image.media_type == OCI_INDEX || image.media_type == DOCKER_LIST {
        return Err(RegistryError::BadManifest {
            reference: remote.shown.clone(),
            registry: remote.registry.clone(),
            digest: digest.to_string(),
            reason: "a manifest list inside a manifest list".into(),
        });
    }
    Ok(image)
}

/// One manifest, its digest checked against `expected` when the reference pins one.
fn fetch_manifest(remote: &Remote, reference: &ImageReference, expected: Option<&Sha256Digest>) -> Result<Fetched> {
    let oci = remote.oci_ref(reference);
    let (bytes, _) = remote
        .block_on(remote.client.pull_manifest_raw(&oci, &remote.auth, &ACCEPTED))
        .map_err(|e| remote.error("manifest", e))?;
    let bytes = bytes.to_vec();
    let digest = Sha256Digest::of(&bytes);
    let bad = |reason: String| RegistryError::BadManifest {
        reference: remote.shown.clone(),
        registry: remote.registry.clone(),
        digest: digest.to_string(),
        reason,
    };
    if let Some(exp) = expected {
        if *exp != digest {
            return Err(RegistryError::DigestMismatch {
                reference: remote.shown.clone(),
                registry: remote.registry.clone(),
                digest: exp.clone(),
                actual: digest,
            });
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        return Err(bad("Docker schema1 manifests are not supported".into()));
    }
    let media_type = match v.get("mediaType").and_then(|m| m.as_str()) {
        Some(m) => m.to_owned(),
        None if v.get("manifests").is_some() => OCI_INDEX.to_owned(),
        None => OCI_MANIFEST.to_owned(),
    };
    if !ACCEPTED.contains(&media_type.as_str()) {
        return Err(bad(format!("unsupported media type {media_type}")));
    }
    Ok(Fetched { bytes, digest, media_type })
}

/// The digest of the index entry for `platform`, or (as the error) the platforms it has.
fn pick_platform(index: &[u8], platform: &Platform) -> std::result::Result<String, PlatformPickError> {
    let v: serde_json::Value = serde_json::from_slice(index).map_err(PlatformPickError::InvalidJson)?;
    let entries = v.get("manifests").and_then(|m| m.as_array()).cloned().unwrap_or_default();
    let field = |e: &serde_json::Value, k: &str| {
        e.get("platform").and_then(|p| p.get(k)).and_then(|x| x.as_str()).map(str::to_owned)
    };
    let matching: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| {
            field(e, "os").as_deref() == Some(platform.os.as_str())
                && field(e, "architecture").as_deref() == Some(platform.arch.as_str())
        })
        .collect();
    // The exact variant first; arm64 images often say `v8` or nothing.
    let best = matching
        .iter()
        .find(|e| field(e, "variant") == platform.variant)
        .or_else(|| matching.iter().find(|e| platform.arch == "arm64" && field(e, "variant").as_deref() == Some("v8")))
        .or_else(|| matching.first());
    match best.and_then(|e| e.get("digest")).and_then(|d| d.as_str()) {
        Some(d) => Ok(d.to_owned()),
        None => {
            let have: Vec<String> = entries
                .iter()
                .map(|e| {
                    let mut s = format!(
                        "{}/{}",
                        field(e, "os").unwrap_or_default(),
                        field(e, "architecture").unwrap_or_default()
                    );
                    if let Some(v) = field(e, "variant") {
                        s.push('/');
                        s.push_str(&v);
                    }
                    s
                })
                .collect();
            Err(PlatformPickError::NoMatch {
                available: if have.is_empty() { "nothing".into() } else { have.join(", ") },
            })
        }
    }
}

/// Streams one blob into `path`, hashing it; fsyncs it when its digest matches. Returns its
/// size. On any failure the file is removed.
fn download(
    remote: &Remote,
    oci: &oci_client::Reference,
    digest: &Sha256Digest,
    size: u64,
    path: &std::path::Path,
) -> Result<u64> {
    let result = remote.block_on(async {
        let digest_str = digest.to_string();
        let mut stream = remote
            .client
            .pull_blob_stream(oci, digest_str.as_str())
            .await
            .map_err(|e| remote.error(&format!("blob {digest}"), e))?;
        let file = fs_err::File::create(path)?;
        let mut w = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let mut failure = None;
        let mut received = 0u64;
        while let Some(chunk) = stream.stream.next().await {
            match chunk {
                Ok(bytes) => {
                    w.write_all(&bytes)?;
                    received += bytes.len() as u64;
                    // More than the manifest says: the content cannot match; stop reading.
                    if received > size {
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let (actual, n, buf) = w.finish();
        let transport = |e: std::io::Error| RegistryError::Http {
            action: "pull",
            reference: remote.shown.clone(),
            registry: remote.registry.clone(),
            status: None,
            message: format!("downloading blob {digest}: {}", chain(&e)),
        };
        match failure {
            // Cut short: a network failure, not bad content.
            Some(e) if n < size => return Err(transport(e)),
            _ if actual != *digest => {
                return Err(RegistryError::DigestMismatch {
                    reference: remote.shown.clone(),
                    registry: remote.registry.clone(),
                    digest: digest.clone(),
                    actual,
                })
            }
            Some(e) => return Err(transport(e)),
            None => {}
        }
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(n)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_native_platform() {
        let index = br#"{"manifests":[
            {"digest":"sha256:aa","platform":{"os":"linux","architecture":"arm","variant":"v6"}},
            {"digest":"sha256:bb","platform":{"os":"linux","architecture":"amd64"}},
            {"digest":"sha256:cc","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"digest":"sha256:dd","platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        let p = |arch: &str, variant: Option<&str>| Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant: variant.map(str::to_owned),
        };
        assert_eq!(pick_platform(index, &p("amd64", None)).unwrap(), "sha256:bb");
        assert_eq!(pick_platform(index, &p("arm64", None)).unwrap(), "sha256:cc");
        assert_eq!(pick_platform(index, &p("arm", Some("v6"))).unwrap(), "sha256:aa");
        let err = pick_platform(index, &p("s390x", None)).unwrap_err().to_string();
        assert!(err.contains("linux/arm/v6") && err.contains("linux/amd64"), "{err}");
    }
}
