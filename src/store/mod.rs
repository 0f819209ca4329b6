//! The content-addressed local store: OCI image layout, tags, cache records, unpacked layers,
//! locking and garbage collection.
//!
//! # On disk (`$RBUILD_ROOT`, else `/var/lib/rbuild` for root, else `$XDG_DATA_HOME/rbuild`)
//! ```text
//! oci-layout  index.json  blobs/sha256/<hex>      the OCI image layout (skopeo/umoci read it)
//! layers/<chain-id hex>/                          unpacked layer trees (overlay lower dirs)
//! containers/<id>.json  cache/<key>.json          records that keep images alive
//! tmp/work-*/                                     writers' work dirs (see `lock`)
//! tmp/lease-*/                                    leases of running builds, containers, pushes, saves (see `lease`)
//! lock                                            the store lock
//! ```
//! The root and the dirs holding unpacked layers, containers, runtime state and work dirs are
//! owner-only (0700), and made so again when an existing store is opened: a setuid file or a
//! device node in a layer is never reachable by another user. Opening a store also removes
//! the work dirs and leases of commands that died (`kill -9`), when the lock is free.
//! One damaged image (a corrupt or missing manifest or config) is reported by name and
//! digest ([`DamagedImage`]); the rest of the store keeps working.
//! Every image is one manifest descriptor per tag in `index.json`, annotated with
//! `org.opencontainers.image.ref.name` = the familiar reference (`busybox:latest`, so
//! `skopeo inspect oci:$RBUILD_ROOT:busybox:latest` works); an untagged image has one
//! descriptor without that annotation. The image ID is the digest of the config blob.
//!
//! # API for the build engine and the runtime
//! ```text
//! ImageStore::open(root) / ImageStore::open_default()        create the layout if missing
//! store.work_dir() -> WorkDir                                 tmp/work-*/ on the store's fs
//! work.blob_writer() -> BlobWriter; writer.commit(None)       write, hash, fsync, rename
//! work.commit_blob_file(&file, &digest)                       move an already-digested file into blobs/
//! work.commit_layer_dir(&dir, &chain_id) -> PathBuf           register a dir as layers/<chain-id>/
//! store.layer_dir(&chain_id) -> PathBuf                       layers/<chain-id hex>/
//! store.put_image(&config, &[LayerBlob], &[ImageReference]) -> StoredImage
//! store.put_image_raw(config_json, &[LayerBlob], &PutImage) -> StoredImage   (parent, tags)
//! store.resolve("busybox" | "sha256:…" | "3f2a…" short ID) -> StoredImage
//!     StoredImage { id, manifest_digest, manifest, config, config_raw, tags, parent,
//!                   layers: Vec<StoredLayer { digest, diff_id, size, media_type, chain_id, unpacked_dir }> }
//! store.ensure_unpacked(&image) -> Vec<PathBuf>               lower dirs, bottom layer first
//! store.add_container(id, &image_id) / store.remove_container(id)   keep an image in use
//! store.container_users() / store.cache_users()             image ID -> who uses it
//! store.remove_image(name, force) / store.prune(all) / store.gc() / store.check(repair)
//! store.leased("build") -> ImageStore                         a handle leasing what it resolves and writes
//! store.catalog() -> (Vec<StoredImage>, Vec<DamagedImage>)    images() without the damaged ones
//! store.read_blob(&digest) / store.open_blob(&digest)         digest verified on read
//! ```
//! A `WorkDir` pins what it commits until it is dropped, so put the image (which references
//! the blobs and layers) before dropping it. `load` and `import` only write blobs; layers
//! are unpacked lazily by `ensure_unpacked` (verifying each diff ID) when a build needs them
//! as lower dirs. `flatten_into` applies all layers into one rootfs (whiteouts delete).

pub mod archive;
pub mod atomic;
pub mod import;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod reference;
pub mod trees;

use crate::image::ImageConfig;
use crate::layer::apply::{ApplyError, LayerApply, OwnerTable, WhiteoutMode};
use crate::layer::compression::Compression;
use crate::layer::digest::{chain_ids, DigestParseError, HashingWriter, Sha256Digest};
use atomic::fsync_dir;
use fs_err as fs;
pub use lock::{StoreLock, WorkDir};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
pub use reference::{ImageReference, ReferenceError};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
pub const PARENT_ANNOTATION: &str = "io.rbuild.image.parent";
/// Layer descriptor annotation: [`LayerBlob::unpacked_size`].
pub const UNPACKED_SIZE_ANNOTATION: &str = "io.rbuild.layer.unpacked-size";
pub const ADDED_ANNOTATION: &str = "io.rbuild.image.added";
/// The image ID (config digest) of an index entry, so that lookups by ID need not read every
/// manifest. Entries written by other tools lack it; their manifest is read instead.
pub const IMAGE_ID_ANNOTATION: &str = "io.rbuild.image.id";

/// What went wrong in the store; every variant names the path, digest or reference involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("blob {digest} is missing from the store ({path})")]
    MissingBlob { digest: Sha256Digest, path: PathBuf },
    #[error("blob {digest} is corrupt: its content hashes to {actual} ({path})")]
    CorruptBlob { digest: Sha256Digest, actual: Sha256Digest, path: PathBuf },
    #[error("{what} {path}: invalid JSON: {source}")]
    Json { what: &'static str, path: String, source: serde_json::Error },
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Digest(#[from] DigestParseError),
    #[error("layer {digest}: {source}")]
    Apply { digest: Sha256Digest, source: ApplyError },
    #[error("layer {digest}: content has diff ID {actual}, the image config says {expected}")]
    DiffIdMismatch { digest: Sha256Digest, expected: Sha256Digest, actual: Sha256Digest },
    #[error("image config {id}: {reason}")]
    BadImage { id: String, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{path}: {reason}")]
    BadArchive { path: String, reason: String },
    #[error("{0}")]
    Damaged(Box<DamagedImage>),
    #[error("the disk holding the store {root} is full while {during}: {source}")]
    DiskFull { root: PathBuf, during: String, source: io::Error },
}

/// Whether `e` says the disk is full (ENOSPC, or EDQUOT: a quota is as full as a disk).
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// An image in the index whose manifest, config or layer list cannot be read.
#[derive(Debug)]
pub struct DamagedImage {
    /// Its tags (empty when untagged).
    pub tags: Vec<ImageReference>,
    pub manifest: Sha256Digest,
    pub error: StoreError,
}

impl DamagedImage {
    fn new(tags: Vec<ImageReference>, manifest: Sha256Digest, error: StoreError) -> Self {
        DamagedImage { tags, manifest, error }
    }

    /// Its tags, or `<none>` for an untagged image.
    pub fn name(&self) -> String {
        match self.tags.as_slice() {
            [] => "<none>".to_owned(),
            tags => tags.iter().map(|t| t.familiar()).collect::<Vec<_>>().join(", "),
        }
    }
}

impl std::fmt::Display for DamagedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "image {} (manifest {}) is damaged: {}; `rbuild store check --repair` removes it",
            self.name(),
            self.manifest,
            self.error
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A layer blob already in `blobs/`, as given to [`ImageStore::put_image`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBlob {
    pub digest: Sha256Digest,
    pub diff_id: Sha256Digest,
    pub size: u64,
    pub media_type: MediaType,
    /// What the layer's files take unpacked, when known (recorded as the layer was written;
    /// see `CommittedLayer::unpacked_size`): the size `images` and `history` show, as Docker does.
    pub unpacked_size: Option<u64>,
}

/// Images written but not yet in the index (see [`ImageStore::image_batch`]); its work dir
/// pins their blobs and layers until [`ImageStore::commit_batch`] or drop.
pub struct ImageBatch {
    /// Made on the first image: a stage whose steps all come from cache writes nothing.
    work: Option<WorkDir>,
    /// (manifest digest, manifest size, image ID, parent image ID), in the order written.
    pending: Vec<(Sha256Digest, u64, Sha256Digest, Option<Sha256Digest>)>,
    pinned: HashSet<Sha256Digest>,
}

impl ImageBatch {
    /// Whether no image waits for the index.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// One layer of a stored image.
#[derive(Clone, Debug)]
pub struct StoredLayer {
    pub digest: Sha256Digest,
    pub diff_id: Sha256Digest,
    pub size: u64,
    pub media_type: MediaType,
    /// See [`LayerBlob::unpacked_size`].
    pub unpacked_size: Option<u64>,
    pub chain_id: Sha256Digest,
    /// `layers/<chain-id hex>/`; exists once [`ImageStore::ensure_unpacked`] ran.
    pub unpacked_dir: PathBuf,
}

impl StoredLayer {
    /// The size `history` shows: [`LayerBlob::unpacked_size`], else the blob size.
    pub fn shown_size(&self) -> u64 {
        self.unpacked_size.unwrap_or(self.size)
    }
}

/// An image in the store.
#[derive(Clone, Debug)]
pub struct StoredImage {
    /// sha256 of the config blob.
    pub id: Sha256Digest,
    pub manifest_digest: Sha256Digest,
    pub manifest_size: u64,
    pub manifest: ImageManifest,
    /// The config, parsed once when the image was read or written.
    pub config: ImageConfig,
    /// The config blob's bytes (whose sha256 is `id`).
    pub config_raw: Vec<u8>,
    /// Tags in the order they were added.
    pub tags: Vec<ImageReference>,
    pub parent: Option<Sha256Digest>,
    /// When the image entered this store (RFC 3339), if recorded.
    pub added: Option<String>,
    pub layers: Vec<StoredLayer>,
}

impl StoredImage {
    /// The image's layers as blobs, in order: what `put_image_raw` takes to build on them.
    pub fn layer_blobs(&self) -> Vec<LayerBlob> {
        self.layers
            .iter()
            .map(|l| LayerBlob {
                digest: l.digest.clone(),
                diff_id: l.diff_id.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
                unpacked_size: l.unpacked_size,
            })
            .collect()
    }

    /// Sum of the layer blob sizes.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// The image's size as Docker shows it: the file content of its layers (a layer whose
    /// content size was not recorded counts its blob size).
    pub fn unpacked_size(&self) -> u64 {
        self.layers.iter().map(StoredLayer::shown_size).sum()
    }
}

/// Options for [`ImageStore::put_image_raw`].
#[derive(Clone, Debug, Default)]
pub struct PutImage {
    pub tags: Vec<ImageReference>,
    pub parent: Option<Sha256Digest>,
}

/// An open store.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
    /// Images already read, by manifest digest. Manifests and configs are content-addressed
    /// and never change, so what was read once stays true; only the index (tags, which
    /// manifests are present) is read again for every lookup. Without this, every lookup
    /// read and verified two blobs per image in the store.
    loaded: Arc<Mutex<HashMap<Sha256Digest, Arc<StoredImage>>>>,
    /// The index as last parsed, with the stamp (device, inode, size, mtime) of the file it
    /// was read from; a build reads it several times per step.
    index_cache: Arc<Mutex<Option<(IndexStamp, ImageIndex)>>>,
    /// Set by [`ImageStore::leased`]: what this handle hands out is leased (see `lease`).
    lease: Option<Arc<lease::Lease>>,
}

type IndexStamp = (u64, u64, u64, i64, i64);

/// An image of the index before its content is read: what lookups by name compare.
struct IndexEntry {
    manifest: Sha256Digest,
    size: u64,
    id: Sha256Digest,
    tags: Vec<ImageReference>,
    parent: Option<Sha256Digest>,
    added: Option<String>,
}

impl ImageNames for IndexEntry {
    fn image_id(&self) -> &Sha256Digest {
        &self.id
    }
    fn manifest(&self) -> &Sha256Digest {
        &self.manifest
    }
    fn tag_list(&self) -> &[ImageReference] {
        &self.tags
    }
}

/// What a lookup by name compares: the same for a full [`StoredImage`] and an index entry.
trait ImageNames {
    fn image_id(&self) -> &Sha256Digest;
    fn manifest(&self) -> &Sha256Digest;
    fn tag_list(&self) -> &[ImageReference];
}

impl ImageNames for StoredImage {
    fn image_id(&self) -> &Sha256Digest {
        &self.id
    }
    fn manifest(&self) -> &Sha256Digest {
        &self.manifest_digest
    }
    fn tag_list(&self) -> &[ImageReference] {
        &self.tags
    }
}

/// Writes a blob into `tmp/`, hashing it; [`BlobWriter::commit`] fsyncs and renames it into
/// `blobs/sha256/`.
pub struct BlobWriter<'w> {
    work: &'w WorkDir,
    store: ImageStore,
    path: PathBuf,
    inner: HashingWriter<io::BufWriter<std::fs::File>>,
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter<'_> {
    /// Fsyncs and moves the blob into the store; with `expected`, refuses other content.
    pub fn commit(self, expected: Option<&Sha256Digest>) -> Result<(Sha256Digest, u64)> {
        self.finish(expected, Durability::Now)
    }

    fn finish(self, expected: Option<&Sha256Digest>, durability: Durability) -> Result<(Sha256Digest, u64)> {
        let (digest, size, buf) = self.inner.finish();
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        if let Some(exp) = expected {
            if *exp != digest {
                let _ = std::fs::remove_file(&self.path);
                return Err(StoreError::CorruptBlob { digest: exp.clone(), actual: digest, path: self.path });
            }
        }
        if durability == Durability::Now {
            file.sync_all().map_err(|e| io::Error::new(e.kind(), format!("fsync {}: {e}", self.path.display())))?;
        }
        drop(file);
        self.work.install_blob(&self.store, &self.path, &digest, durability)?;
        Ok((digest, size))
    }
}

/// When a new blob must be on disk: at once (fsync of the file and of `blobs/sha256`), or at
/// the next [`ImageStore::commit_batch`], whose one `syncfs` covers every blob of the batch
/// before the index names any of them (a build's config-only steps would otherwise cost two
/// fsyncs each, most of such a step's time on a journaled disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    Now,
    AtBatchCommit,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl WorkDir {
    /// A writer for a new blob.
    pub fn blob_writer(&self, store: &ImageStore) -> Result<BlobWriter<'_>> {
        let path =
            self.path().join(format!("blob-{}", WORK_BLOB_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        let file = fs::File::create(&path)?.into_parts().0;
        Ok(BlobWriter {
            work: self,
            store: store.clone(),
            path,
            inner: HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Moves `file` (already written, fsynced and digested by the caller, on the store's
    /// filesystem) into `blobs/sha256/<digest>`.
    pub fn commit_blob_file(&self, store: &ImageStore, file: &Path, digest: &Sha256Digest) -> Result<()> {
        self.install_blob(store, file, digest, Durability::Now)
    }

    /// Pin and rename happen under the store lock: a concurrent `rmi`/`gc` (which scans the
    /// pins and deletes under the same lock) either runs before, and cannot see the new file,
    /// or after, and sees the pin.
    /// A blob already in place is kept unless its size differs from the new one: an
    /// interrupted unsynced write (see [`Durability`]) leaves a short file, which is replaced.
    fn install_blob(
        &self,
        store: &ImageStore,
        file: &Path,
        digest: &Sha256Digest,
        durability: Durability,
    ) -> Result<()> {
        let dest = store.blob_path(digest);
        let _lock = store.lock()?;
        self.pin("blob", digest)?;
        if let Ok(existing) = std::fs::metadata(&dest) {
            if std::fs::metadata(file).is_ok_and(|new| new.len() == existing.len()) {
                let _ = std::fs::remove_file(file);
                return Ok(());
            }
        }
        fs::rename(file, &dest)?;
        if durability == Durability::Now {
            fsync_dir(&store.root.join("blobs/sha256"))?;
        }
        Ok(())
    }

    /// Registers `dir` (complete, on the store's filesystem) as the unpacked layer for
    /// `chain_id`, by rename. If another process got there first, `dir` is removed.
    pub fn commit_layer_dir(&self, store: &ImageStore, dir: &Path, chain_id: &Sha256Digest) -> Result<PathBuf> {
        atomic::sync_filesystem(dir)?;
        let dest = store.layer_dir(chain_id);
        let _lock = store.lock()?;
        self.pin("layer", chain_id)?;
        if dest.exists() {
            let _ = trees::remove_tree(dir);
            return Ok(dest);
        }
        fs::rename(dir, &dest)?;
        fsync_dir(&store.root.join("layers"))?;
        Ok(dest)
    }
}

static WORK_BLOB_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl ImageStore {
    /// The store root from the environment (see the module header).
    pub fn default_root() -> PathBuf {
        if let Some(r) = std::env::var_os("RBUILD_ROOT").filter(|r| !r.is_empty()) {
            return PathBuf::from(r);
        }
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/rbuild");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|r| !r.is_empty()) {
            return PathBuf::from(x).join("rbuild");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
        PathBuf::from(home).join(".local/share/rbuild")
    }

    pub fn open_default() -> Result<Self> {
        Self::open(&Self::default_root())
    }

    /// The store at [`ImageStore::default_root`] to read from, if there is one: nothing is
    /// created, repaired or reclaimed, and nothing is leased (`build --dry-run` writes nothing).
    pub fn existing_default() -> Result<Option<Self>> {
        let root = Self::default_root();
        if !root.join("index.json").is_file() {
            return Ok(None);
        }
        Ok(Some(Self { root, loaded: Arc::default(), index_cache: Arc::default(), lease: None }))
    }

    /// Opens the store at `root`, creating the layout if it is missing.
    pub fn open(root: &Path) -> Result<Self> {
        let store = Self { root: root.to_path_buf(), loaded: Arc::default(), index_cache: Arc::default(), lease: None };
        make_private_dir(root)?;
        for d in ["blobs/sha256", "layers", "containers", "cache", "tmp"] {
            fs::create_dir_all(root.join(d))?;
        }
        for d in PRIVATE_DIRS {
            make_private_dir(&root.join(d))?;
        }
        for d in ["layers", "tmp"] {
            mark_top_dir(&root.join(d));
        }
        if !root.join("oci-layout").exists() || !root.join("index.json").exists() {
            let _lock = store.lock()?;
            if !root.join("oci-layout").exists() {
                store.write_atomic(&root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            }
            if !root.join("index.json").exists() {
                store.write_index(&[])?;
            }
        }
        store.reclaim_dead_work_dirs();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store lock (blocking).
    pub fn lock(&self) -> Result<StoreLock> {
        Ok(StoreLock::acquire(&self.root.join("lock"))?)
    }

    /// The store lock when it is free now, else `None` (never waits).
    pub fn try_lock(&self) -> Result<Option<StoreLock>> {
        Ok(StoreLock::try_acquire(&self.root.join("lock"))?)
    }

    /// A new work dir in `tmp/`. It is created under the store lock, so a concurrent `gc`
    /// (which scans `tmp/` under the same lock) never sees it before its pin file is locked.
    pub fn work_dir(&self) -> Result<WorkDir> {
        let _lock = self.lock()?;
        Ok(WorkDir::create(&self.root.join("tmp"))?)
    }

    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn layer_dir(&self, chain_id: &Sha256Digest) -> PathBuf {
        self.root.join("layers").join(chain_id.hex())
    }

    pub fn has_blob(&self, digest: &Sha256Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Writes `bytes` to `path` via `tmp/`, fsync and rename (see [`atomic::write_atomic`]).
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        atomic::write_atomic(&self.root.join("tmp"), path, bytes, atomic::Durability::Synced)?;
        Ok(())
    }

    /// Reads a whole blob, verifying its digest.
    pub fn read_blob(&self, digest: &Sha256Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob { digest: digest.clone(), path })
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())).into()),
        };
        let actual = Sha256Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::CorruptBlob { digest: digest.clone(), actual, path });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming; the reader fails at its end if the content does not match.
    pub fn open_blob(&self, digest: &Sha256Digest) -> Result<VerifiedBlob> {
        let path = self.blob_path(digest);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob { digest: digest.clone(), path })
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())).into()),
        };
        Ok(VerifiedBlob {
            expected: digest.clone(),
            path,
            inner: crate::layer::digest::HashingReader::new(file),
            done: false,
        })
    }

    /// Writes a small blob (config, manifest) from memory.
    pub fn put_blob_bytes(&self, work: &WorkDir, bytes: &[u8]) -> Result<Sha256Digest> {
        self.put_small_blob(work, bytes, Durability::Now)
    }

    fn put_small_blob(&self, work: &WorkDir, bytes: &[u8], durability: Durability) -> Result<Sha256Digest> {
        let digest = Sha256Digest::of(bytes);
        let path = self.blob_path(&digest);
        let in_place = || std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if in_place() {
            let _lock = self.lock()?;
            if in_place() {
                work.pin("blob", &digest)?;
                if durability == Durability::Now {
                    // Another build may have written it unsynced (its batch not committed yet).
                    fs::File::open(&path)?.sync_all()?;
                }
                return Ok(digest);
            }
        }
        let mut w = work.blob_writer(self)?;
        w.write_all(bytes)?;
        w.finish(Some(&digest), durability)?;
        Ok(digest)
    }

    // ---- index.json ----

    pub(crate) fn read_index(&self) -> Result<ImageIndex> {
        use std::os::unix::fs::MetadataExt;
        let path = self.root.join("index.json");
        // The stamp and the bytes come from the same open file: every write renames a new
        // file into place, so a stamp names one content.
        let mut file = fs::File::open(&path)?;
        let meta = file.metadata()?;
        let stamp = (meta.dev(), meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec());
        if let Some((cached, index)) = self.index_cache.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if *cached == stamp {
                return Ok(index.clone());
            }
        }
        let mut bytes = Vec::with_capacity(meta.size() as usize);
        file.read_to_end(&mut bytes)?;
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: "index",
            path: path.display().to_string(),
            source,
        })?;
        *self.index_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((stamp, index.clone()));
        Ok(index)
    }

    pub(crate) fn write_index(&self, manifests: &[Descriptor]) -> Result<()> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).map_err(io::Error::other)?;
        self.write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// Builds the manifest and config blobs for an image and adds it to the index.
    pub fn put_image(
        &self,
        config: &ImageConfig,
        layers: &[LayerBlob],
        tags: &[ImageReference],
    ) -> Result<StoredImage> {
        let raw = config.to_json().map_err(io::Error::other)?;
        self.put_image_raw(&raw, layers, &PutImage { tags: tags.to_vec(), parent: None })
    }

    /// Like [`ImageStore::put_image`] with the config JSON as bytes (kept byte for byte, so
    /// the image ID is the digest of exactly these bytes).
    pub fn put_image_raw(&self, config_json: &[u8], layers: &[LayerBlob], opts: &PutImage) -> Result<StoredImage> {
        let work = self.work_dir()?;
        let (manifest_digest, manifest_bytes, _) =
            self.write_image_blobs(&work, Durability::Now, config_json, layers)?;
        if self.lease.is_some() {
            // Leased before it is in the index, so no `prune` can take it in between.
            self.lease_image(&self.image_of_manifest(
                &manifest_digest,
                manifest_bytes.len() as u64,
                &manifest_bytes,
            )?)?;
        }
        self.add_to_index(&manifest_digest, manifest_bytes.len() as u64, &opts.tags, opts.parent.as_ref())?;
        self.resolve(&Sha256Digest::of(config_json).to_string())
    }

    /// A batch of untagged images (a build's steps) whose index entries are written together
    /// by [`ImageStore::commit_batch`]: one index rewrite per batch instead of one per image,
    /// so a stage of N steps costs O(N) index work, not O(N²).
    pub fn image_batch(&self) -> Result<ImageBatch> {
        Ok(ImageBatch { work: None, pending: Vec::new(), pinned: HashSet::new() })
    }

    /// Like [`ImageStore::put_image_raw`] without tags: the blobs are written (and, with the
    /// image's layers, pinned by the batch) now; the index entry waits for
    /// [`ImageStore::commit_batch`]. The image can be used (as a parent, unpacked, run) at
    /// once, but [`ImageStore::resolve`] finds it only after the commit.
    pub fn put_image_in_batch(
        &self,
        batch: &mut ImageBatch,
        config_json: &[u8],
        layers: &[LayerBlob],
        parent: Option<Sha256Digest>,
    ) -> Result<StoredImage> {
        let work = match &mut batch.work {
            Some(work) => work,
            none => none.insert(self.work_dir()?),
        };
        for l in layers {
            if batch.pinned.insert(l.digest.clone()) {
                work.pin("blob", &l.digest)?;
            }
        }
        let (manifest_digest, manifest_bytes, config) =
            self.write_image_blobs(work, Durability::AtBatchCommit, config_json, layers)?;
        let size = manifest_bytes.len() as u64;
        // Built from what was just written, not read back: the config can be large (a long
        // history) and a stage writes one per step.
        let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|source| StoreError::Json {
            what: "manifest",
            path: manifest_digest.to_string(),
            source,
        })?;
        let mut image = self.image_from_parts(&manifest_digest, size, manifest, config_json.to_vec(), config)?;
        // A build's lease keeps the image once the batch's pins are gone.
        self.lease_image(&image)?;
        image.parent = parent.clone();
        batch.pending.push((manifest_digest, size, image.id.clone(), parent));
        Ok(image)
    }

    /// Adds every image of `batch` to the index in one write, then releases its pins.
    pub fn commit_batch(&self, batch: ImageBatch) -> Result<()> {
        if batch.pending.is_empty() {
            return Ok(());
        }
        // One sync for every blob the batch wrote unsynced, before the index names them; not
        // under the store lock, which would hold every other rbuild process for its length.
        atomic::sync_filesystem(&self.root)?;
        let _lock = self.lock()?;
        let mut entries: Vec<Descriptor> = self.read_index()?.manifests().clone();
        let present: HashSet<Sha256Digest> = entries.iter().map(|d| Sha256Digest::from(d.digest())).collect();
        for (manifest_digest, size, id, parent) in &batch.pending {
            if present.contains(manifest_digest) {
                continue;
            }
            let mut ann = HashMap::from([
                (ADDED_ANNOTATION.to_string(), now_rfc3339()),
                (IMAGE_ID_ANNOTATION.to_string(), id.to_string()),
            ]);
            if let Some(p) = parent {
                ann.insert(PARENT_ANNOTATION.into(), p.to_string());
            }
            let mut d = Descriptor::new(MediaType::ImageManifest, *size, manifest_digest.to_oci());
            d.set_annotations(Some(ann));
            entries.push(d);
        }
        self.write_index(&entries)?;
        drop(batch);
        Ok(())
    }

    /// Writes the config blob and an OCI manifest over `layers` (whose blobs must be in the
    /// store), pinned by `work`; returns the manifest's digest and bytes, and the parsed config.
    fn write_image_blobs(
        &self,
        work: &WorkDir,
        durability: Durability,
        config_json: &[u8],
        layers: &[LayerBlob],
    ) -> Result<(Sha256Digest, Vec<u8>, ImageConfig)> {
        let config = ImageConfig::from_json(config_json).map_err(|source| StoreError::Json {
            what: "image config",
            path: "(new image)".into(),
            source,
        })?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != layers.len() || diff_ids.iter().zip(layers).any(|(d, l)| *d != l.diff_id.to_string()) {
            return Err(StoreError::BadImage {
                id: Sha256Digest::of(config_json).to_string(),
                reason: "rootfs.diff_ids do not match the layers".into(),
            });
        }
        for l in layers {
            if !self.has_blob(&l.digest) {
                return Err(StoreError::MissingBlob { digest: l.digest.clone(), path: self.blob_path(&l.digest) });
            }
        }
        let config_digest = self.put_small_blob(work, config_json, durability)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_json.len() },
            "layers": layers.iter().map(|l| {
                let mut d = serde_json::json!({
                    "mediaType": l.media_type.to_string(), "digest": l.digest.to_string(), "size": l.size,
                });
                if let Some(n) = l.unpacked_size {
                    d["annotations"] = serde_json::json!({ UNPACKED_SIZE_ANNOTATION: n.to_string() });
                }
                d
            }).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
        let manifest_digest = self.put_small_blob(work, &manifest_bytes, durability)?;
        Ok((manifest_digest, manifest_bytes, config))
    }

    /// Adds an image whose manifest was made elsewhere (a registry), keeping the manifest
    /// byte for byte so its digest stays the one the registry serves. The config and layer
    /// blobs must already be in the store, pinned by `work`; the config's diff IDs must match
    /// the layers.
    pub fn put_manifest_raw(&self, work: &WorkDir, manifest_json: &[u8], opts: &PutImage) -> Result<StoredImage> {
        let digest = Sha256Digest::of(manifest_json);
        // Checked (config present, diff IDs matching the layers) before anything is written.
        let image = self.image_of_manifest(&digest, manifest_json.len() as u64, manifest_json)?;
        let id = image.id.clone();
        self.put_blob_bytes(work, manifest_json)?;
        self.lease_image(&image)?;
        self.add_to_index(&digest, manifest_json.len() as u64, &opts.tags, opts.parent.as_ref())?;
        let (entries, _) = self.index_entries()?;
        // The image whose tags (or, untagged, whose manifest) are this manifest's.
        let entry = entries
            .iter()
            .find(|e| e.manifest == digest)
            .or_else(|| entries.iter().find(|e| e.id == id))
            .ok_or_else(|| StoreError::NoSuchImage(digest.to_string()))?;
        self.stored(entry)
    }

    /// The manifest digest a tag points at in the index (`busybox` means `busybox:latest`).
    pub fn tagged_manifest(&self, reference: &ImageReference) -> Result<Option<Sha256Digest>> {
        let familiar = reference.clone().with_default_tag().familiar();
        let index = self.read_index()?;
        Ok(index
            .manifests()
            .iter()
            .find(|d| d.annotations().as_ref().and_then(|a| a.get(REF_NAME_ANNOTATION)) == Some(&familiar))
            .map(|d| Sha256Digest::from(d.digest())))
    }

    /// Adds (or re-tags) a manifest in the index: every tag moves to this manifest; with no
    /// tags the image is kept untagged unless it already has an entry.
    pub(crate) fn add_to_index(
        &self,
        manifest_digest: &Sha256Digest,
        size: u64,
        tags: &[ImageReference],
        parent: Option<&Sha256Digest>,
    ) -> Result<Vec<Sha256Digest>> {
        let _lock = self.lock()?;
        // Under the lock nothing can delete blobs: make sure the image is complete.
        let manifest: ImageManifest = serde_json::from_slice(&self.read_blob(manifest_digest)?)
            .map_err(|source| StoreError::Json { what: "manifest", path: manifest_digest.to_string(), source })?;
        for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
            let d = Sha256Digest::from(d.digest());
            if !self.has_blob(&d) {
                return Err(StoreError::MissingBlob { path: self.blob_path(&d), digest: d });
            }
        }
        // A registry's Docker schema2 manifest keeps its media type, so readers of the layout
        // (skopeo) parse it as what it is.
        let media_type = manifest.media_type().clone().unwrap_or(MediaType::ImageManifest);
        let index = self.read_index()?;
        let mut entries: Vec<Descriptor> = index.manifests().clone();
        let familiar: Vec<String> = tags.iter().map(|t| t.clone().with_default_tag().familiar()).collect();
        // Manifests that lose their last tag become untagged entries.
        let mut orphaned = Vec::new();
        entries.retain(|d| {
            let name = d.annotations().as_ref().and_then(|a| a.get(REF_NAME_ANNOTATION));
            match name {
                Some(n) if familiar.contains(n) => {
                    let dg = Sha256Digest::from(d.digest());
                    if dg != *manifest_digest {
                        orphaned.push((dg, d.clone()));
                    }
                    false
                }
                _ => true,
            }
        });
        let same_manifest = |d: &Descriptor| Sha256Digest::from(d.digest()) == *manifest_digest;
        // Looked up in the index as it was: re-tagging an image with the tag it already has
        // removed its only entry above, and its parent and time must survive.
        let existing_annotations = index
            .manifests()
            .iter()
            .find(|d| same_manifest(d))
            .and_then(|d| d.annotations().clone())
            .unwrap_or_default();
        let mut base: HashMap<String, String> =
            existing_annotations.into_iter().filter(|(k, _)| k != REF_NAME_ANNOTATION).collect();
        base.entry(ADDED_ANNOTATION.into()).or_insert_with(now_rfc3339);
        base.insert(IMAGE_ID_ANNOTATION.into(), manifest.config().digest().to_string());
        if let Some(p) = parent {
            base.insert(PARENT_ANNOTATION.into(), p.to_string());
        }
        let mk = |name: Option<&String>| {
            let mut ann = base.clone();
            if let Some(n) = name {
                ann.insert(REF_NAME_ANNOTATION.into(), n.clone());
            }
            let mut d = Descriptor::new(media_type.clone(), size, manifest_digest.to_oci());
            d.set_annotations(Some(ann));
            d
        };
        if familiar.is_empty() {
            if !entries.iter().any(same_manifest) {
                entries.push(mk(None));
            }
        } else {
            // Drop an untagged entry of this manifest: it is tagged now.
            entries.retain(|d| {
                !(same_manifest(d) && d.annotations().as_ref().and_then(|a| a.get(REF_NAME_ANNOTATION)).is_none())
            });
            for n in &familiar {
                entries.push(mk(Some(n)));
            }
        }
        let mut dangling = Vec::new();
        for (dg, mut d) in orphaned {
            if !entries.iter().any(|e| Sha256Digest::from(e.digest()) == dg) {
                let mut ann = d.annotations().clone().unwrap_or_default();
                ann.remove(REF_NAME_ANNOTATION);
                d.set_annotations(Some(ann));
                entries.push(d);
                dangling.push(dg);
            }
        }
        self.write_index(&entries)?;
        Ok(dangling)
    }

    /// Every readable image in the index (one per config digest), in index order. Damaged
    /// images (a blob missing, corrupt or unparsable) are left out: [`ImageStore::catalog`]
    /// names them.
    pub fn images(&self) -> Result<Vec<StoredImage>> {
        Ok(self.catalog()?.0)
    }

    /// Every image in the index, readable ones first and then the damaged ones, each with
    /// what is wrong: one bad blob does not hide the rest of the store.
    pub fn catalog(&self) -> Result<(Vec<StoredImage>, Vec<DamagedImage>)> {
        let (entries, mut damaged) = self.index_entries()?;
        let mut good = Vec::with_capacity(entries.len());
        for e in &entries {
            match self.stored(e) {
                Ok(image) => good.push(image),
                Err(error) => damaged.push(DamagedImage::new(e.tags.clone(), e.manifest.clone(), error)),
            }
        }
        Ok((good, damaged))
    }

    /// The index grouped as [`ImageStore::images`] groups it (one entry per image ID, tags
    /// gathered), reading a manifest only for entries without [`IMAGE_ID_ANNOTATION`]; such
    /// entries whose manifest cannot be read come back as damaged.
    fn index_entries(&self) -> Result<(Vec<IndexEntry>, Vec<DamagedImage>)> {
        let index = self.read_index()?;
        let mut by_manifest: HashMap<Sha256Digest, usize> = HashMap::new();
        let mut by_id: HashMap<Sha256Digest, usize> = HashMap::new();
        let mut out: Vec<IndexEntry> = Vec::new();
        let mut damaged: Vec<DamagedImage> = Vec::new();
        let mut learned: HashMap<Sha256Digest, Sha256Digest> = HashMap::new();
        for d in index.manifests() {
            let mdg = Sha256Digest::from(d.digest());
            let ann = d.annotations().clone().unwrap_or_default();
            let tag = ann.get(REF_NAME_ANNOTATION).and_then(|n| ImageReference::parse(n).ok());
            let slot = match by_manifest.get(&mdg) {
                Some(i) => *i,
                None => {
                    let id = match ann.get(IMAGE_ID_ANNOTATION).and_then(|v| v.parse::<Sha256Digest>().ok()) {
                        Some(id) => id,
                        None => match self.load_image(&mdg, d.size()) {
                            Ok(image) => {
                                learned.insert(mdg.clone(), image.id.clone());
                                image.id.clone()
                            }
                            Err(error) => {
                                match damaged.iter_mut().find(|x| x.manifest == mdg) {
                                    Some(x) => x.tags.extend(tag),
                                    None => damaged.push(DamagedImage::new(tag.into_iter().collect(), mdg, error)),
                                }
                                continue;
                            }
                        },
                    };
                    let i = match by_id.get(&id) {
                        Some(i) => *i,
                        None => {
                            by_id.insert(id.clone(), out.len());
                            out.push(IndexEntry {
                                manifest: mdg.clone(),
                                size: d.size(),
                                id,
                                tags: Vec::new(),
                                parent: ann.get(PARENT_ANNOTATION).and_then(|p| p.parse().ok()),
                                added: ann.get(ADDED_ANNOTATION).cloned(),
                            });
                            out.len() - 1
                        }
                    };
                    by_manifest.insert(mdg, i);
                    i
                }
            };
            if let Some(t) = tag {
                if !out[slot].tags.contains(&t) {
                    out[slot].tags.push(t);
                }
            }
        }
        if !learned.is_empty() {
            self.annotate_image_ids(&learned);
        }
        Ok((out, damaged))
    }

    /// Writes the image IDs read from manifests into the index entries that lacked them
    /// (written by an older rbuild or another tool), so that later lookups need not read those
    /// manifests again. Best effort: skipped when the store lock is busy or the write fails.
    fn annotate_image_ids(&self, ids: &HashMap<Sha256Digest, Sha256Digest>) {
        let Ok(Some(_lock)) = self.try_lock() else { return };
        let Ok(index) = self.read_index() else { return };
        let mut entries: Vec<Descriptor> = index.manifests().clone();
        let mut changed = false;
        for d in &mut entries {
            let mut ann = d.annotations().clone().unwrap_or_default();
            if ann.contains_key(IMAGE_ID_ANNOTATION) {
                continue;
            }
            if let Some(id) = ids.get(&Sha256Digest::from(d.digest())) {
                ann.insert(IMAGE_ID_ANNOTATION.into(), id.to_string());
                d.set_annotations(Some(ann));
                changed = true;
            }
        }
        if changed {
            if let Err(e) = self.write_index(&entries) {
                tracing::debug!(error = %e, "could not record image IDs in the index");
            }
        }
    }

    /// The image an index entry names: its content read (once per handle) and checked against
    /// the entry's ID, with the entry's tags, parent and time added.
    fn stored(&self, entry: &IndexEntry) -> Result<StoredImage> {
        let content = self.load_image(&entry.manifest, entry.size)?;
        if content.id != entry.id {
            return Err(StoreError::BadImage {
                id: entry.id.to_string(),
                reason: format!("index entry for manifest {} names config {}", entry.manifest, content.id),
            });
        }
        Ok(StoredImage {
            tags: entry.tags.clone(),
            parent: entry.parent.clone(),
            added: entry.added.clone(),
            ..(*content).clone()
        })
    }

    /// The image a manifest describes, read (and verified) once per store handle.
    fn load_image(&self, manifest_digest: &Sha256Digest, manifest_size: u64) -> Result<Arc<StoredImage>> {
        if let Some(image) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(manifest_digest) {
            return Ok(Arc::clone(image));
        }
        let image = Arc::new(self.read_image(manifest_digest, manifest_size)?);
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(manifest_digest.clone(), Arc::clone(&image));
        Ok(image)
    }

    pub(crate) fn read_image(&self, manifest_digest: &Sha256Digest, manifest_size: u64) -> Result<StoredImage> {
        let mbytes = self.read_blob(manifest_digest)?;
        self.image_of_manifest(manifest_digest, manifest_size, &mbytes)
    }

    /// The image `mbytes` (a manifest) describes, its config read from the store and checked
    /// against the layers.
    fn image_of_manifest(
        &self,
        manifest_digest: &Sha256Digest,
        manifest_size: u64,
        mbytes: &[u8],
    ) -> Result<StoredImage> {
        let manifest: ImageManifest = serde_json::from_slice(mbytes).map_err(|source| StoreError::Json {
            what: "manifest",
            path: manifest_digest.to_string(),
            source,
        })?;
        let id = Sha256Digest::from(manifest.config().digest());
        let config_raw = self.read_blob(&id)?;
        let config = ImageConfig::from_json(&config_raw).map_err(|source| StoreError::Json {
            what: "image config",
            path: id.to_string(),
            source,
        })?;
        self.image_from_parts(manifest_digest, manifest_size, manifest, config_raw, config)
    }

    /// The image made of a parsed manifest and its config (whose bytes are `config_raw`),
    /// checked: as many diff IDs as layers.
    fn image_from_parts(
        &self,
        manifest_digest: &Sha256Digest,
        manifest_size: u64,
        manifest: ImageManifest,
        config_raw: Vec<u8>,
        config: ImageConfig,
    ) -> Result<StoredImage> {
        let id = Sha256Digest::from(manifest.config().digest());
        let diff_ids =
            config.rootfs.diff_ids.iter().map(|d| d.parse::<Sha256Digest>()).collect::<Result<Vec<_>, _>>()?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(StoreError::BadImage {
                id: id.to_string(),
                reason: format!(
                    "{} diff_ids for {} layers in manifest {manifest_digest}",
                    diff_ids.len(),
                    manifest.layers().len()
                ),
            });
        }
        let chains = chain_ids(&diff_ids);
        let layers = manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .zip(chains)
            .map(|((l, diff_id), chain_id)| StoredLayer {
                digest: Sha256Digest::from(l.digest()),
                diff_id,
                size: l.size(),
                media_type: l.media_type().clone(),
                unpacked_size: l
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(UNPACKED_SIZE_ANNOTATION))
                    .and_then(|v| v.parse().ok()),
                unpacked_dir: self.layer_dir(&chain_id),
                chain_id,
            })
            .collect();
        Ok(StoredImage {
            id,
            manifest_digest: manifest_digest.clone(),
            manifest_size,
            manifest,
            config,
            config_raw,
            tags: Vec::new(),
            parent: None,
            added: None,
            layers,
        })
    }

    /// Finds an image by reference (`busybox`, `app:1`, `name@sha256:<manifest>`), full ID
    /// (`sha256:…`), or an unambiguous ID prefix (the 12-digit short ID).
    /// On a leased handle the image is leased before it is returned.
    pub fn resolve(&self, name: &str) -> Result<StoredImage> {
        let image = self.resolve_unleased(name)?;
        self.lease_image(&image)?;
        Ok(image)
    }

    /// [`ImageStore::resolve`] without taking a lease (so without the store lock: callable
    /// under it).
    fn resolve_unleased(&self, name: &str) -> Result<StoredImage> {
        let (entries, damaged) = self.index_entries()?;
        let Some(i) = find_image(&entries, name) else {
            // A damaged entry without an image ID annotation is known by its tags only.
            let wanted = ImageReference::parse(name).ok().map(|r| r.with_default_tag());
            return Err(match damaged.into_iter().find(|d| wanted.as_ref().is_some_and(|w| d.tags.contains(w))) {
                Some(d) => StoreError::Damaged(Box::new(d)),
                None => StoreError::NoSuchImage(name.to_owned()),
            });
        };
        let image = match self.stored(&entries[i]) {
            Ok(image) => image,
            // Removed by another command since the index was read: not damage.
            Err(_) if !self.index_has_manifest(&entries[i].manifest)? => {
                return Err(StoreError::NoSuchImage(name.to_owned()))
            }
            Err(StoreError::Io(e)) => return Err(StoreError::Io(e)),
            Err(e) => {
                return Err(StoreError::Damaged(Box::new(DamagedImage::new(
                    entries[i].tags.clone(),
                    entries[i].manifest.clone(),
                    e,
                ))))
            }
        };
        Ok(image)
    }

    fn index_has_manifest(&self, manifest: &Sha256Digest) -> Result<bool> {
        Ok(self.read_index()?.manifests().iter().any(|d| Sha256Digest::from(d.digest()) == *manifest))
    }

    /// Finds `name` in `images` (from [`ImageStore::images`]); when it is not there, says why
    /// (no such image, or the image is damaged).
    pub fn resolve_in<'a>(&self, images: &'a [StoredImage], name: &str) -> Result<&'a StoredImage> {
        match find_image(images, name) {
            Some(i) => Ok(&images[i]),
            None => Err(self.resolve_unleased(name).err().unwrap_or_else(|| StoreError::NoSuchImage(name.to_owned()))),
        }
    }

    /// Adds a tag to an image.
    pub fn tag(&self, image: &StoredImage, target: &ImageReference) -> Result<()> {
        let target = target.clone().with_default_tag();
        if target.digest().is_some() {
            return Err(StoreError::Conflict(format!(
                "refusing to create a tag with a digest reference: {}",
                target.familiar()
            )));
        }
        // The tag already names this image (every warm rebuild): nothing to write, as in Docker.
        if self.tagged_manifest(&target)?.as_ref() == Some(&image.manifest_digest) {
            return Ok(());
        }
        self.add_to_index(&image.manifest_digest, image.manifest_size, &[target], None)?;
        Ok(())
    }

    /// Unpacks every layer of `image` not yet in `layers/` and returns the lower dirs,
    /// bottom layer first. Diff IDs are verified while unpacking.
    pub fn ensure_unpacked(&self, image: &StoredImage) -> Result<Vec<PathBuf>> {
        self.lease_image(image)?;
        let work = self.work_dir()?;
        let mut out = Vec::new();
        for layer in &image.layers {
            if !layer.unpacked_dir.is_dir() {
                let dir = work.path().join(format!("layer-{}", layer.chain_id.short()));
                fs::create_dir(&dir)?;
                let blob = self.open_blob(&layer.digest)?;
                let mut apply = LayerApply::new(&dir, WhiteoutMode::Overlay)
                    .map_err(|source| StoreError::Apply { digest: layer.digest.clone(), source })?;
                let applied = apply.apply(blob).map_err(|source| match source {
                    ApplyError::Tar(e) if e.get_ref().is_some_and(|r| r.is::<CorruptBlobMarker>()) => {
                        StoreError::CorruptBlob {
                            digest: layer.digest.clone(),
                            actual: layer.digest.clone(),
                            path: self.blob_path(&layer.digest),
                        }
                    }
                    ApplyError::Io { source, .. } if is_disk_full(&source) => StoreError::DiskFull {
                        root: self.root.clone(),
                        during: format!("unpacking layer {}", layer.digest),
                        source,
                    },
                    source => StoreError::Apply { digest: layer.digest.clone(), source },
                })?;
                if applied.diff_id != layer.diff_id {
                    return Err(StoreError::DiffIdMismatch {
                        digest: layer.digest.clone(),
                        expected: layer.diff_id.clone(),
                        actual: applied.diff_id,
                    });
                }
                work.commit_layer_dir(self, &dir, &layer.chain_id)?;
            }
            out.push(layer.unpacked_dir.clone());
        }
        // The layers are referenced by the image, which is in the index: the pins can go.
        Ok(out)
    }

    /// Applies all layers of `image` into `dest` as one rootfs (whiteouts delete).
    pub fn flatten_into(&self, image: &StoredImage, dest: &Path) -> Result<()> {
        let mut apply = LayerApply::new(dest, WhiteoutMode::Delete)
            .map_err(|source| StoreError::Apply { digest: image.id.clone(), source })?;
        for layer in &image.layers {
            let blob = self.open_blob(&layer.digest)?;
            apply.apply(blob).map_err(|source| StoreError::Apply { digest: layer.digest.clone(), source })?;
        }
        Ok(())
    }

    /// Applies the layers of `image` after its first `present` ones (which `dest` holds
    /// already) into `dest` as one plain directory tree for the chroot-snapshot mode, and
    /// returns the layers' owners and modes of what they put there, which an unprivileged user
    /// cannot put on disk (see [`LayerApply::recording_owners`]). Read from the blobs, never
    /// linked to `layers/`: the step writes the tree in place.
    pub fn assemble_rootfs(&self, image: &StoredImage, dest: &Path, present: usize) -> Result<OwnerTable> {
        self.lease_image(image)?;
        let mut apply = LayerApply::new(dest, WhiteoutMode::Delete)
            .map_err(|source| StoreError::Apply { digest: image.id.clone(), source })?
            .recording_owners();
        for layer in image.layers.iter().skip(present) {
            let blob = self.open_blob(&layer.digest)?;
            apply.apply(blob).map_err(|source| StoreError::Apply { digest: layer.digest.clone(), source })?;
        }
        Ok(apply.owners())
    }

    /// Records that container `id` uses `image_id`, so `rmi` refuses to remove it.
    pub fn add_container(&self, id: &str, image_id: &Sha256Digest) -> Result<()> {
        let _lock = self.lock()?;
        let body = serde_json::json!({ "image": image_id.to_string() });
        self.write_atomic(&self.container_record(id)?, body.to_string().as_bytes())
    }

    pub fn remove_container(&self, id: &str) -> Result<()> {
        let _lock = self.lock()?;
        match std::fs::remove_file(self.container_record(id)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn container_record(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(StoreError::Conflict(format!("invalid container id {id:?}")));
        }
        Ok(self.root.join("containers").join(format!("{id}.json")))
    }

    /// Image IDs used by containers (`containers/<id>.json`): `rmi` refuses them without `-f`
    /// and `image prune` never removes them.
    pub fn container_users(&self) -> Result<HashMap<Sha256Digest, Vec<String>>> {
        self.record_users("containers", "container")
    }

    /// Image IDs that build cache records (`cache/<key>.json`) point at: `image prune` keeps
    /// them unless `-a`.
    pub fn cache_users(&self) -> Result<HashMap<Sha256Digest, Vec<String>>> {
        self.record_users("cache", "cache record")
    }

    fn record_users(&self, dir: &str, what: &str) -> Result<HashMap<Sha256Digest, Vec<String>>> {
        let mut out: HashMap<Sha256Digest, Vec<String>> = HashMap::new();
        for entry in fs::read_dir(self.root.join(dir))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if let Some(id) = v.get("image").and_then(|i| i.as_str()).and_then(|i| i.parse().ok()) {
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                out.entry(id).or_default().push(format!("{what} {stem}"));
            }
        }
        Ok(out)
    }
}

/// Marks the I/O error a [`VerifiedBlob`] returns when the content does not match its digest.
#[derive(Debug)]
pub struct CorruptBlobMarker(pub String);
impl std::fmt::Display for CorruptBlobMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for CorruptBlobMarker {}

/// A blob reader that checks the digest when it reaches the end.
pub struct VerifiedBlob {
    expected: Sha256Digest,
    path: PathBuf,
    inner: crate::layer::digest::HashingReader<std::fs::File>,
    done: bool,
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.done {
            self.done = true;
            let (actual, _) = self.inner.digest_so_far();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    CorruptBlobMarker(format!(
                        "blob {} is corrupt: content hashes to {actual} ({})",
                        self.expected,
                        self.path.display()
                    )),
                ));
            }
        }
        Ok(n)
    }
}

/// Directories under the root that hold unpacked layers (with whatever setuid files, file
/// capabilities and device nodes their images carry), container roots and work dirs: each is
/// owner-only like the root itself, so a store whose root was opened up by hand still does not
/// expose them (the class of CVE-2021-41091, which Docker fixed by making its dirs 0710).
const PRIVATE_DIRS: [&str; 6] = ["layers", "tmp", "containers", "run", "cache-mounts", "cache"];

/// Creates `dir` owner-only (0700), or makes an existing one so: no other user may traverse
/// it. A user namespace's root is the owner (rootless mode maps it to the caller), and overlay
/// reaches its lower dirs with the mounter's credentials, so containers are not affected.
/// A dir owned by someone else (a root given by the user) is left as it is.
fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())).into()),
    }
    let meta = fs::metadata(dir)?;
    if meta.mode() & 0o077 != 0 && meta.uid() == rustix::process::geteuid().as_raw() {
        fs::set_permissions(dir, std::fs::Permissions::from_mode(meta.mode() & 0o700))?;
    }
    Ok(())
}

/// Compression of a layer from its media type (for writing archives).
/// Marks `dir` as the top of unrelated trees (ext4's `FS_TOPDIR_FL`, `chattr +T`): the
/// block allocator then spreads the directories made in it (a step's work dir, an unpacked
/// layer) over block groups instead of packing them next to their parent. Besides locality,
/// this keeps new files away from groups full of just-deleted inodes, which ext4 without a
/// journal scans past one by one when it allocates an inode (`recently_deleted`): on such a
/// disk, right after a store was emptied, a RUN creating 2,000 files took 1.5-2.8 s instead
/// of 1.25 s. Best effort: other filesystems do not have the flag, and nothing depends on it.
fn mark_top_dir(dir: &Path) {
    let result = std::fs::File::open(dir).and_then(|f| {
        let flags = rustix::fs::ioctl_getflags(&f)?;
        if !flags.contains(rustix::fs::IFlags::TOPDIR) {
            rustix::fs::ioctl_setflags(&f, flags | rustix::fs::IFlags::TOPDIR)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        tracing::debug!(dir = %dir.display(), error = %e, "no top-dir hint");
    }
}

/// Where `name` is in `images`: a reference (`busybox`, `app:1`, `name@sha256:<manifest>`), a
/// full ID (`sha256:…`), or an unambiguous ID prefix (the 12-digit short ID).
fn find_image<T: ImageNames>(images: &[T], name: &str) -> Option<usize> {
    let unique = |hits: Vec<usize>| if hits.len() == 1 { Some(hits[0]) } else { None };
    if let Some(hex) = name.strip_prefix("sha256:") {
        if let Some(i) = images.iter().position(|i| i.image_id().hex() == hex) {
            return Some(i);
        }
        if hex.len() < 3 {
            return None;
        }
        return unique((0..images.len()).filter(|&i| images[i].image_id().hex().starts_with(hex)).collect());
    }
    if let Ok(r) = ImageReference::parse(name) {
        if let Some(d) = r.digest() {
            let tagged = images
                .iter()
                .position(|i| i.manifest() == d && i.tag_list().iter().any(|t| t.full_name() == r.full_name()));
            // Pulled by digest (untagged): the digest names the content whatever the repo.
            if let Some(i) = tagged.or_else(|| images.iter().position(|i| i.manifest() == d)) {
                return Some(i);
            }
        } else {
            let r = r.with_default_tag();
            if let Some(i) = images.iter().position(|i| i.tag_list().contains(&r)) {
                return Some(i);
            }
        }
    }
    if name.len() >= 3 && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return unique((0..images.len()).filter(|&i| images[i].image_id().hex().starts_with(name)).collect());
    }
    None
}

pub fn compression_of(media_type: &MediaType) -> Compression {
    let s = media_type.to_string();
    if s.ends_with("gzip") {
        Compression::Gzip
    } else if s.ends_with("zstd") {
        Compression::Zstd
    } else {
        Compression::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image with no layers, labelled `label`, tagged `tag`.
    fn put_tagged(store: &ImageStore, label: &str, tag: &str) -> StoredImage {
        let tags = vec![ImageReference::parse(tag).expect("reference")];
        store.put_image_raw(&config_json(label), &[], &PutImage { tags, parent: None }).expect("put")
    }

    fn config_json(label: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "n": label } },
            "rootfs": { "type": "layers", "diff_ids": [] },
            "history": [],
        }))
        .expect("json")
    }

    #[test]
    fn a_blob_cut_short_is_written_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let mut batch = store.image_batch().expect("batch");
        let image = store.put_image_in_batch(&mut batch, &config_json("a"), &[], None).expect("a");
        store.commit_batch(batch).expect("commit");
        // A crash before a batch's sync can leave a renamed blob empty: the next write of the
        // same content replaces it rather than trusting the name.
        let path = store.blob_path(&image.id);
        let good = std::fs::read(&path).expect("read");
        std::fs::write(&path, b"").expect("truncate");
        let work = store.work_dir().expect("work");
        assert_eq!(store.put_blob_bytes(&work, &good).expect("put"), image.id);
        assert_eq!(std::fs::read(&path).expect("read"), good);
    }

    /// Tagging an image with the tag it already has writes nothing (a warm rebuild's `-t`);
    /// moving the tag to another image does.
    #[test]
    fn retagging_with_the_same_tag_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let mut batch = store.image_batch().expect("batch");
        let a = store.put_image_in_batch(&mut batch, &config_json("a"), &[], None).expect("a");
        let b = store.put_image_in_batch(&mut batch, &config_json("b"), &[], None).expect("b");
        store.commit_batch(batch).expect("commit");
        let tag = ImageReference::parse("app:1").expect("reference");
        store.tag(&a, &tag).expect("tag");
        let index = dir.path().join("index.json");
        let written = std::fs::metadata(&index).expect("index").modified().expect("mtime");
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&index).expect("index"));
        store.tag(&a, &tag).expect("same tag again");
        let again = std::fs::metadata(&index).expect("index");
        assert_eq!((again.modified().expect("mtime"), std::os::unix::fs::MetadataExt::ino(&again)), (written, inode));
        store.tag(&b, &tag).expect("move the tag");
        assert_eq!(store.tagged_manifest(&tag).expect("read"), Some(b.manifest_digest.clone()));
        assert_ne!(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&index).expect("index")), inode);
    }

    #[test]
    fn a_batch_enters_the_index_in_one_write_with_parents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let mut batch = store.image_batch().expect("batch");
        let a = store.put_image_in_batch(&mut batch, &config_json("a"), &[], None).expect("a");
        let b = store.put_image_in_batch(&mut batch, &config_json("b"), &[], Some(a.id.clone())).expect("b");
        assert_eq!(b.parent.as_ref(), Some(&a.id));
        assert!(store.resolve(&b.id.to_string()).is_err(), "not listed before the commit");
        store.commit_batch(batch).expect("commit");
        let found = store.resolve(&b.id.to_string()).expect("b after the commit");
        assert_eq!(found.parent, Some(a.id.clone()));
        assert!(found.tags.is_empty());
        assert_eq!(store.images().expect("images").len(), 2);
        // A second batch with the same image adds no duplicate entry.
        let mut again = store.image_batch().expect("batch");
        store.put_image_in_batch(&mut again, &config_json("a"), &[], None).expect("a again");
        store.commit_batch(again).expect("commit");
        assert_eq!(store.read_index().expect("index").manifests().len(), 2);
    }

    #[test]
    fn a_lookup_reads_only_the_image_it_finds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let put = |label: &str, tag: &str| put_tagged(&store, label, tag);
        let a = put("a", "a:1");
        let b = put("b", "b:1");
        // b's blobs are gone: a fresh handle finds a by tag and by ID without reading them.
        std::fs::remove_file(store.blob_path(&b.manifest_digest)).expect("rm manifest");
        std::fs::remove_file(store.blob_path(&b.id)).expect("rm config");
        let fresh = ImageStore::open(dir.path()).expect("open");
        assert_eq!(fresh.resolve("a:1").expect("by tag").id, a.id);
        assert_eq!(fresh.resolve(&a.id.to_string()).expect("by ID").tags.len(), 1);
        assert_eq!(fresh.resolve(&a.id.hex()[..12]).expect("by short ID").id, a.id);
        assert!(fresh.resolve("b:1").is_err(), "b itself cannot be read");
    }

    /// A fully cached rebuild tags the image it already tagged: its parent link stays.
    #[test]
    fn re_tagging_an_image_keeps_its_parent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let parent = store.put_image_raw(&config_json("p"), &[], &PutImage::default()).expect("put parent");
        let tags = vec![ImageReference::parse("app:1").expect("reference")];
        let opts = PutImage { tags: tags.clone(), parent: Some(parent.id.clone()) };
        let child = store.put_image_raw(&config_json("c"), &[], &opts).expect("put child");
        assert_eq!(child.parent.as_ref(), Some(&parent.id));
        store.put_image_raw(&config_json("c"), &[], &PutImage { tags, parent: None }).expect("re-tag");
        let again = store.resolve("app:1").expect("by tag");
        assert_eq!(again.parent.as_ref(), Some(&parent.id));
    }

    #[test]
    fn index_entries_without_an_image_id_get_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let tags = vec![ImageReference::parse("old:1").expect("reference")];
        let image = store.put_image_raw(&config_json("old"), &[], &PutImage { tags, parent: None }).expect("put");
        // As an older rbuild (or skopeo) wrote it: no image ID annotation.
        let strip = |store: &ImageStore| {
            let mut entries = store.read_index().expect("index").manifests().clone();
            for d in &mut entries {
                let mut ann = d.annotations().clone().unwrap_or_default();
                ann.remove(IMAGE_ID_ANNOTATION);
                d.set_annotations(Some(ann));
            }
            store.write_index(&entries).expect("write index");
        };
        strip(&store);
        let id_of = |store: &ImageStore| {
            store.read_index().expect("index").manifests()[0]
                .annotations()
                .as_ref()
                .and_then(|a| a.get(IMAGE_ID_ANNOTATION).cloned())
        };
        assert_eq!(id_of(&store), None);
        // A lookup reads the manifest once and records the ID...
        assert_eq!(ImageStore::open(dir.path()).expect("open").resolve("old:1").expect("resolve").id, image.id);
        assert_eq!(id_of(&store), Some(image.id.to_string()));
        // ...but never waits for the lock to do it.
        strip(&store);
        let _held = store.lock().expect("lock");
        assert_eq!(ImageStore::open(dir.path()).expect("open").resolve("old:1").expect("resolve").id, image.id);
        assert_eq!(id_of(&store), None);
    }

    #[test]
    fn a_corrupt_manifest_damages_its_image_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let put = |label: &str, tag: &str| put_tagged(&store, label, tag);
        let a = put("a", "a:1");
        let b = put("b", "b:1");
        // As another tool writes the index (no image IDs), so b's manifest must be read to
        // know its ID at all.
        let mut entries = store.read_index().expect("index").manifests().clone();
        for d in &mut entries {
            let mut ann = d.annotations().clone().unwrap_or_default();
            ann.remove(IMAGE_ID_ANNOTATION);
            d.set_annotations(Some(ann));
        }
        store.write_index(&entries).expect("write index");
        std::fs::write(store.blob_path(&b.manifest_digest), b"{}").expect("corrupt the manifest");

        let fresh = ImageStore::open(dir.path()).expect("open");
        let (good, damaged) = fresh.catalog().expect("catalog");
        assert_eq!(good.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), vec![a.id.clone()]);
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].name(), "b:1");
        assert_eq!(damaged[0].manifest, b.manifest_digest);
        assert!(matches!(&damaged[0].error, StoreError::CorruptBlob { .. }), "{}", damaged[0].error);
        match fresh.resolve("b:1") {
            Err(StoreError::Damaged(d)) => assert!(d.to_string().contains("store check --repair"), "{d}"),
            other => panic!("b:1 resolved as {other:?}"),
        }
        assert_eq!(fresh.resolve("a:1").expect("a is served").id, a.id);
        assert!(matches!(fresh.resolve("c:1"), Err(StoreError::NoSuchImage(_))));
    }

    #[test]
    fn lookups_read_each_image_once_per_handle_and_the_index_every_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let tag = ImageReference::parse("app:1").expect("reference");
        let image =
            store.put_image_raw(&config_json("a"), &[], &PutImage { tags: vec![tag], parent: None }).expect("put");
        assert_eq!(store.resolve("app:1").expect("by tag").id, image.id);
        // The blobs are not read again by this handle: lookups cost an index read, not two
        // blob reads per image in the store.
        std::fs::remove_file(store.blob_path(&image.manifest_digest)).expect("rm manifest");
        std::fs::remove_file(store.blob_path(&image.id)).expect("rm config");
        assert_eq!(store.resolve(&image.id.to_string()).expect("by id").tags.len(), 1);
        // A new handle reads them, and notices.
        assert!(ImageStore::open(dir.path()).expect("open").resolve("app:1").is_err());
        // The index is read every time: an untag by another handle shows at once.
        let other = ImageStore::open(dir.path()).expect("open");
        other.write_index(&[]).expect("empty the index");
        assert!(matches!(store.resolve("app:1"), Err(StoreError::NoSuchImage(_))));
    }
}
