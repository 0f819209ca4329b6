//! Build cache records: `cache/<key hex>.json` in the store, one per step result, holding the
//! image the step produced (`"image"`, which keeps it alive for the store's gc) and the key's
//! inputs (so a later miss can be explained against the closest record).
//!
//! Beside each record, `cache/<hex>.latest` names the newest record made on the same parent
//! for the same kind of instruction by the same Dockerfile (its lineage: the file's path), so
//! explaining a miss reads one pointer and one record, however many records the store holds,
//! and never compares with another project's step that happens to follow the same FROM. It is
//! a hint: a missing or stale pointer only makes a miss "no cache record".
//!
//! Records are written to a temporary name in the same directory and renamed, so a reader
//! never sees half a record, and a stage's records are made durable together by one `syncfs`
//! (an empty record, left by a crash before it, reads as none); a record naming an image the
//! store no longer has is treated as absent by the engine.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fs_err as fs;
use serde::{Deserialize, Serialize};

use crate::context::ContentMemo;
use crate::plan::{explain_miss, CacheKey, CacheKeyInputs, MissReason};

/// One cached step result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The image ID (`sha256:…`) the step produced.
    pub image: String,
    pub key: CacheKey,
    pub inputs: CacheKeyInputs,
    /// RFC 3339 time of recording; the newest sibling explains a miss.
    pub created: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("cache record {path}: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

/// The `cache/` directory of a store.
#[derive(Debug, Clone)]
pub struct CacheIndex {
    dir: PathBuf,
    /// Which Dockerfile's records a miss is explained against (never part of a key).
    lineage: String,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CacheIndex {
    /// The index in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        fs::create_dir_all(dir)?;
        Ok(CacheIndex { dir: dir.to_path_buf(), lineage: String::new() })
    }

    /// The same index, explaining misses only against records `lineage` (a Dockerfile's
    /// identity, such as its absolute path) made. Lookups are unaffected.
    pub fn with_lineage(self, lineage: impl Into<String>) -> Self {
        CacheIndex { lineage: lineage.into(), ..self }
    }

    fn path_of(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The record for `key`, if any. A record that cannot be read as one is reported, not
    /// silently ignored: the store check repairs it.
    pub fn get(&self, key: &CacheKey) -> Result<Option<CacheRecord>, CacheError> {
        let path = self.path_of(key);
        match fs::read(&path) {
            // Empty: a write cut short by a crash before its stage's sync; no record.
            Ok(bytes) if bytes.is_empty() => Ok(None),
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map(Some).map_err(|source| CacheError::Corrupt { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The image the record for `key` names, if any: what a cache hit needs, read without
    /// building the record's key inputs (a COPY's holds one entry per copied file), so a hit
    /// costs a scan of the record, not a parse of thousands of paths. Empty and unreadable
    /// records as in [`CacheIndex::get`].
    pub fn image_of(&self, key: &CacheKey) -> Result<Option<String>, CacheError> {
        #[derive(Deserialize)]
        struct ImageOnly {
            image: String,
        }
        let path = self.path_of(key);
        match fs::read(&path) {
            Ok(bytes) if bytes.is_empty() => Ok(None),
            Ok(bytes) => serde_json::from_slice::<ImageOnly>(&bytes)
                .map(|r| Some(r.image))
                .map_err(|source| CacheError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The digest of what a `COPY --from=<stage>` selected in image `image`, remembered under
    /// `selection` (the instruction's sources): an image ID names its content, so the two fix
    /// the answer, and a cached rebuild need not read every copied file again. A hint: one that
    /// cannot be read is none, and `store gc` drops it with the image (its `image` field, as a
    /// record's).
    pub fn source_memo(&self, image: &str, selection: &str) -> Option<String> {
        let bytes = fs::read(self.memo_path(image, selection)).ok()?;
        let memo: SourceMemo = serde_json::from_slice(&bytes).ok()?;
        (memo.image == image).then_some(memo.digest)
    }

    /// Remembers `digest` for [`CacheIndex::source_memo`]; best effort, unsynced (a hint).
    pub fn put_source_memo(&self, image: &str, selection: &str, digest: &str) {
        let memo = SourceMemo { image: image.to_owned(), digest: digest.to_owned() };
        let Ok(bytes) = serde_json::to_vec(&memo) else { return };
        self.write_hint(&self.memo_path(image, selection), &bytes);
    }

    fn memo_path(&self, image: &str, selection: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(image.as_bytes());
        h.update([0]);
        h.update(selection.as_bytes());
        self.dir.join(format!("{}.sources.json", hex::encode(h.finalize())))
    }

    /// The content memo of the build context at `context` (see
    /// [`crate::context::ContentMemo`]): empty when none was written or it cannot be read.
    pub fn content_memo(&self, context: &Path) -> ContentMemo {
        ContentMemo::decode(&fs::read(self.content_memo_path(context)).unwrap_or_default())
    }

    /// Keeps `memo` for the next build of the context at `context`, if it changed; best
    /// effort, unsynced (a hint: a lost memo only means the files are read again).
    pub fn put_content_memo(&self, context: &Path, memo: &ContentMemo) {
        if let Some(bytes) = memo.encode() {
            self.write_hint(&self.content_memo_path(context), &bytes);
        }
    }

    fn content_memo_path(&self, context: &Path) -> PathBuf {
        use sha2::{Digest, Sha256};
        let hex = hex::encode(Sha256::digest(context.as_os_str().as_encoded_bytes()));
        self.dir.join(format!("{hex}.context"))
    }

    /// Writes a hint file: temp name and rename, so a reader never sees half of one; no sync.
    fn write_hint(&self, path: &Path, bytes: &[u8]) {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join(format!(".memo.{}-{n}.tmp", std::process::id()));
        if fs::write(&temp, bytes).and_then(|()| fs::rename(&temp, path)).is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }

    /// Records `record` atomically (write to a temp name, fsync, rename over any old record).
    pub fn put(&self, record: &CacheRecord) -> Result<(), CacheError> {
        self.put_all(std::slice::from_ref(record))
    }

    /// Records every one of `records`, each written to a temp name and renamed over any old
    /// record, then makes them durable with one `syncfs` (a stage's records together: one
    /// sync, not two per step). A crash before the sync can leave a record empty; [`get`]
    /// reads an empty record as none.
    ///
    /// [`get`]: CacheIndex::get
    pub fn put_all(&self, records: &[CacheRecord]) -> Result<(), CacheError> {
        for record in records {
            self.put_unsynced(record)?;
        }
        if !records.is_empty() {
            let dir = fs::File::open(&self.dir)?;
            rustix::fs::syncfs(&dir).map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    fn put_unsynced(&self, record: &CacheRecord) -> Result<(), CacheError> {
        let target = self.path_of(&record.key);
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join(format!(".{}.{}-{n}.tmp", record.key.hex(), std::process::id()));
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|source| CacheError::Corrupt { path: target.clone(), source })?;
        fs::write(&temp, &bytes)?;
        if let Err(e) = fs::rename(&temp, &target) {
            let _ = std::fs::remove_file(&temp);
            return Err(e.into());
        }
        // The sibling pointer: renamed into place like the record (a hint).
        let pointer = self.sibling_pointer(&record.inputs);
        let temp = self.dir.join(format!(".{}.{}-{n}.latest.tmp", record.key.hex(), std::process::id()));
        fs::write(&temp, record.key.hex().as_bytes())?;
        if let Err(e) = fs::rename(&temp, &pointer) {
            let _ = std::fs::remove_file(&temp);
            return Err(e.into());
        }
        Ok(())
    }

    /// `cache/<sha256 of parent and keyword>.latest`.
    fn sibling_pointer(&self, inputs: &CacheKeyInputs) -> PathBuf {
        use sha2::{Digest, Sha256};
        let keyword = inputs.instruction.split_whitespace().next().unwrap_or_default();
        let mut h = Sha256::new();
        h.update(inputs.parent.as_bytes());
        h.update([0]);
        h.update(keyword.to_ascii_uppercase().as_bytes());
        h.update([0]);
        h.update(self.lineage.as_bytes());
        self.dir.join(format!("{}.latest", hex::encode(h.finalize())))
    }

    /// Removes the record for `key` (when the image it names is gone).
    pub fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        // Its sibling pointer goes too when it names this record.
        if let Ok(Some(record)) = self.get(key) {
            let pointer = self.sibling_pointer(&record.inputs);
            if std::fs::read_to_string(&pointer).is_ok_and(|hex| hex.trim() == key.hex()) {
                let _ = std::fs::remove_file(&pointer);
            }
        }
        match std::fs::remove_file(self.path_of(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Why `current` has no record: compared with the newest record made on the same parent
    /// for the same kind of instruction (the previous build of this step), else "no cache
    /// record" (a RUN after the same FROM in another Dockerfile is not "this step changed").
    pub fn explain(&self, current: &CacheKeyInputs) -> Result<MissReason, CacheError> {
        let sibling = std::fs::read_to_string(self.sibling_pointer(current))
            .ok()
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| std::fs::read(self.dir.join(format!("{hex}.json"))).ok())
            .and_then(|bytes| serde_json::from_slice::<CacheRecord>(&bytes).ok())
            .filter(|r| r.inputs.parent == current.parent);
        Ok(sibling.and_then(|r| explain_miss(&r.inputs, current)).unwrap_or(MissReason::NoRecord))
    }
}

/// A [`CacheIndex::source_memo`] on disk.
#[derive(serde::Serialize, serde::Deserialize)]
struct SourceMemo {
    image: String,
    digest: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn inputs(parent: &str, instruction: &str) -> CacheKeyInputs {
        CacheKeyInputs {
            parent: parent.into(),
            instruction: instruction.into(),
            build_args: BTreeMap::new(),
            sources: None,
        }
    }

    fn record(i: &CacheKeyInputs, image: &str, created: &str) -> CacheRecord {
        CacheRecord { image: image.into(), key: i.key(), inputs: i.clone(), created: created.into() }
    }

    #[test]
    fn a_record_left_empty_by_a_crash_reads_as_none_and_is_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = CacheIndex::open(&dir.path().join("cache")).expect("open");
        let (a, b) = (inputs("sha256:p", "RUN a"), inputs("sha256:p", "RUN b"));
        index.put_all(&[record(&a, "sha256:1", "t1"), record(&b, "sha256:2", "t2")]).expect("put_all");
        assert_eq!(index.get(&b.key()).expect("get").map(|r| r.image), Some("sha256:2".into()));
        assert_eq!(index.image_of(&b.key()).expect("image_of"), Some("sha256:2".into()));
        // What a crash between the rename and the stage's sync can leave.
        std::fs::write(index.path_of(&a.key()), b"").expect("truncate");
        assert_eq!(index.get(&a.key()).expect("an empty record is no error"), None);
        index.put_all(&[record(&a, "sha256:3", "t3")]).expect("put_all");
        assert_eq!(index.get(&a.key()).expect("get").map(|r| r.image), Some("sha256:3".into()));
    }

    #[test]
    fn put_get_and_replace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = CacheIndex::open(&dir.path().join("cache")).expect("open");
        let i = inputs("sha256:p", "RUN a");
        assert_eq!(index.get(&i.key()).expect("get"), None);
        index.put(&record(&i, "sha256:1", "2026-01-01T00:00:00Z")).expect("put");
        assert_eq!(index.get(&i.key()).expect("get").map(|r| r.image), Some("sha256:1".into()));
        index.put(&record(&i, "sha256:2", "2026-01-02T00:00:00Z")).expect("put");
        assert_eq!(index.get(&i.key()).expect("get").map(|r| r.image), Some("sha256:2".into()));
        let names = || -> Vec<String> {
            let entries = std::fs::read_dir(dir.path().join("cache")).expect("ls");
            let mut names: Vec<String> =
                entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names
        };
        let written = names();
        assert_eq!(written.len(), 2, "the record and its sibling pointer, no temp file: {written:?}");
        assert_eq!(written.iter().filter(|n| n.ends_with(".json") || n.ends_with(".latest")).count(), 2, "{written:?}");
        assert!(written.iter().any(|n| n.ends_with(".latest")), "{written:?}");
        index.remove(&i.key()).expect("remove");
        assert_eq!(index.get(&i.key()).expect("get"), None);
        assert_eq!(names(), Vec::<String>::new(), "the pointer goes with the record it names");
    }

    #[test]
    fn corrupt_record_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = CacheIndex::open(dir.path()).expect("open");
        let i = inputs("p", "x");
        std::fs::write(dir.path().join(format!("{}.json", i.key().hex())), b"{half").expect("write");
        let err = index.get(&i.key()).expect_err("corrupt");
        assert!(err.to_string().contains(&i.key().hex().to_string()), "{err}");
    }

    #[test]
    fn explains_against_the_newest_sibling() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = CacheIndex::open(dir.path()).expect("open");
        index.put(&record(&inputs("sha256:p", "ENV A=1"), "sha256:1", "2026-01-01T00:00:00Z")).expect("put");
        index.put(&record(&inputs("sha256:p", "ENV A=2"), "sha256:2", "2026-01-02T00:00:00Z")).expect("put");
        let reason = index.explain(&inputs("sha256:p", "ENV A=3")).expect("explain");
        assert_eq!(reason.to_string(), "instruction changed: ENV A=2 -> ENV A=3");
        assert_eq!(index.explain(&inputs("sha256:other", "ENV A=3")).expect("explain"), MissReason::NoRecord);
        assert_eq!(index.explain(&inputs("sha256:p", "RUN make")).expect("explain"), MissReason::NoRecord);
    }

    #[test]
    fn another_dockerfiles_step_on_the_same_parent_explains_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mine = CacheIndex::open(dir.path()).expect("open").with_lineage("/src/app/Dockerfile");
        let other = CacheIndex::open(dir.path()).expect("open").with_lineage("/src/other/Dockerfile");
        mine.put(&record(&inputs("sha256:p", "RUN make app"), "sha256:1", "2026-01-01T00:00:00Z")).expect("put");
        other.put(&record(&inputs("sha256:p", "RUN make other"), "sha256:2", "2026-01-02T00:00:00Z")).expect("put");
        let reason = mine.explain(&inputs("sha256:p", "RUN make app2")).expect("explain");
        assert_eq!(reason.to_string(), "instruction changed: RUN make app -> RUN make app2");
        let fresh = CacheIndex::open(dir.path()).expect("open").with_lineage("/src/new/Dockerfile");
        assert_eq!(fresh.explain(&inputs("sha256:p", "RUN make")).expect("explain"), MissReason::NoRecord);
        // Lookups ignore the lineage: the same step hits whoever built it.
        let key = inputs("sha256:p", "RUN make other").key();
        assert_eq!(fresh.get(&key).expect("get").map(|r| r.image), Some("sha256:2".into()));
    }
}
