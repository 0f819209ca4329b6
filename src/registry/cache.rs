//! The shared build cache as an OCI artifact (`--cache-to`/`--cache-from type=registry|local`):
//! its format, and moving it between a store and a registry or an OCI layout directory.
//!
//! The artifact is one OCI image manifest (`artifactType` [`CACHE_ARTIFACT_TYPE`]) whose
//! config blob ([`CACHE_CONFIG_MEDIA_TYPE`], a [`CacheConfig`]) lists the cache records: each
//! step's key, the key's inputs (so a miss can still be explained), and the image the step
//! made (its config and layer descriptors). The manifest's `layers` name every blob the
//! records point at (layers and image configs) and the cache-mount archives, so a registry's
//! garbage collection keeps them. Layers are the store's own blobs, byte for byte: the same
//! blob serves an image push and the cache, and a registry that has it in another repository
//! mounts it instead of receiving it again. A `type=local` cache is an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/`) holding the same manifest, as BuildKit's is.
//!
//! Reading is lazy: [`CacheSource::open`] reads only the manifest and the record list; the
//! engine fetches one image's missing blobs ([`CacheSource::fetch_blobs`]) when a key hits.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use fs_err as fs;
use serde::{Deserialize, Serialize};

use super::client::Remote;
use super::pull::{OCI_INDEX, OCI_MANIFEST};
use super::{RegistryError, RegistryOptions};
use crate::layer::digest::{HashingWriter, Sha256Digest};
use crate::plan::{CacheKey, CacheKeyInputs};
use crate::store::atomic::{write_atomic, Durability};
use crate::store::{ImageReference, ImageStore, WorkDir};

/// The manifest's `artifactType`.
pub const CACHE_ARTIFACT_TYPE: &str = "application/vnd.rbuild.cache.v1";
/// The media type of the record list (the manifest's config).
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";
/// The media type of an image config the records point at.
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The record list's format version; another version is refused with a clear error.
const CACHE_CONFIG_VERSION: u32 = 1;

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// `type=registry,ref=R`: a tag in a registry.
    Registry(ImageReference),
    /// `type=local,dest=DIR` / `src=DIR`: an OCI image layout directory.
    Local(PathBuf),
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Registry(r) => write!(f, "{}", r.familiar()),
            CacheLocation::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A blob of the artifact: digest, size and media type, as a descriptor names one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRef {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl BlobRef {
    /// The digest, checked (the artifact is untrusted input).
    pub fn sha256(&self) -> std::result::Result<Sha256Digest, crate::layer::digest::DigestParseError> {
        self.digest.parse()
    }
}

/// One layer of a cached image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedLayer {
    #[serde(flatten)]
    pub blob: BlobRef,
    pub diff_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpacked_size: Option<u64>,
}

/// One cache record: what `engine::cache::CacheRecord` keeps, with the image's descriptors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: CacheKey,
    pub inputs: CacheKeyInputs,
    /// RFC 3339; the newest record on a parent explains a miss.
    pub created: String,
    /// The image the step made: its config (whose digest is the image ID) and layers.
    pub config: BlobRef,
    pub layers: Vec<CachedLayer>,
}

/// A `RUN --mount=type=cache` directory carried by the cache (`cache-mounts=true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedMount {
    /// The directory's name under the store's `cache-mounts/` (the sha256 of the mount id).
    pub name: String,
    /// The archive: a layer-format tar (gzip or zstd) of the directory.
    pub archive: BlobRef,
}

/// The artifact's config blob: the records and the cache mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    pub records: Vec<CacheEntry>,
    #[serde(default)]
    pub mounts: Vec<CachedMount>,
}

impl CacheConfig {
    pub fn new(records: Vec<CacheEntry>, mounts: Vec<CachedMount>) -> Self {
        CacheConfig { version: CACHE_CONFIG_VERSION, records, mounts }
    }

    /// Every blob the records and mounts point at, each once, in a stable order.
    pub fn blobs(&self) -> Vec<BlobRef> {
        let mut seen = BTreeSet::new();
        let all = self
            .records
            .iter()
            .flat_map(|r| std::iter::once(r.config.clone()).chain(r.layers.iter().map(|l| l.blob.clone())));
        all.chain(self.mounts.iter().map(|m| m.archive.clone())).filter(|b| seen.insert(b.digest.clone())).collect()
    }
}

/// Why a cache could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CacheTransferError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cache {location}: {reason}")]
    Invalid { location: String, reason: String },
    #[error("cache {location}: blob {digest} is corrupt: its content hashes to {actual}")]
    Corrupt { location: String, digest: String, actual: String },
    #[error("cache {location}: {source}")]
    Io { location: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl CacheTransferError {
    /// The cache is simply not there (yet): a first build's `--cache-from`, not a fault.
    pub fn is_absent(&self) -> bool {
        matches!(self, CacheTransferError::Registry(RegistryError::NotFound { .. }))
            || matches!(self, CacheTransferError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

type TransferResult<T> = std::result::Result<T, CacheTransferError>;

/// Where an exported blob's bytes are: the store's `blobs/`, or a file (a cache-mount archive).
#[derive(Debug, Clone)]
pub enum BlobSource {
    Store,
    File(PathBuf),
}

/// What [`export`] did.
#[derive(Debug, Clone, Default)]
pub struct ExportOutcome {
    pub manifest_digest: String,
    /// Blobs the destination already had.
    pub existing: usize,
    /// Blobs mounted from another repository of the same registry.
    pub mounted: usize,
    /// Blobs sent.
    pub uploaded: usize,
}

/// The manifest of `config` (serialized as `config_bytes`), naming every blob.
fn manifest_bytes(config: &CacheConfig, config_bytes: &[u8]) -> Vec<u8> {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": CACHE_ARTIFACT_TYPE,
        "config": BlobRef {
            media_type: CACHE_CONFIG_MEDIA_TYPE.into(),
            digest: Sha256Digest::of(config_bytes).to_string(),
            size: config_bytes.len() as u64,
        },
        "layers": config.blobs(),
    });
    // A JSON value of strings and numbers always serializes.
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// Writes the cache `config` to `location`: every blob first (from the store, or the file
/// `extra` names), then the record list, then the manifest (the tag, or `index.json`), so a
/// reader never finds a manifest whose blobs are missing. `mount_from` lists repositories of
/// the same registry that may hold the blobs already (images this store pulled or pushed).
pub fn export(
    store: &ImageStore,
    location: &CacheLocation,
    config: &CacheConfig,
    extra: &[(String, PathBuf)],
    opts: &RegistryOptions,
    mount_from: &[ImageReference],
) -> TransferResult<ExportOutcome> {
    let config_bytes = serde_json::to_vec(config).map_err(|e| CacheTransferError::Invalid {
        location: location.to_string(),
        reason: format!("serializing the records: {e}"),
    })?;
    let manifest = manifest_bytes(config, &config_bytes);
    let source_of = |blob: &BlobRef| match extra.iter().find(|(d, _)| *d == blob.digest) {
        Some((_, path)) => BlobSource::File(path.clone()),
        None => BlobSource::Store,
    };
    match location {
        CacheLocation::Registry(reference) => {
            export_registry(store, reference, config, &config_bytes, &manifest, &source_of, opts, mount_from)
        }
        CacheLocation::Local(dir) => export_local(store, dir, config, &config_bytes, &manifest, &source_of),
    }
}

fn open_source(store: &ImageStore, blob: &BlobRef, source: &BlobSource) -> TransferResult<Box<dyn Read + Send>> {
    Ok(match source {
        BlobSource::Store => Box::new(store.open_blob(&parse_digest(blob, "export")?)?),
        BlobSource::File(path) => Box::new(
            fs::File::open(path)
                .map_err(|source| CacheTransferError::Io { location: path.display().to_string(), source })?,
        ),
    })
}

fn parse_digest(blob: &BlobRef, location: &str) -> TransferResult<Sha256Digest> {
    blob.sha256().map_err(|e| CacheTransferError::Invalid { location: location.to_owned(), reason: e.to_string() })
}

#[allow(clippy::too_many_arguments)]
fn export_registry(
    store: &ImageStore,
    reference: &ImageReference,
    config: &CacheConfig,
    config_bytes: &[u8],
    manifest: &[u8],
    source_of: &dyn Fn(&BlobRef) -> BlobSource,
    opts: &RegistryOptions,
    mount_from: &[ImageReference],
) -> TransferResult<ExportOutcome> {
    let dest = reference.clone().with_default_tag();
    let remote = Remote::new(&dest, "push cache", opts)?;
    let oci = remote.oci_ref(&dest);
    let mut outcome = ExportOutcome::default();
    let candidates: Vec<oci_client::Reference> = mount_from
        .iter()
        .filter(|r| r.domain() == dest.domain() && r.path() != dest.path())
        .map(|r| remote.oci_ref(r))
        .collect();
    for blob in config.blobs() {
        let digest = parse_digest(&blob, &dest.familiar())?;
        let source = source_of(&blob);
        let pushed = super::push::push_blob(&remote, &oci, &digest, blob.size, &candidates, || {
            open_source(store, &blob, &source).map_err(|e| RegistryError::Io(std::io::Error::other(e.to_string())))
        })?;
        match pushed {
            super::push::BlobPushed::Existing => outcome.existing += 1,
            super::push::BlobPushed::Mounted => outcome.mounted += 1,
            super::push::BlobPushed::Uploaded => outcome.uploaded += 1,
        }
    }
    let config_digest = Sha256Digest::of(config_bytes);
    remote
        .block_on(remote.client.push_blob(&oci, config_bytes.to_vec(), &config_digest.to_string()))
        .map_err(|e| remote.error(&format!("blob {config_digest}"), e))?;
    let content_type = http::HeaderValue::from_static(OCI_MANIFEST);
    remote
        .block_on(remote.client.push_manifest_raw(&oci, manifest.to_vec(), content_type))
        .map_err(|e| remote.error("manifest", e))?;
    outcome.manifest_digest = Sha256Digest::of(manifest).to_string();
    Ok(outcome)
}

fn export_local(
    store: &ImageStore,
    dir: &Path,
    config: &CacheConfig,
    config_bytes: &[u8],
    manifest: &[u8],
    source_of: &dyn Fn(&BlobRef) -> BlobSource,
) -> TransferResult<ExportOutcome> {
    let location = dir.display().to_string();
    let io = |source: std::io::Error| CacheTransferError::Io { location: location.clone(), source };
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(&io)?;
    let mut outcome = ExportOutcome::default();
    for blob in config.blobs() {
        let digest = parse_digest(&blob, &location)?;
        let path = blobs.join(digest.hex());
        if fs::metadata(&path).is_ok_and(|m| m.len() == blob.size) {
            outcome.existing += 1;
            continue;
        }
        // A hard link shares the store's bytes when the directory is on its filesystem.
        let linked = matches!(source_of(&blob), BlobSource::Store)
            && std::fs::hard_link(store.blob_path(&digest), &path).is_ok();
        if !linked {
            let mut reader = open_source(store, &blob, &source_of(&blob))?;
            let mut file = crate::store::atomic::AtomicFile::create(&blobs, &path).map_err(io)?;
            std::io::copy(&mut reader, &mut file).map_err(io)?;
            file.commit(Durability::Synced).map_err(io)?;
        }
        outcome.uploaded += 1;
    }
    let config_digest = Sha256Digest::of(config_bytes);
    write_atomic(&blobs, &blobs.join(config_digest.hex()), config_bytes, Durability::Synced).map_err(io)?;
    let manifest_digest = Sha256Digest::of(manifest);
    write_atomic(&blobs, &blobs.join(manifest_digest.hex()), manifest, Durability::Synced).map_err(io)?;
    write_atomic(dir, &dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#, Durability::Synced).map_err(io)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "artifactType": CACHE_ARTIFACT_TYPE,
            "digest": manifest_digest.to_string(),
            "size": manifest.len(),
        }],
    });
    let index = serde_json::to_vec(&index).unwrap_or_default();
    write_atomic(dir, &dir.join("index.json"), &index, Durability::Synced).map_err(io)?;
    outcome.manifest_digest = manifest_digest.to_string();
    Ok(outcome)
}

/// An imported cache: its location and record list; blobs are fetched when a record is used.
#[derive(Debug)]
pub struct CacheSource {
    pub location: CacheLocation,
    pub config: CacheConfig,
    opts: RegistryOptions,
}

impl CacheSource {
    /// Reads the manifest and the record list of the cache at `location`.
    pub fn open(location: &CacheLocation, opts: &RegistryOptions) -> TransferResult<CacheSource> {
        let shown = location.to_string();
        let manifest_bytes = match location {
            CacheLocation::Registry(reference) => {
                let reference = reference.clone().with_default_tag();
                let remote = Remote::new(&reference, "pull cache", opts)?;
                let oci = remote.oci_ref(&reference);
                let (bytes, _) = remote
                    .block_on(remote.client.pull_manifest_raw(&oci, &remote.auth, &[OCI_MANIFEST]))
                    .map_err(|e| remote.error("manifest", e))?;
                bytes.to_vec()
            }
            CacheLocation::Local(dir) => local_manifest(dir)?,
        };
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| CacheTransferError::Invalid { location: shown.clone(), reason: format!("manifest: {e}") })?;
        let config_ref: BlobRef = serde_json::from_value(manifest["config"].clone())
            .map_err(|e| CacheTransferError::Invalid { location: shown.clone(), reason: format!("manifest: {e}") })?;
        if config_ref.media_type != CACHE_CONFIG_MEDIA_TYPE {
            return Err(CacheTransferError::Invalid {
                location: shown,
                reason: format!("not an rbuild cache (its config is {})", config_ref.media_type),
            });
        }
        let mut source = CacheSource {
            location: location.clone(),
            config: CacheConfig::new(Vec::new(), Vec::new()),
            opts: opts.clone(),
        };
        let mut bytes = Vec::new();
        source.read_blob(&source.connect()?, &config_ref, &mut bytes)?;
        let config: CacheConfig = serde_json::from_slice(&bytes)
            .map_err(|e| CacheTransferError::Invalid { location: shown.clone(), reason: format!("records: {e}") })?;
        if config.version != CACHE_CONFIG_VERSION {
            return Err(CacheTransferError::Invalid {
                location: shown,
                reason: format!("record format version {} (this rbuild reads {CACHE_CONFIG_VERSION})", config.version),
            });
        }
        source.config = config;
        Ok(source)
    }

    /// A connection to the cache (a registry connection is made per operation).
    fn connect(&self) -> TransferResult<Connection> {
        match &self.location {
            CacheLocation::Registry(reference) => {
                let reference = reference.clone().with_default_tag();
                let remote = Remote::new(&reference, "pull cache", &self.opts)?;
                let oci = remote.oci_ref(&reference);
                Ok(Connection::Registry(Box::new(remote), oci))
            }
            CacheLocation::Local(dir) => Ok(Connection::Local(dir.clone())),
        }
    }

    /// Copies one blob into `out`, checking its digest and size.
    fn read_blob(&self, conn: &Connection, blob: &BlobRef, out: &mut dyn Write) -> TransferResult<()> {
        let shown = self.location.to_string();
        let digest = parse_digest(blob, &shown)?;
        let mut w = HashingWriter::new(out);
        match conn {
            Connection::Registry(remote, oci) => {
                let what = format!("blob {digest}");
                remote
                    .block_on(remote.client.pull_blob(oci, &oci_layer(&blob.digest, blob.size), AsyncSink(&mut w)))
                    .map_err(|e| remote.error(&what, e))?;
            }
            Connection::Local(dir) => {
                let path = dir.join("blobs/sha256").join(digest.hex());
                let io = |source| CacheTransferError::Io { location: path.display().to_string(), source };
                let mut file = fs::File::open(&path).map_err(&io)?;
                std::io::copy(&mut (&mut file).take(blob.size + 1), &mut w).map_err(io)?;
            }
        }
        let (actual, n, _) = w.finish();
        if actual != digest || n != blob.size {
            return Err(CacheTransferError::Corrupt {
                location: shown,
                digest: blob.digest.clone(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    /// Brings the blobs among `blobs` that the store lacks into it (verified), pinning in
    /// `work` the ones it has so that a concurrent gc cannot take them. Returns how many were
    /// fetched.
    pub fn fetch_blobs(&self, store: &ImageStore, work: &WorkDir, blobs: &[BlobRef]) -> TransferResult<usize> {
        let shown = self.location.to_string();
        let mut fetched = Vec::new();
        let mut conn: Option<Connection> = None;
        for blob in blobs {
            let digest = parse_digest(blob, &shown)?;
            {
                let _lock = store.lock()?;
                if store.has_blob(&digest) {
                    work.pin("blob", &digest).map_err(crate::store::StoreError::from)?;
                    continue;
                }
            }
            let path = work.path().join(format!("cache-{}", digest.hex()));
            let conn = match &mut conn {
                Some(conn) => conn,
                none => none.insert(self.connect()?),
            };
            self.fetch_file_via(conn, blob, &path)?;
            fetched.push((path, digest));
        }
        for (path, digest) in &fetched {
            work.commit_blob_file(store, path, digest)?;
        }
        Ok(fetched.len())
    }

    /// Writes one blob to `path` (verified; removed on failure).
    pub fn fetch_file(&self, blob: &BlobRef, path: &Path) -> TransferResult<()> {
        self.fetch_file_via(&self.connect()?, blob, path)
    }

    fn fetch_file_via(&self, conn: &Connection, blob: &BlobRef, path: &Path) -> TransferResult<()> {
        let io = |source| CacheTransferError::Io { location: path.display().to_string(), source };
        let file = fs::File::create(path).map_err(&io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let result = self.read_blob(conn, blob, &mut out).and_then(|()| {
            let file = out.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(&io)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }
}

/// How a cache's blobs are read: a registry connection and the cache's reference on it, or
/// the layout directory.
enum Connection {
    Registry(Box<Remote>, oci_client::Reference),
    Local(PathBuf),
}

/// The cache manifest an OCI layout's `index.json` names (its only, or its cache, entry).
fn local_manifest(dir: &Path) -> TransferResult<Vec<u8>> {
    let shown = dir.display().to_string();
    let io = |source| CacheTransferError::Io { location: shown.clone(), source };
    let index: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("index.json")).map_err(&io)?)
        .map_err(|e| CacheTransferError::Invalid { location: shown.clone(), reason: format!("index.json: {e}") })?;
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let entry =
        entries.iter().find(|e| e["artifactType"] == CACHE_ARTIFACT_TYPE).or_else(|| entries.first()).ok_or_else(
            || CacheTransferError::Invalid { location: shown.clone(), reason: "index.json lists no manifest".into() },
        )?;
    let blob = BlobRef {
        media_type: OCI_MANIFEST.into(),
        digest: entry["digest"].as_str().unwrap_or_default().to_owned(),
        size: entry["size"].as_u64().unwrap_or_default(),
    };
    let digest = parse_digest(&blob, &shown)?;
    let bytes = fs::read(dir.join("blobs/sha256").join(digest.hex())).map_err(&io)?;
    if Sha256Digest::of(&bytes) != digest {
        return Err(CacheTransferError::Corrupt {
            location: shown,
            digest: blob.digest,
            actual: Sha256Digest::of(&bytes).to_string(),
        });
    }
    Ok(bytes)
}

/// oci-client's descriptor of a blob to pull.
fn oci_layer(digest: &str, size: u64) -> oci_client::manifest::OciDescriptor {
    oci_client::manifest::OciDescriptor { digest: digest.to_owned(), size: size as i64, ..Default::default() }
}

/// A synchronous writer as the `AsyncWrite` oci-client's `pull_blob` writes into.
struct AsyncSink<'a, W: Write>(&'a mut W);

impl<W: Write> tokio::io::AsyncWrite for AsyncSink<'_, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(self.0.write(buf))
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(self.0.flush())
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl<W: Write> Unpin for AsyncSink<'_, W> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn blob(d: char, media_type: &str) -> BlobRef {
        BlobRef { media_type: media_type.into(), digest: format!("sha256:{}", d.to_string().repeat(64)), size: 3 }
    }

    fn entry(config: char, layers: &[char]) -> CacheEntry {
        let inputs = CacheKeyInputs {
            parent: "image:sha256:x".into(),
            instruction: "RUN true".into(),
            build_args: BTreeMap::new(),
            sources: None,
        };
        CacheEntry {
            key: inputs.key(),
            inputs,
            created: "2026-01-01T00:00:00Z".into(),
            config: blob(config, IMAGE_CONFIG_MEDIA_TYPE),
            layers: layers
                .iter()
                .map(|c| CachedLayer {
                    blob: blob(*c, "application/vnd.oci.image.layer.v1.tar+gzip"),
                    diff_id: "d".into(),
                    unpacked_size: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_manifest_names_every_blob_once() {
        let mounts =
            vec![CachedMount { name: "m".into(), archive: blob('e', "application/vnd.oci.image.layer.v1.tar+zstd") }];
        let config = CacheConfig::new(vec![entry('a', &['b']), entry('c', &['b', 'd'])], mounts);
        let digests: Vec<String> = config.blobs().into_iter().map(|b| b.digest[7..8].to_owned()).collect();
        assert_eq!(digests, ["a", "b", "c", "d", "e"]);
        let bytes = serde_json::to_vec(&config).expect("json");
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes(&config, &bytes)).expect("manifest");
        assert_eq!(manifest["artifactType"], CACHE_ARTIFACT_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CACHE_CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["config"]["digest"], Sha256Digest::of(&bytes).to_string());
        assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(5));
        let back: CacheConfig = serde_json::from_slice(&bytes).expect("parse");
        assert_eq!(back, config);
    }
}
