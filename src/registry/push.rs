//! `push`: store ─► registry. Layers the registry lacks (checked with HEAD) are uploaded in
//! one streamed PUT each, read from the store with their digest verified; then the config,
//! then the manifest's own bytes, so the registry's manifest digest is the local one.

use super::client::Remote;
use super::{RegistryError, RegistryOptions, Result};
use crate::layer::digest::Sha256Digest;
use crate::store::{ImageReference, ImageStore};
use oci_client::errors::OciDistributionError;
use std::io::Read;

/// What a push reports as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushEvent {
    /// The destination repository (`127.0.0.1:5000/busybox`).
    Repository(String),
    /// The registry already has this layer.
    LayerExists(Sha256Digest),
    /// This layer was uploaded.
    LayerPushed(Sha256Digest),
}

/// A finished push.
#[derive(Clone, Debug)]
pub struct PushOutcome {
    /// Where the image went (normalised, with its tag).
    pub destination: ImageReference,
    pub manifest_digest: Sha256Digest,
    pub manifest_size: u64,
}

/// Pushes the image `source` (a reference or an image ID) to `destination` (default: the
/// source reference itself).
pub fn push(
    store: &ImageStore,
    source: &str,
    destination: Option<&str>,
    opts: &RegistryOptions,
    on: &mut dyn FnMut(&PushEvent),
) -> Result<PushOutcome> {
    let image = store.resolve(source)?;
    let source_ref = ImageReference::parse(source).ok().filter(|r| r.digest().is_none());
    let dest = match (destination, &source_ref) {
        (Some(d), _) => ImageReference::parse(d)?.with_default_tag(),
        (None, Some(s)) => s.clone().with_default_tag(),
        (None, None) => {
            return Err(RegistryError::BadPush {
                reference: source.to_owned(),
                reason: "an image ID needs a destination reference (rbuild push ID NAME[:TAG])".into(),
            })
        }
    };
    if dest.digest().is_some() {
        return Err(RegistryError::BadPush {
            reference: dest.familiar(),
            reason: "cannot push to a digest reference; give a tag".into(),
        });
    }
    // The manifest the source tag points at (an image may have several).
    let manifest_digest = match &source_ref {
        Some(r) => store.tagged_manifest(r)?.unwrap_or_else(|| image.manifest_digest.clone()),
        None => image.manifest_digest.clone(),
    };
    let manifest_bytes = store.read_blob(&manifest_digest)?;
    let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        RegistryError::BadPush { reference: dest.familiar(), reason: format!("local manifest {manifest_digest}: {e}") }
    })?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&manifest_bytes)
        .ok()
        .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| super::pull::OCI_MANIFEST.to_owned());

    let remote = Remote::new(&dest, "push", opts)?;
    on(&PushEvent::Repository(dest.familiar_name()));
    let oci = remote.oci_ref(&dest);
    let mut done: Vec<Sha256Digest> = Vec::new();
    let layers = manifest.layers().iter().map(|l| (Sha256Digest::from(l.digest()), l.size(), true));
    let config = manifest.config();
    for (digest, size, is_layer) in
        layers.chain(std::iter::once((Sha256Digest::from(config.digest()), config.size(), false)))
    {
        if done.contains(&digest) {
            continue;
        }
        let pushed = push_blob(&remote, &oci, &digest, size, &[], || Ok(store.open_blob(&digest)?))?;
        if is_layer {
            on(&match pushed {
                BlobPushed::Existing => PushEvent::LayerExists(digest.clone()),
                BlobPushed::Mounted | BlobPushed::Uploaded => PushEvent::LayerPushed(digest.clone()),
            });
        }
        done.push(digest);
    }
    let content_type = http::HeaderValue::from_str(&media_type).map_err(|e| RegistryError::BadPush {
        reference: dest.familiar(),
        reason: format!("manifest media type {media_type:?}: {e}"),
    })?;
    let size = manifest_bytes.len() as u64;
    remote
        .block_on(remote.client.push_manifest_raw(&oci, manifest_bytes, content_type))
        .map_err(|e| remote.error("manifest", e))?;
    Ok(PushOutcome { destination: dest, manifest_digest, manifest_size: size })
}

/// How [`push_blob`] got a blob into the destination repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlobPushed {
    /// It was there already (HEAD).
    Existing,
    /// The registry mounted it from another of its repositories.
    Mounted,
    /// Its bytes were sent.
    Uploaded,
}

/// Puts one blob into the repository of `oci` unless it is there: HEAD first, then a
/// cross-repository mount from each of `mount_from` (repositories of the same registry that
/// may hold it: no bytes travel), then one streamed PUT of what `open` reads. A mount the
/// registry refuses (it then answers 202 and starts an upload) falls through to the upload.
pub(crate) fn push_blob<R: Read + Send + 'static>(
    remote: &Remote,
    oci: &oci_client::Reference,
    digest: &Sha256Digest,
    size: u64,
    mount_from: &[oci_client::Reference],
    open: impl FnOnce() -> Result<R>,
) -> Result<BlobPushed> {
    let what = format!("blob {digest}");
    let digest_str = digest.to_string();
    let exists = remote.block_on(remote.client.blob_exists(oci, &digest_str)).map_err(|e| remote.error(&what, e))?;
    if exists {
        return Ok(BlobPushed::Existing);
    }
    for source in mount_from {
        if remote.block_on(remote.client.mount_blob(oci, source, &digest_str)).is_ok() {
            return Ok(BlobPushed::Mounted);
        }
    }
    let blob = open()?;
    remote
        .block_on(remote.client.push_blob_stream(oci, blob_stream(blob), &digest_str, Some(size)))
        .map_err(|e| remote.error(&what, e))?;
    Ok(BlobPushed::Uploaded)
}

/// A blob from the store as a stream of 1 MiB chunks; the store's reader fails at the end if
/// the content does not match its digest, which aborts the upload.
fn blob_stream<R: Read + Send + 'static>(
    reader: R,
) -> impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, OciDistributionError>> + Send + 'static {
    futures_util::stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        let mut buf = vec![0u8; 1 << 20];
        let mut filled = 0;
        loop {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Some((Err(OciDistributionError::IoError(e)), None)),
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some((Ok(bytes::Bytes::from(buf)), Some(reader)))
    })
}
