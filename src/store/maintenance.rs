//! Store integrity checks (`store check [--repair]`), garbage collection (`store gc`), image
//! removal (`rmi`) and pruning (`image prune`). Everything that deletes runs under the store
//! lock and keeps whatever an image in `index.json` or a live writer's pins still reference.

use super::lock::WorkDir;
use super::{DamagedImage, ImageReference, ImageStore, Result, StoreError, StoredImage, REF_NAME_ANNOTATION};
use crate::layer::digest::Sha256Digest;
use fs_err as fs;
use oci_spec::image::{Descriptor, ImageIndex};
use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::Path;

/// What a removal did, in the order Docker prints it.
#[derive(Debug, Default)]
pub struct Removal {
    pub untagged: Vec<ImageReference>,
    /// Image IDs, then the chain IDs of unpacked layers, as Docker prints `Deleted:` lines.
    pub deleted: Vec<Sha256Digest>,
    pub deleted_blobs: Vec<Sha256Digest>,
    pub deleted_layers: Vec<Sha256Digest>,
    pub reclaimed: u64,
    /// What was not removed because a live lease (a build, a container, a push, a save) or a
    /// damaged image still needs it, one sentence each.
    pub kept: Vec<String>,
}

impl Removal {
    fn absorb(&mut self, other: Removal) {
        self.untagged.extend(other.untagged);
        self.deleted.extend(other.deleted);
        self.deleted_blobs.extend(other.deleted_blobs);
        self.deleted_layers.extend(other.deleted_layers);
        self.reclaimed += other.reclaimed;
        self.kept.extend(other.kept);
    }
}

/// What the images left in the store still reference, readable or not.
#[derive(Default)]
struct Referenced {
    blobs: HashSet<Sha256Digest>,
    layers: HashSet<Sha256Digest>,
}

/// The result of `store check`.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Things that are wrong (corrupt or missing data, bad tags).
    pub problems: Vec<String>,
    /// Things that are only garbage (unreferenced blobs and layers, dead work dirs).
    pub garbage: Vec<String>,
    /// What `--repair` did.
    pub repaired: Vec<String>,
}

/// What `store check` finds wrong with one image of the index.
#[derive(Debug, thiserror::Error)]
enum ImageProblem {
    #[error("tag {0:?} is not a valid reference")]
    BadTag(String),
    #[error("{what} {digest} is corrupt")]
    Corrupt { what: &'static str, digest: Sha256Digest },
    #[error("layer {0} is missing")]
    MissingLayer(Sha256Digest),
    #[error(transparent)]
    Unreadable(Box<StoreError>),
}

fn tag_of(d: &Descriptor) -> Option<&String> {
    d.annotations().as_ref().and_then(|a| a.get(REF_NAME_ANNOTATION))
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

impl ImageStore {
    /// Blob digests and layer chain IDs referenced by `images`.
    fn referenced(&self, images: &[StoredImage]) -> (HashSet<Sha256Digest>, HashSet<Sha256Digest>) {
        let mut blobs = HashSet::new();
        let mut layers = HashSet::new();
        for i in images {
            blobs.insert(i.manifest_digest.clone());
            blobs.insert(i.id.clone());
            for l in &i.layers {
                blobs.insert(l.digest.clone());
                layers.insert(l.chain_id.clone());
            }
        }
        (blobs, layers)
    }

    /// What `images` and the `damaged` ones reference: a damaged image keeps its manifest and
    /// whatever blobs that manifest names (even unverified), so that nothing `store check
    /// --repair` or a re-pull could still use is deleted behind the user's back.
    fn referenced_with_damaged(&self, images: &[StoredImage], damaged: &[DamagedImage]) -> Referenced {
        let (mut blobs, layers) = self.referenced(images);
        for d in damaged {
            blobs.insert(d.manifest.clone());
            let manifest = std::fs::read(self.blob_path(&d.manifest))
                .ok()
                .and_then(|b| serde_json::from_slice::<oci_spec::image::ImageManifest>(&b).ok());
            if let Some(m) = manifest {
                blobs.extend(std::iter::once(m.config()).chain(m.layers()).map(|x| Sha256Digest::from(x.digest())));
            }
        }
        Referenced { blobs, layers }
    }

    /// Deletes the given blobs and layer dirs unless still referenced or pinned. Call with
    /// the store lock held and `remaining` = what the images left in the index reference.
    fn delete_unreferenced(
        &self,
        remaining: &Referenced,
        blobs: &[Sha256Digest],
        layers: &[Sha256Digest],
        out: &mut Removal,
    ) -> Result<()> {
        let (ref_blobs, ref_layers) = (&remaining.blobs, &remaining.layers);
        let (pins, _) = WorkDir::scan(&self.root.join("tmp"))?;
        let (mut kept_blobs, mut kept_layers) = (0, 0);
        let mut seen = HashSet::new();
        for b in blobs {
            if ref_blobs.contains(b) || !seen.insert(b.clone()) {
                continue;
            }
            if pins.blobs.contains(b) {
                kept_blobs += usize::from(self.has_blob(b));
                continue;
            }
            let path = self.blob_path(b);
            if let Ok(m) = std::fs::metadata(&path) {
                fs::remove_file(&path)?;
                out.reclaimed += m.len();
                out.deleted_blobs.push(b.clone());
            }
        }
        let mut seen = HashSet::new();
        for l in layers {
            if ref_layers.contains(l) || !seen.insert(l.clone()) {
                continue;
            }
            if pins.layers.contains(l) {
                kept_layers += usize::from(self.layer_dir(l).is_dir());
                continue;
            }
            let dir = self.layer_dir(l);
            if dir.is_dir() {
                let size = dir_size(&dir);
                // Rename first so the layer disappears atomically, then delete at leisure.
                let trash = self.root.join("tmp").join(format!("trash-{}-{}", l.short(), std::process::id()));
                fs::rename(&dir, &trash)?;
                super::trees::remove_tree(&trash)?;
                out.reclaimed += size;
                out.deleted_layers.push(l.clone());
                out.deleted.push(l.clone());
            }
        }
        if kept_blobs + kept_layers > 0 {
            let users = if pins.owners.is_empty() { "writers".to_owned() } else { pins.owners.join(", ") };
            out.kept.push(format!("kept {kept_blobs} blob(s) and {kept_layers} unpacked layer(s) in use by {users}"));
        }
        Ok(())
    }

    /// `rmi`: removes a tag, or an image by ID, as Docker does.
    /// A leased image (see [`super::lease`]) is only untagged: it stays, untagged, until
    /// its lease ends, and [`Removal::kept`] says who holds it.
    pub fn remove_image(&self, name: &str, force: bool) -> Result<Removal> {
        let _lock = self.lock()?;
        let (images, damaged) = self.catalog()?;
        let image = self.resolve_in(&images, name)?.clone();
        let users = self.container_users()?;
        let (pins, _) = WorkDir::scan(&self.root.join("tmp"))?;
        let leased_by = pins.images.get(&image.id).map(|owners| owners.join(", "));
        let by_tag = ImageReference::parse(name)
            .ok()
            .filter(|r| r.digest().is_none())
            .map(|r| r.with_default_tag())
            .filter(|r| image.tags.contains(r));
        let short = image.id.short().to_owned();
        let children: Vec<&StoredImage> = images.iter().filter(|i| i.parent.as_ref() == Some(&image.id)).collect();
        let mut out = Removal::default();
        let mut entries: Vec<Descriptor> = self.read_index()?.manifests().clone();

        let remove_whole = match &by_tag {
            Some(tag) if image.tags.len() > 1 => {
                // Just untag.
                let fam = tag.familiar();
                entries.retain(|d| tag_of(d) != Some(&fam));
                out.untagged.push(tag.clone());
                false
            }
            Some(_) => true,
            None => {
                let repos: BTreeSet<String> = image.tags.iter().map(|t| t.full_name()).collect();
                if repos.len() > 1 && !force {
                    return Err(StoreError::Conflict(format!(
                        "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                    )));
                }
                true
            }
        };
        if remove_whole {
            if let Some(u) = users.get(&image.id) {
                if !force {
                    return Err(StoreError::Conflict(format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - {} is using its referenced image {short}",
                        u.join(", ")
                    )));
                }
            }
            if !children.is_empty() && by_tag.is_none() {
                return Err(StoreError::Conflict(format!(
                    "conflict: unable to delete {short} (cannot be forced) - image has dependent child images"
                )));
            }
            if let (Some(owners), true) = (&leased_by, image.tags.is_empty()) {
                return Err(StoreError::Conflict(format!(
                    "conflict: unable to delete {short} (cannot be forced) - image is in use by {owners}"
                )));
            }
            for t in &image.tags {
                out.untagged.push(t.clone());
            }
            if let Some(owners) = &leased_by {
                out.kept.push(format!("kept {} untagged: in use by {owners}", image.id));
            }
            if children.is_empty() && leased_by.is_none() {
                entries.retain(|d| Sha256Digest::from(d.digest()) != image.manifest_digest);
                out.deleted.push(image.id.clone());
            } else {
                // Keep the image untagged: a child still needs it.
                let mut kept = false;
                entries.retain_mut(|d| {
                    if Sha256Digest::from(d.digest()) != image.manifest_digest {
                        return true;
                    }
                    if kept {
                        return false;
                    }
                    kept = true;
                    let mut ann = d.annotations().clone().unwrap_or_default();
                    ann.remove(REF_NAME_ANNOTATION);
                    d.set_annotations(Some(ann));
                    true
                });
            }
        }
        self.write_index(&entries)?;
        if out.deleted.contains(&image.id) {
            let remaining: Vec<StoredImage> = images.into_iter().filter(|i| i.id != image.id).collect();
            let remaining = self.referenced_with_damaged(&remaining, &damaged);
            let mut blobs = vec![image.manifest_digest.clone(), image.id.clone()];
            blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
            let layers: Vec<_> = image.layers.iter().rev().map(|l| l.chain_id.clone()).collect();
            self.delete_unreferenced(&remaining, &blobs, &layers, &mut out)?;
        }
        Ok(out)
    }

    /// `image prune`: removes dangling images (untagged, no child), or with `all` every image
    /// no container uses.
    /// Leased images are skipped, and [`Removal::kept`] says so.
    pub fn prune(&self, all: bool) -> Result<Removal> {
        let mut out = Removal::default();
        let mut skipped: HashSet<Sha256Digest> = HashSet::new();
        loop {
            let images = self.images()?;
            let users = self.container_users()?;
            let cached = self.cache_users()?;
            let leased = {
                let _lock = self.lock()?;
                WorkDir::scan(&self.root.join("tmp"))?.0.images
            };
            let candidate = |i: &&StoredImage| {
                let has_child = images.iter().any(|c| c.parent.as_ref() == Some(&i.id));
                !has_child
                    && !users.contains_key(&i.id)
                    && (all || (i.tags.is_empty() && !cached.contains_key(&i.id)))
                    && !skipped.contains(&i.id)
            };
            let Some(v) = images.iter().find(candidate) else { break };
            if let Some(owners) = leased.get(&v.id) {
                out.kept.push(format!("skipped {}: in use by {}", v.id, owners.join(", ")));
                skipped.insert(v.id.clone());
                continue;
            }
            match self.remove_image(&v.id.to_string(), true) {
                Ok(r) => out.absorb(r),
                // Leased, or given a child, since the list was read: leave it.
                Err(StoreError::Conflict(why)) => out.kept.push(format!("skipped {}: {why}", v.id)),
                Err(StoreError::NoSuchImage(_)) => {}
                Err(e) => return Err(e),
            }
            skipped.insert(v.id.clone());
        }
        Ok(out)
    }

    /// `store reset`: deletes the whole store (images, cache, cache mounts, containers'
    /// records, unpacked layers) and its root directory, including files an unprivileged
    /// user's containers wrote (see [`super::trees`]); refused while a writer (a build, a
    /// push, a save) holds a lease. Running containers are the caller's to refuse.
    pub fn reset(self) -> Result<()> {
        let lock = self.lock()?;
        let (pins, _) = WorkDir::scan(&self.root.join("tmp"))?;
        if !pins.owners.is_empty() {
            return Err(StoreError::Conflict(format!(
                "store {} is in use by {}; wait for them to finish",
                self.root.display(),
                pins.owners.join(", ")
            )));
        }
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_name() == "lock" {
                continue;
            }
            if entry.file_type()?.is_dir() {
                super::trees::remove_tree(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        drop(lock);
        fs::remove_file(self.root.join("lock"))?;
        fs::remove_dir(&self.root)?;
        Ok(())
    }

    /// `store gc`: deletes every blob and unpacked layer no image references and no live
    /// writer has pinned, and the work dirs of dead writers.
    /// A damaged image keeps what it references (see `referenced_with_damaged`) and is named
    /// in [`Removal::kept`].
    pub fn gc(&self) -> Result<Removal> {
        let _lock = self.lock()?;
        let (images, damaged) = self.catalog()?;
        let mut out = Removal::default();
        let blobs = self.list_blobs()?;
        let layers = self.list_layers()?;
        let referenced = self.referenced_with_damaged(&images, &damaged);
        self.delete_unreferenced(&referenced, &blobs, &layers, &mut out)?;
        out.kept.extend(damaged.iter().map(|d| format!("kept the blobs of {d}")));
        self.remove_dead_work_dirs(&mut out)?;
        let ids: HashSet<Sha256Digest> = images.iter().map(|i| i.id.clone()).collect();
        for (path, _) in self.bad_cache_records(&ids)? {
            out.reclaimed += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path)?;
        }
        Ok(out)
    }

    /// Cache records that are unreadable or name an image the store no longer has, with why.
    fn bad_cache_records(&self, ids: &HashSet<Sha256Digest>) -> Result<Vec<(std::path::PathBuf, String)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join("cache"))? {
            let path = e?.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("image").and_then(|i| i.as_str()).and_then(|i| i.parse::<Sha256Digest>().ok()));
            match parsed {
                None => out.push((path, "unreadable".to_owned())),
                Some(id) if !ids.contains(&id) => out.push((path, format!("names {id}, which is not in the store"))),
                Some(_) => {}
            }
        }
        Ok(out)
    }

    /// Removes what killed commands left in `tmp/`: work dirs and leases whose `.pin` no
    /// process holds, and half-deleted layers (`trash-*`). Every command does this when it
    /// opens the store, if the store lock is free at that moment (it never waits), so the
    /// leftovers of `kill -9` do not pile up until `store gc`. Best effort: what cannot be
    /// removed now is left for the next command.
    pub(crate) fn reclaim_dead_work_dirs(&self) {
        let Ok(Some(_lock)) = self.try_lock() else { return };
        let dead = match WorkDir::scan(&self.root.join("tmp")) {
            Ok((_, dead)) => dead,
            Err(e) => {
                tracing::debug!(error = %e, "could not scan tmp/");
                return;
            }
        };
        for d in dead {
            let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if ["work-", "lease-", "trash-"].iter().any(|p| name.starts_with(p)) && d.is_dir() {
                if let Err(e) = super::trees::remove_tree(&d) {
                    tracing::debug!(dir = %d.display(), error = %e, "could not remove a dead work dir");
                }
            }
        }
    }

    fn remove_dead_work_dirs(&self, out: &mut Removal) -> Result<()> {
        let (_, dead) = WorkDir::scan(&self.root.join("tmp"))?;
        // A dead dir may vanish under us: its owner drops it right after releasing the pin.
        let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        for d in dead {
            let m = match std::fs::symlink_metadata(&d) {
                Ok(m) => m,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            let size = if m.is_dir() { dir_size(&d) } else { m.len() };
            let removed = if m.is_dir() { super::trees::remove_tree(&d) } else { std::fs::remove_file(&d) };
            match removed {
                Ok(()) => out.reclaimed += size,
                Err(e) if gone(&e) => {}
                Err(e) => return Err(StoreError::Io(io::Error::new(e.kind(), format!("{}: {e}", d.display())))),
            }
        }
        Ok(())
    }

    fn list_blobs(&self) -> Result<Vec<Sha256Digest>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join("blobs/sha256"))? {
            let name = e?.file_name();
            if let Ok(d) = Sha256Digest::from_hex(&name.to_string_lossy()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn list_layers(&self) -> Result<Vec<Sha256Digest>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join("layers"))? {
            let name = e?.file_name();
            if let Ok(d) = Sha256Digest::from_hex(&name.to_string_lossy()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// `store check`: verifies the layout, every tag, manifest, config and blob, and the
    /// unpacked layers. With `repair`, drops images whose data is damaged, deletes corrupt
    /// blobs and stray files, and cleans dead work dirs.
    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        let _lock = self.lock()?;
        let mut report = CheckReport::default();
        self.check_layout_file(repair, &mut report)?;
        let index = match self.read_index() {
            Ok(i) => i,
            Err(e) => {
                report.problems.push(e.to_string());
                return Ok(report);
            }
        };
        let corrupt = self.check_blobs(repair, &mut report)?;
        let good_images = self.check_images(&index, &corrupt, repair, &mut report)?;
        let (ref_blobs, ref_layers) = self.referenced(&good_images);
        for d in self.list_blobs()? {
            if !ref_blobs.contains(&d) && self.has_blob(&d) {
                report.garbage.push(format!("unreferenced blob {d}"));
            }
        }
        self.check_layer_dirs(&ref_layers, repair, &mut report)?;
        let (_, dead) = WorkDir::scan(&self.root.join("tmp"))?;
        for d in &dead {
            report.garbage.push(format!("leftover work dir {}", d.display()));
        }
        let ids: HashSet<Sha256Digest> = good_images.iter().map(|i| i.id.clone()).collect();
        for (path, why) in self.bad_cache_records(&ids)? {
            if why == "unreadable" {
                report.problems.push(format!("cache record {}: {why}", path.display()));
                if repair {
                    fs::remove_file(&path)?;
                    report.repaired.push(format!("removed {}", path.display()));
                }
            } else {
                report.garbage.push(format!("stale cache record {}: {why}", path.display()));
            }
        }
        if repair {
            let mut r = Removal::default();
            self.remove_dead_work_dirs(&mut r)?;
        }
        Ok(report)
    }

    /// `oci-layout` must name an image layout version.
    fn check_layout_file(&self, repair: bool, report: &mut CheckReport) -> Result<()> {
        match std::fs::read(self.root.join("oci-layout")) {
            Ok(b)
                if serde_json::from_slice::<serde_json::Value>(&b)
                    .ok()
                    .and_then(|v| v.get("imageLayoutVersion").cloned())
                    .is_some() => {}
            _ => {
                report.problems.push(format!("{}: missing or invalid", self.root.join("oci-layout").display()));
                if repair {
                    self.write_atomic(&self.root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
                    report.repaired.push("rewrote oci-layout".into());
                }
            }
        }
        Ok(())
    }

    /// Verifies every blob once; returns the corrupt ones (removed when repairing).
    fn check_blobs(&self, repair: bool, report: &mut CheckReport) -> Result<HashSet<Sha256Digest>> {
        let mut corrupt: HashSet<Sha256Digest> = HashSet::new();
        for e in fs::read_dir(self.root.join("blobs/sha256"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(d) = Sha256Digest::from_hex(&name) else {
                report.problems.push(format!("{}: not a sha256 blob name", e.path().display()));
                if repair {
                    fs::remove_file(e.path())?;
                    report.repaired.push(format!("removed {}", e.path().display()));
                }
                continue;
            };
            let mut blob = self.open_blob(&d)?;
            if let Err(err) = io::copy(&mut blob, &mut io::sink()) {
                report.problems.push(err.to_string());
                corrupt.insert(d.clone());
                if repair {
                    fs::remove_file(self.blob_path(&d))?;
                    report.repaired.push(format!("removed corrupt blob {d}"));
                }
            }
        }
        Ok(corrupt)
    }

    /// Checks every image of `index` (tag, manifest, config, layers); returns the sound ones.
    /// Repairing drops the others from the index.
    fn check_images(
        &self,
        index: &ImageIndex,
        corrupt: &HashSet<Sha256Digest>,
        repair: bool,
        report: &mut CheckReport,
    ) -> Result<Vec<StoredImage>> {
        let mut kept: Vec<Descriptor> = Vec::new();
        let mut good_images = Vec::new();
        for desc in index.manifests() {
            let mdg = Sha256Digest::from(desc.digest());
            let label = tag_of(desc).cloned().unwrap_or_else(|| format!("<none> ({mdg})"));
            match self.image_problem(desc, &mdg, corrupt) {
                Err(reason) => {
                    report.problems.push(format!("image {label}: {reason}"));
                    if repair {
                        report.repaired.push(format!("removed image {label} from the index"));
                    } else {
                        kept.push(desc.clone());
                    }
                }
                Ok(img) => {
                    good_images.push(img);
                    kept.push(desc.clone());
                }
            }
        }
        if repair && kept.len() != index.manifests().len() {
            self.write_index(&kept)?;
        }
        Ok(good_images)
    }

    /// The image an index entry names, or what is wrong with it (the last problem found).
    fn image_problem(
        &self,
        desc: &Descriptor,
        mdg: &Sha256Digest,
        corrupt: &HashSet<Sha256Digest>,
    ) -> std::result::Result<StoredImage, ImageProblem> {
        let mut bad = None;
        if let Some(t) = tag_of(desc) {
            if ImageReference::parse(t).is_err() {
                bad = Some(ImageProblem::BadTag(t.clone()));
            }
        }
        let img = if corrupt.contains(mdg) {
            return Err(ImageProblem::Corrupt { what: "manifest", digest: mdg.clone() });
        } else {
            self.read_image(mdg, desc.size()).map_err(|e| ImageProblem::Unreadable(Box::new(e)))?
        };
        if corrupt.contains(&img.id) {
            bad = Some(ImageProblem::Corrupt { what: "config", digest: img.id.clone() });
        }
        for l in &img.layers {
            if corrupt.contains(&l.digest) {
                bad = Some(ImageProblem::Corrupt { what: "layer", digest: l.digest.clone() });
            } else if !self.has_blob(&l.digest) {
                bad = Some(ImageProblem::MissingLayer(l.digest.clone()));
            }
        }
        match bad {
            Some(reason) => Err(reason),
            None => Ok(img),
        }
    }

    /// Unpacked layer dirs: unreferenced ones are garbage, odd names problems.
    fn check_layer_dirs(
        &self,
        ref_layers: &HashSet<Sha256Digest>,
        repair: bool,
        report: &mut CheckReport,
    ) -> Result<()> {
        for e in fs::read_dir(self.root.join("layers"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            match Sha256Digest::from_hex(&name) {
                Ok(d) if e.path().is_dir() => {
                    if !ref_layers.contains(&d) {
                        report.garbage.push(format!("unreferenced unpacked layer {d}"));
                    }
                }
                _ => {
                    report.problems.push(format!("{}: not an unpacked layer dir", e.path().display()));
                    if repair {
                        let p = e.path();
                        if p.is_dir() {
                            super::trees::remove_tree(&p)?
                        } else {
                            fs::remove_file(&p)?
                        }
                        report.repaired.push(format!("removed {}", p.display()));
                    }
                }
            }
        }
        Ok(())
    }
}
