//! Store integrity checks (`store check [--repair]`), garbage collection (`store gc`), image
//! removal (`rmi`) and pruning (`image prune`). Everything that deletes runs under the store
//! lock and keeps whatever an image in `index.json` or a live writer's pins still reference.

use super::lock::WorkDir;
use super::{ImageReference, ImageStore, Result, StoreError, StoredImage, REF_NAME_ANNOTATION};
use crate::layer::digest::Sha256Digest;
use fs_err as fs;
use oci_spec::image::Descriptor;
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

    /// Deletes the given blobs and layer dirs unless still referenced or pinned. Call with
    /// the store lock held and `remaining` = the images left in the index.
    fn delete_unreferenced(
        &self,
        remaining: &[StoredImage],
        blobs: &[Sha256Digest],
        layers: &[Sha256Digest],
        out: &mut Removal,
    ) -> Result<()> {
        let (ref_blobs, ref_layers) = self.referenced(remaining);
        let (pins, _) = WorkDir::scan(&self.root.join("tmp"))?;
        let mut seen = HashSet::new();
        for b in blobs {
            if ref_blobs.contains(b) || pins.blobs.contains(b) || !seen.insert(b.clone()) {
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
            if ref_layers.contains(l) || pins.layers.contains(l) || !seen.insert(l.clone()) {
                continue;
            }
            let dir = self.layer_dir(l);
            if dir.is_dir() {
                let size = dir_size(&dir);
                // Rename first so the layer disappears atomically, then delete at leisure.
                let trash = self.root.join("tmp").join(format!("trash-{}-{}", l.short(), std::process::id()));
                fs::rename(&dir, &trash)?;
                fs::remove_dir_all(&trash)?;
                out.reclaimed += size;
                out.deleted_layers.push(l.clone());
                out.deleted.push(l.clone());
            }
        }
        Ok(())
    }

    /// `rmi`: removes a tag, or an image by ID, as Docker does.
    pub fn remove_image(&self, name: &str, force: bool) -> Result<Removal> {
        let _lock = self.lock()?;
        let images = self.images()?;
        let image = self.resolve_in(&images, name)?.clone();
        let users = self.container_users()?;
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
            for t in &image.tags {
                out.untagged.push(t.clone());
            }
            if children.is_empty() {
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
            let mut blobs = vec![image.manifest_digest.clone(), image.id.clone()];
            blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
            let layers: Vec<_> = image.layers.iter().rev().map(|l| l.chain_id.clone()).collect();
            self.delete_unreferenced(&remaining, &blobs, &layers, &mut out)?;
        }
        Ok(out)
    }

    /// `image prune`: removes dangling images (untagged, no child), or with `all` every image
    /// no container uses.
    pub fn prune(&self, all: bool) -> Result<Removal> {
        let mut out = Removal::default();
        loop {
            let images = self.images()?;
            let users = self.container_users()?;
            let cached = self.cache_users()?;
            let victim = images.iter().find(|i| {
                let has_child = images.iter().any(|c| c.parent.as_ref() == Some(&i.id));
                !has_child && !users.contains_key(&i.id) && (all || (i.tags.is_empty() && !cached.contains_key(&i.id)))
            });
            let Some(v) = victim else { break };
            let r = self.remove_image(&v.id.to_string(), true)?;
            out.untagged.extend(r.untagged);
            out.deleted.extend(r.deleted);
            out.deleted_blobs.extend(r.deleted_blobs);
            out.deleted_layers.extend(r.deleted_layers);
            out.reclaimed += r.reclaimed;
        }
        Ok(out)
    }

    /// `store gc`: deletes every blob and unpacked layer no image references and no live
    /// writer has pinned, and the work dirs of dead writers.
    pub fn gc(&self) -> Result<Removal> {
        let _lock = self.lock()?;
        let images = self.images()?;
        let mut out = Removal::default();
        let blobs = self.list_blobs()?;
        let layers = self.list_layers()?;
        self.delete_unreferenced(&images, &blobs, &layers, &mut out)?;
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

    fn remove_dead_work_dirs(&self, out: &mut Removal) -> Result<()> {
        let (_, dead) = WorkDir::scan(&self.root.join("tmp"))?;
        for d in dead {
            let m = std::fs::symlink_metadata(&d)?;
            out.reclaimed += if m.is_dir() { dir_size(&d) } else { m.len() };
            if m.is_dir() {
                fs::remove_dir_all(&d)?;
            } else {
                fs::remove_file(&d)?;
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
        let index = match self.read_index() {
            Ok(i) => i,
            Err(e) => {
                report.problems.push(e.to_string());
                return Ok(report);
            }
        };
        // Verify every blob once.
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
        let mut kept: Vec<Descriptor> = Vec::new();
        let mut good_images = Vec::new();
        for desc in index.manifests() {
            let mdg = Sha256Digest::from(desc.digest());
            let label = tag_of(desc).cloned().unwrap_or_else(|| format!("<none> ({mdg})"));
            let mut bad = None;
            if let Some(t) = tag_of(desc) {
                if ImageReference::parse(t).is_err() {
                    bad = Some(format!("tag {t:?} is not a valid reference"));
                }
            }
            let image = if corrupt.contains(&mdg) {
                Err(format!("manifest {mdg} is corrupt"))
            } else {
                self.read_image(&mdg, desc.size()).map_err(|e| e.to_string())
            };
            match image {
                Err(e) => bad = Some(e),
                Ok(img) => {
                    if corrupt.contains(&img.id) {
                        bad = Some(format!("config {} is corrupt", img.id));
                    }
                    for l in &img.layers {
                        if corrupt.contains(&l.digest) {
                            bad = Some(format!("layer {} is corrupt", l.digest));
                        } else if !self.has_blob(&l.digest) {
                            bad = Some(format!("layer {} is missing", l.digest));
                        }
                    }
                    if bad.is_none() {
                        good_images.push(img);
                    }
                }
            }
            match bad {
                Some(reason) => {
                    report.problems.push(format!("image {label}: {reason}"));
                    if repair {
                        report.repaired.push(format!("removed image {label} from the index"));
                    } else {
                        kept.push(desc.clone());
                    }
                }
                None => kept.push(desc.clone()),
            }
        }
        if repair && kept.len() != index.manifests().len() {
            self.write_index(&kept)?;
        }
        let (ref_blobs, ref_layers) = self.referenced(&good_images);
        for d in self.list_blobs()? {
            if !ref_blobs.contains(&d) && self.has_blob(&d) {
                report.garbage.push(format!("unreferenced blob {d}"));
            }
        }
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
                            fs::remove_dir_all(&p)?
                        } else {
                            fs::remove_file(&p)?
                        }
                        report.repaired.push(format!("removed {}", p.display()));
                    }
                }
            }
        }
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
}
