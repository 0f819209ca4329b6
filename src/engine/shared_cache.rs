//! The build cache shared between machines (`--cache-to`, `--cache-from`): what the flags
//! say ([`CacheExportSpec`], [`CacheImportSpec`]), the imported caches a build consults when
//! its own store has no record for a key ([`ImportedCaches`]), and the export of the records
//! (and, when asked, the `RUN --mount=type=cache` directories) a build used ([`export`]).
//!
//! The artifact and its transport are `registry::cache`'s; this module turns store records
//! into artifact entries and back. An imported record costs nothing until its key is looked
//! up: then only that image's missing blobs are fetched, the image enters the store and a
//! local record is written, so the next build on this machine hits without the cache. A key
//! with no record anywhere is still explained, against the imported records of the same
//! parent ("instruction changed: …") or as `no record in cache R`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::engine::cache::{CacheIndex, CacheRecord};
use crate::engine::BuildError;
use crate::image::ImageConfig;
use crate::layer::diff::{write_layer, DiffOptions};
use crate::layer::media::Compression;
use crate::plan::{explain_miss, CacheKey, CacheKeyInputs, MissReason};
use crate::registry::cache::{
    BlobRef, CacheConfig, CacheEntry, CacheLocation, CacheSource, CacheTransferError, CachedLayer, CachedMount,
    ExportOutcome, IMAGE_CONFIG_MEDIA_TYPE,
};
use crate::registry::RegistryOptions;
use crate::store::{ImageReference, ImageStore, LayerBlob, PutImage};

/// `mode=` of `--cache-to`: which steps' records are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The target stage's steps only (BuildKit's default).
    #[default]
    Min,
    /// Every stage's steps.
    Max,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExportSpec {
    pub location: CacheLocation,
    pub mode: CacheMode,
    /// Compression of the blobs the export itself makes (cache-mount archives); layers travel
    /// as the store holds them, so they stay shared with the images pushed from it.
    pub compression: Compression,
    /// `cache-mounts=true`: the cache mounts the build used travel with the cache.
    pub cache_mounts: bool,
    /// `ignore-error=true`: a failed export is a warning, not a failed build.
    pub ignore_error: bool,
}

/// One `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheImportSpec {
    /// `type=registry,ref=R` or `type=local,src=DIR`.
    Cache(CacheLocation),
    /// A bare image reference: Docker's classic `--cache-from IMAGE`.
    Image(String),
}

/// A `--cache-to`/`--cache-from` value rbuild cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value:?}: {reason}")]
pub struct CacheSpecError {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

/// `key=value` pairs of a flag value; a repeated or empty key is an error.
fn pairs(flag: &'static str, value: &str) -> Result<BTreeMap<String, String>, CacheSpecError> {
    let fail = |reason: String| CacheSpecError { flag, value: value.to_owned(), reason };
    let mut out = BTreeMap::new();
    for item in value.split(',').filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| fail(format!("{item:?} is not KEY=VALUE")))?;
        if k.is_empty() || out.insert(k.to_ascii_lowercase(), v.to_owned()).is_some() {
            return Err(fail(format!("key {k:?} is empty or given twice")));
        }
    }
    Ok(out)
}

/// The location `type=` and `ref=`/`dest=`/`src=` name (`dir_key`: `dest` or `src`).
fn location(
    flag: &'static str,
    value: &str,
    kv: &mut BTreeMap<String, String>,
    dir_key: &str,
) -> Result<CacheLocation, CacheSpecError> {
    let fail = |reason: String| CacheSpecError { flag, value: value.to_owned(), reason };
    let kind = kv.remove("type").unwrap_or_else(|| "registry".into());
    match kind.as_str() {
        "registry" => {
            let r = kv.remove("ref").ok_or_else(|| fail("type=registry needs ref=REPOSITORY[:TAG]".into()))?;
            let reference = ImageReference::parse(&r).map_err(|e| fail(e.to_string()))?;
            Ok(CacheLocation::Registry(reference.with_default_tag()))
        }
        "local" => {
            let dir = kv.remove(dir_key).ok_or_else(|| fail(format!("type=local needs {dir_key}=DIRECTORY")))?;
            if dir.is_empty() {
                return Err(fail(format!("{dir_key}= is empty")));
            }
            Ok(CacheLocation::Local(PathBuf::from(dir)))
        }
        "inline" | "gha" | "s3" | "azblob" => {
            Err(fail(format!("type={kind} is not supported (use type=registry or type=local)")))
        }
        other => Err(fail(format!("unknown type {other:?} (expected registry or local)"))),
    }
}

fn boolean(flag: &'static str, value: &str, key: &str, text: Option<String>) -> Result<bool, CacheSpecError> {
    match text.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => {
            Err(CacheSpecError { flag, value: value.into(), reason: format!("{key}={other}: expected true or false") })
        }
    }
}

impl CacheExportSpec {
    /// `type=registry,ref=R[,mode=min|max][,compression=gzip|zstd][,cache-mounts=true]`,
    /// `type=local,dest=DIR[,…]`, or a bare reference (buildx reads it as `type=registry,ref=`).
    pub fn parse(value: &str) -> Result<Self, CacheSpecError> {
        const FLAG: &str = "--cache-to";
        let fail = |reason: String| CacheSpecError { flag: FLAG, value: value.to_owned(), reason };
        let mut kv = if value.contains('=') {
            pairs(FLAG, value)?
        } else {
            BTreeMap::from([("ref".to_string(), value.to_string())])
        };
        let location = location(FLAG, value, &mut kv, "dest")?;
        let mode = match kv.remove("mode").as_deref() {
            None | Some("min") => CacheMode::Min,
            Some("max") => CacheMode::Max,
            Some(other) => return Err(fail(format!("mode={other}: expected min or max"))),
        };
        let compression = match kv.remove("compression").as_deref() {
            None | Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some(other) => return Err(fail(format!("compression={other}: expected gzip or zstd"))),
        };
        let cache_mounts = boolean(FLAG, value, "cache-mounts", kv.remove("cache-mounts"))?;
        let ignore_error = boolean(FLAG, value, "ignore-error", kv.remove("ignore-error"))?;
        if let Some(key) = kv.keys().next() {
            return Err(fail(format!("unknown option {key:?}")));
        }
        Ok(CacheExportSpec { location, mode, compression, cache_mounts, ignore_error })
    }
}

impl CacheImportSpec {
    /// `type=registry,ref=R`, `type=local,src=DIR`, or a bare image reference (classic).
    pub fn parse(value: &str) -> Result<Self, CacheSpecError> {
        const FLAG: &str = "--cache-from";
        if !value.contains('=') {
            ImageReference::parse(value).map_err(|e| CacheSpecError {
                flag: FLAG,
                value: value.into(),
                reason: e.to_string(),
            })?;
            return Ok(CacheImportSpec::Image(value.to_owned()));
        }
        let mut kv = pairs(FLAG, value)?;
        let location = location(FLAG, value, &mut kv, "src")?;
        if let Some(key) = kv.keys().next() {
            return Err(CacheSpecError { flag: FLAG, value: value.into(), reason: format!("unknown option {key:?}") });
        }
        Ok(CacheImportSpec::Cache(location))
    }
}

/// The `--cache-from` caches of one build, their records indexed by key.
#[derive(Debug, Default)]
pub struct ImportedCaches {
    sources: Vec<(CacheSource, HashMap<CacheKey, usize>)>,
}

impl ImportedCaches {
    /// Opens every cache `locations` name (manifest and record list only). A cache that is not
    /// there or cannot be read is reported through `warn` and skipped, as BuildKit does: a
    /// first build has no cache yet, and a broken cache must not break the build.
    pub fn open(locations: &[CacheLocation], opts: &RegistryOptions, warn: &dyn Fn(String)) -> Self {
        let mut sources = Vec::new();
        for location in locations {
            match CacheSource::open(location, opts) {
                Ok(source) => {
                    // A record whose key is not the hash of its inputs is not trusted.
                    let by_key = source
                        .config
                        .records
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.inputs.key() == r.key)
                        .map(|(i, r)| (r.key.clone(), i))
                        .collect();
                    sources.push((source, by_key));
                }
                Err(e) if e.is_absent() => warn(format!("importing cache {location}: not found, building without it")),
                Err(e) => warn(format!("importing cache {location}: {e}; building without it")),
            }
        }
        ImportedCaches { sources }
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// How many records each opened cache holds, for the build output.
    pub fn summary(&self) -> Vec<(String, usize, usize)> {
        self.sources
            .iter()
            .map(|(s, _)| (s.location.to_string(), s.config.records.len(), s.config.mounts.len()))
            .collect()
    }

    /// The first imported record for `key`.
    pub fn lookup(&self, key: &CacheKey) -> Option<(&CacheSource, &CacheEntry)> {
        self.sources.iter().find_map(|(s, by_key)| by_key.get(key).map(|i| (s, &s.config.records[*i])))
    }

    /// The archive of the cache mount `name` (a `cache-mounts/` directory name), if carried.
    pub fn mount(&self, name: &str) -> Option<(&CacheSource, &CachedMount)> {
        self.sources.iter().find_map(|(s, _)| s.config.mounts.iter().find(|m| m.name == name).map(|m| (s, m)))
    }

    /// Why no imported cache has `current`: against the newest imported record on the same
    /// parent for the same kind of instruction, else "no record in cache R". `None` without
    /// imported caches.
    pub fn explain(&self, current: &CacheKeyInputs) -> Option<MissReason> {
        if self.sources.is_empty() {
            return None;
        }
        let keyword =
            |i: &CacheKeyInputs| i.instruction.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        for (source, _) in &self.sources {
            let sibling = source
                .config
                .records
                .iter()
                .filter(|r| r.inputs.parent == current.parent && keyword(&r.inputs) == keyword(current))
                .max_by(|a, b| a.created.cmp(&b.created));
            if let Some(reason) = sibling.and_then(|r| explain_miss(&r.inputs, current)) {
                return Some(reason);
            }
        }
        let names: Vec<String> = self.sources.iter().map(|(s, _)| s.location.to_string()).collect();
        Some(MissReason::NoRecordInCache { cache: names.join(", ") })
    }
}

/// Brings the image of the imported record `entry` into the store (only the blobs it lacks)
/// and records it in `cache`, so that later lookups hit locally. Returns the image ID. A
/// record whose config does not list its layers is refused (the cache is untrusted input).
pub fn materialize(
    store: &ImageStore,
    cache: &CacheIndex,
    source: &CacheSource,
    entry: &CacheEntry,
) -> Result<String, BuildError> {
    let bad = |reason: String| CacheTransferError::Invalid {
        location: source.location.to_string(),
        reason: format!("record {}: {reason}", entry.key),
    };
    let config_digest = entry.config.sha256().map_err(|e| bad(e.to_string()))?;
    let mut layers = Vec::new();
    for l in &entry.layers {
        layers.push(LayerBlob {
            digest: l.blob.sha256().map_err(|e| bad(e.to_string()))?,
            diff_id: l.diff_id.parse().map_err(|e: crate::layer::digest::DigestParseError| bad(e.to_string()))?,
            size: l.blob.size,
            media_type: l.blob.media_type.as_str().into(),
            unpacked_size: l.unpacked_size,
        });
    }
    let work = store.work_dir()?;
    let blobs: Vec<BlobRef> =
        std::iter::once(entry.config.clone()).chain(entry.layers.iter().map(|l| l.blob.clone())).collect();
    source.fetch_blobs(store, &work, &blobs)?;
    let config = store.read_blob(&config_digest)?;
    let parsed = ImageConfig::from_json(&config).map_err(|e| bad(format!("image config: {e}")))?;
    let listed: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    if parsed.rootfs.diff_ids != listed {
        return Err(bad("its image config lists other layers than the record".into()).into());
    }
    let image = store.put_image_raw(&config, &layers, &PutImage::default())?;
    drop(work);
    let id = image.id.to_string();
    let record = CacheRecord {
        image: id.clone(),
        key: entry.key.clone(),
        inputs: entry.inputs.clone(),
        created: entry.created.clone(),
    };
    cache.put(&record)?;
    Ok(id)
}

/// The artifact entry for the local record of `key`: its inputs and its image's descriptors.
fn entry_of(store: &ImageStore, cache: &CacheIndex, key: &CacheKey) -> Result<Option<CacheEntry>, BuildError> {
    let Some(record) = cache.get(key)? else { return Ok(None) };
    let image = store.resolve(&record.image)?;
    let config = BlobRef {
        media_type: IMAGE_CONFIG_MEDIA_TYPE.into(),
        digest: image.id.to_string(),
        size: image.config_raw.len() as u64,
    };
    let layers = image
        .layers
        .iter()
        .map(|l| CachedLayer {
            blob: BlobRef { media_type: l.media_type.to_string(), digest: l.digest.to_string(), size: l.size },
            diff_id: l.diff_id.to_string(),
            unpacked_size: l.unpacked_size,
        })
        .collect();
    Ok(Some(CacheEntry { key: record.key, inputs: record.inputs, created: record.created, config, layers }))
}

/// What one build hands to [`export`].
pub struct ExportRequest<'a> {
    pub store: &'a ImageStore,
    pub cache: &'a CacheIndex,
    /// (stage index, effective key) of every step the build ran or took from cache.
    pub steps: &'a [(usize, CacheKey)],
    pub target_stage: usize,
    /// (name under `cache-mounts/`, directory) of every cache mount the build used.
    pub cache_mounts: &'a [(String, PathBuf)],
    /// The build's layer options (id mapping, epoch) for the cache-mount archives.
    pub diff: &'a DiffOptions,
    pub registry: &'a RegistryOptions,
}

/// Exports the records `spec.mode` selects (and the cache mounts when asked) to
/// `spec.location`. Returns the records exported and the transfer's outcome.
pub fn export(req: &ExportRequest, spec: &CacheExportSpec) -> Result<(usize, usize, ExportOutcome), BuildError> {
    let mut records = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (stage, key) in req.steps {
        if (spec.mode == CacheMode::Min && *stage != req.target_stage) || !seen.insert(key.clone()) {
            continue;
        }
        records.extend(entry_of(req.store, req.cache, key)?);
    }
    let work = req.store.work_dir()?;
    let mut mounts = Vec::new();
    let mut files = Vec::new();
    if spec.cache_mounts {
        let diff = DiffOptions { compression: spec.compression, ..req.diff.clone() };
        let mut done = std::collections::BTreeSet::new();
        for (name, dir) in req.cache_mounts {
            if !done.insert(name.clone()) {
                continue;
            }
            let out = work.path().join(format!("mount-{}", mounts.len()));
            fs_err::create_dir_all(&out)?;
            let layer = write_layer(dir, &out, &diff)?;
            let archive = BlobRef {
                media_type: layer.media_type.into(),
                digest: layer.digest.clone(),
                size: layer.compressed_size,
            };
            files.push((layer.digest.clone(), layer.path.clone()));
            mounts.push(CachedMount { name: name.clone(), archive });
        }
    }
    let (n_records, n_mounts) = (records.len(), mounts.len());
    let config = CacheConfig::new(records, mounts);
    // Repositories of the same registry this store's images came from or went to: the
    // registry can mount shared layers from them.
    let mount_from: Vec<ImageReference> = req.store.images()?.into_iter().flat_map(|i| i.tags).collect();
    let outcome =
        crate::registry::cache::export(req.store, &spec.location, &config, &files, req.registry, &mount_from)?;
    drop(work);
    Ok((n_records, n_mounts, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_to_values_parse_as_buildx_reads_them() {
        let spec = CacheExportSpec::parse(
            "type=registry,ref=127.0.0.1:5000/cache:x,mode=max,compression=zstd,cache-mounts=true",
        )
        .expect("parse");
        assert_eq!(spec.mode, CacheMode::Max);
        assert_eq!(spec.compression, Compression::Zstd);
        assert!(spec.cache_mounts && !spec.ignore_error);
        assert_eq!(spec.location.to_string(), "127.0.0.1:5000/cache:x");
        let bare = CacheExportSpec::parse("127.0.0.1:5000/cache").expect("bare");
        assert_eq!(bare.location.to_string(), "127.0.0.1:5000/cache:latest");
        assert_eq!(bare.mode, CacheMode::Min);
        let local = CacheExportSpec::parse("type=local,dest=/tmp/c").expect("local");
        assert_eq!(local.location, CacheLocation::Local("/tmp/c".into()));
        for (bad, says) in [
            ("type=local", "type=local needs dest=DIRECTORY"),
            ("type=registry", "needs ref="),
            ("type=registry,ref=r,mode=all", "mode=all: expected min or max"),
            ("type=registry,ref=r,compression=lz4", "compression=lz4"),
            ("type=registry,ref=r,colour=red", "unknown option \"colour\""),
            ("type=gha", "type=gha is not supported"),
            ("type=registry,ref=r,ref=s", "given twice"),
            ("type=registry,ref=app/UPPER", "--cache-to"),
            ("type=registry,ref=r,cache-mounts=yes", "cache-mounts=yes: expected true or false"),
        ] {
            let err = CacheExportSpec::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(says) && err.starts_with("--cache-to"), "{bad}: {err}");
        }
    }

    #[test]
    fn cache_from_values_are_caches_or_classic_images() {
        assert_eq!(
            CacheImportSpec::parse("type=local,src=/c").expect("local"),
            CacheImportSpec::Cache(CacheLocation::Local("/c".into()))
        );
        assert_eq!(CacheImportSpec::parse("app:1").expect("image"), CacheImportSpec::Image("app:1".into()));
        let err = CacheImportSpec::parse("type=local,dest=/c").expect_err("src").to_string();
        assert!(err.contains("type=local needs src=DIRECTORY"), "{err}");
    }
}
