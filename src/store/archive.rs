//! Save and load of image archives.
//!
//! `save` writes a docker-archive that is also an OCI image layout, as Docker 25+ does:
//! `blobs/sha256/<hex>` (configs, manifests and layers, layers in their stored compression),
//! `oci-layout`, `index.json` (`io.containerd.image.name` = full name,
//! `org.opencontainers.image.ref.name` = tag), `manifest.json` (`Config`, `RepoTags`,
//! `Layers` pointing at the same blob files) and `repositories`. The OCI format leaves out
//! the last two.
//!
//! `load` streams the archive once: every regular file is copied into a work dir while
//! being hashed, then the images are assembled from `manifest.json` (docker-archive, also
//! legacy `<id>/layer.tar` ones) or `index.json` (OCI archive). Every digest and diff ID is
//! verified before anything is moved into the store, and an image becomes visible only when
//! its `index.json` entry is written, so a failed or killed load leaves at most garbage.

use super::lock::WorkDir;
use super::{compression_of, ImageReference, ImageStore, LayerBlob, PutImage, Result, StoreError, StoredImage};
use crate::image::ImageConfig;
use crate::layer::compression::{decompressing_reader, Compression};
use crate::layer::digest::{HashingReader, HashingWriter, Sha256Digest};
use fs_err as fs;
use oci_spec::image::MediaType;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Archive flavour for `save`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    Docker,
    Oci,
}

/// An image to save and the names to save it under.
pub struct SaveItem {
    pub image: StoredImage,
    pub tags: Vec<ImageReference>,
}

fn blob_header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    // Paths here are short ASCII (blobs/sha256/<64 hex>), valid for ustar.
    let _ = h.set_path(path);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

/// Writes `items` as an archive to `out`.
pub fn save<W: Write>(
    store: &ImageStore,
    items: &[SaveItem],
    format: ArchiveFormat,
    out: W,
    progress: &indicatif::ProgressBar,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let mut written = std::collections::HashSet::new();
    let add_dir = |tar: &mut tar::Builder<W>, p: &str| -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        let _ = h.set_path(p);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_cksum();
        tar.append(&h, io::empty())
    };
    add_dir(&mut tar, "blobs/")?;
    add_dir(&mut tar, "blobs/sha256/")?;
    let mut index_entries = Vec::new();
    let mut manifest_json = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for item in items {
        let img = &item.image;
        let mut blobs: Vec<(Sha256Digest, u64)> = vec![(img.id.clone(), img.config_raw.len() as u64)];
        blobs.extend(img.layers.iter().map(|l| (l.digest.clone(), l.size)));
        blobs.push((img.manifest_digest.clone(), img.manifest_size));
        for (d, size) in blobs {
            if !written.insert(d.clone()) {
                continue;
            }
            let blob = store.open_blob(&d)?;
            let header = blob_header(&format!("blobs/sha256/{}", d.hex()), size);
            tar.append(&header, progress.wrap_read(blob)).map_err(|e| {
                match e.get_ref().and_then(|r| r.downcast_ref::<super::CorruptBlobMarker>()) {
                    Some(m) => StoreError::Conflict(m.0.clone()),
                    None => StoreError::Io(e),
                }
            })?;
        }
        let mut descriptor = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.manifest_digest.to_string(),
            "size": img.manifest_size,
        });
        let tags: Vec<ImageReference> = item.tags.clone();
        if tags.is_empty() {
            index_entries.push(descriptor.clone());
        }
        for t in &tags {
            descriptor["annotations"] = serde_json::json!({
                "io.containerd.image.name": t.to_string(),
                "org.opencontainers.image.ref.name": t.tag().unwrap_or("latest"),
            });
            index_entries.push(descriptor.clone());
            if let Some(top) = img.layers.last() {
                repositories
                    .entry(t.familiar_name())
                    .or_default()
                    .insert(t.tag().unwrap_or("latest").to_owned(), top.digest.hex().to_owned());
            }
        }
        let repo_tags: Vec<String> = tags.iter().map(|t| t.familiar()).collect();
        manifest_json.push(serde_json::json!({
            "Config": format!("blobs/sha256/{}", img.id.hex()),
            "RepoTags": if repo_tags.is_empty() { serde_json::Value::Null } else { repo_tags.into() },
            "Layers": img.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect::<Vec<_>>(),
        }));
    }
    let small = |tar: &mut tar::Builder<W>, name: &str, bytes: Vec<u8>| -> io::Result<()> {
        tar.append(&blob_header(name, bytes.len() as u64), &bytes[..])
    };
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index_entries });
    small(&mut tar, "index.json", serde_json::to_vec(&index).map_err(io::Error::other)?)?;
    if format == ArchiveFormat::Docker {
        small(&mut tar, "manifest.json", serde_json::to_vec(&manifest_json).map_err(io::Error::other)?)?;
    }
    small(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())?;
    if format == ArchiveFormat::Docker && !repositories.is_empty() {
        small(&mut tar, "repositories", serde_json::to_vec(&repositories).map_err(io::Error::other)?)?;
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

/// A file copied out of the archive.
struct Extracted {
    file: PathBuf,
    digest: Sha256Digest,
    size: u64,
    /// The store already had a blob with these bytes when the entry was extracted (a base
    /// layer of an image loaded back from dockerd): the copy was not synced, since installing
    /// it keeps the blob in place, and a layer's tar needs no second read to check it.
    known: bool,
}

/// What `load` loaded: per image, its ID and the tags it got.
#[derive(Debug)]
pub struct Loaded {
    pub id: Sha256Digest,
    pub tags: Vec<ImageReference>,
}

fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// Why a layer of an archive cannot be used.
enum LayerReadError {
    /// Reading the extracted file failed (the store's side).
    Io(io::Error),
    /// The layer is not a readable tar (the archive's side).
    Tar(String),
}

/// The diff ID (sha256 of the uncompressed tar) of the layer blob in `file`, read as a tar to
/// its last entry: a layer whose digests match but that is not a whole tar (truncated in an
/// entry, garbage after a header) is refused by `load`, not found out by the `run` that
/// unpacks it. Only readability is checked here; names and links are checked when the layer
/// is applied.
fn readable_layer_diff_id(file: &Path) -> Result<Sha256Digest, LayerReadError> {
    let file = fs::File::open(file).map_err(LayerReadError::Io)?;
    let (_, stream) = decompressing_reader(file).map_err(|e| LayerReadError::Tar(e.to_string()))?;
    let mut hashing = HashingReader::new(stream);
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive.entries().map_err(|e| LayerReadError::Tar(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| LayerReadError::Tar(format!("corrupt tar header: {e}")))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let expected = entry.size();
            let read = io::copy(&mut entry, &mut io::sink())
                .map_err(|e| LayerReadError::Tar(format!("truncated or corrupt tar at {name}: {e}")))?;
            if read != expected {
                return Err(LayerReadError::Tar(format!("truncated tar: {name} has {read} of its {expected} bytes")));
            }
        }
    }
    // The end-of-archive blocks and any padding are part of the diff ID.
    let (digest, _) = hashing.finish().map_err(|e| LayerReadError::Tar(e.to_string()))?;
    Ok(digest)
}

/// The files of an archive being loaded, extracted into a work dir, and its links.
struct ExtractedArchive<'a> {
    source: &'a str,
    files: HashMap<String, Extracted>,
    links: HashMap<String, String>,
}

/// An image to assemble from an archive: config file, layer files, tags.
struct LoadPlan<'a> {
    config: &'a Extracted,
    layers: Vec<(&'a Extracted, Option<MediaType>)>,
    tags: Vec<ImageReference>,
}

/// An image whose config and layers were verified, ready to enter the store.
struct VerifiedImage {
    config_raw: Vec<u8>,
    /// Per layer: the extracted file, its blob, and whether the file was left unsynced
    /// ([`Extracted::known`]).
    layers: Vec<(PathBuf, LayerBlob, bool)>,
    tags: Vec<ImageReference>,
}

impl<'a> ExtractedArchive<'a> {
    fn bad(&self, reason: String) -> StoreError {
        StoreError::BadArchive { path: self.source.to_owned(), reason }
    }

    /// Reads every entry of `archive`: regular files are written to `work` (hashed on the
    /// way), links remembered; everything else is ignored.
    fn extract<R: Read>(
        store: &ImageStore,
        work: &WorkDir,
        archive: &mut tar::Archive<R>,
        source: &'a str,
    ) -> Result<Self> {
        let mut out = ExtractedArchive { source, files: HashMap::new(), links: HashMap::new() };
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        for entry in archive.entries().map_err(|e| out.bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| out.bad(format!("corrupt archive: {e}")))?;
            let name = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    n += 1;
                    let path = work.path().join(format!("f{n}"));
                    let extracted = out.extract_file(store, &mut entry, &name, path, &mut buf)?;
                    out.files.insert(name, extracted);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(target) = entry.link_name_bytes() {
                        let target = String::from_utf8_lossy(&target).into_owned();
                        let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                            let dir =
                                Path::new(&name).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                            normalise(&format!("{dir}/{target}"))
                        } else {
                            normalise(&target)
                        };
                        out.links.insert(name, resolved);
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Copies one regular entry to `path`, hashing it, and syncs it.
    fn extract_file<R: Read>(
        &self,
        store: &ImageStore,
        entry: &mut tar::Entry<R>,
        name: &str,
        path: PathBuf,
        buf: &mut [u8],
    ) -> Result<Extracted> {
        let file = fs::File::create(&path)?.into_parts().0;
        let mut w = HashingWriter::new(file);
        loop {
            let k = entry.read(buf).map_err(|e| self.bad(format!("truncated or corrupt archive at {name}: {e}")))?;
            if k == 0 {
                break;
            }
            w.write_all(&buf[..k]).map_err(|e| {
                if super::is_disk_full(&e) {
                    StoreError::DiskFull {
                        root: store.root().to_owned(),
                        during: format!("loading {}", self.source),
                        source: e,
                    }
                } else {
                    io::Error::new(e.kind(), format!("{}: {e}", path.display())).into()
                }
            })?;
        }
        let (digest, size, file) = w.finish();
        if size != entry.header().size().unwrap_or(size) {
            return Err(self.bad(format!("truncated archive: {name} is shorter than its header says")));
        }
        let known = store.has_blob(&digest);
        if !known {
            file.sync_all().map_err(|e| io::Error::new(e.kind(), format!("fsync {}: {e}", path.display())))?;
        }
        Ok(Extracted { file: path, digest, size, known })
    }

    /// The file at `name`, following links (at most 16).
    fn lookup(&self, name: &str) -> Option<&Extracted> {
        let mut name = normalise(name);
        for _ in 0..16 {
            if let Some(f) = self.files.get(&name) {
                return Some(f);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let f = self.lookup(name).ok_or_else(|| self.bad(format!("{name} is missing from the archive")))?;
        Ok(fs::read(&f.file)?)
    }

    fn by_digest(&self, d: &Sha256Digest) -> Option<&Extracted> {
        self.lookup(&format!("blobs/sha256/{}", d.hex()))
    }

    /// The images a docker-archive's `manifest.json` lists.
    fn docker_plans(&self) -> Result<Vec<LoadPlan<'_>>> {
        let bytes = self.read_small("manifest.json")?;
        let entries: Vec<serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|e| self.bad(format!("manifest.json: {e}")))?;
        let mut plans = Vec::new();
        for e in entries {
            let cfg = e
                .get("Config")
                .and_then(|c| c.as_str())
                .ok_or_else(|| self.bad("manifest.json: entry without Config".into()))?;
            let config = self.lookup(cfg).ok_or_else(|| self.bad(format!("{cfg} is missing from the archive")))?;
            let mut layers = Vec::new();
            for l in e.get("Layers").and_then(|l| l.as_array()).cloned().unwrap_or_default() {
                let l = l.as_str().ok_or_else(|| self.bad("manifest.json: layer is not a string".into()))?.to_owned();
                let file = self.lookup(&l).ok_or_else(|| self.bad(format!("layer {l} is missing from the archive")))?;
                layers.push((file, None));
            }
            let mut tags = Vec::new();
            for t in e.get("RepoTags").and_then(|t| t.as_array()).cloned().unwrap_or_default() {
                if let Some(t) = t.as_str() {
                    let reference = ImageReference::parse(t).map_err(|e| self.bad(format!("manifest.json: {e}")))?;
                    tags.push(reference.with_default_tag());
                }
            }
            plans.push(LoadPlan { config, layers, tags });
        }
        Ok(plans)
    }

    /// The images an OCI archive's `index.json` names (nested indexes: this platform's).
    fn oci_plans(&self) -> Result<Vec<LoadPlan<'_>>> {
        let bytes = self.read_small("index.json")?;
        let index: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| self.bad(format!("index.json: {e}")))?;
        let mut stack: Vec<serde_json::Value> =
            index.get("manifests").and_then(|m| m.as_array()).cloned().unwrap_or_default();
        let mut plans: Vec<LoadPlan> = Vec::new();
        while let Some(desc) = stack.pop() {
            let digest: Sha256Digest = desc
                .get("digest")
                .and_then(|d| d.as_str())
                .unwrap_or("")
                .parse()
                .map_err(|e| self.bad(format!("index.json: {e}")))?;
            let media = desc.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
            let blob = self
                .by_digest(&digest)
                .ok_or_else(|| self.bad(format!("blob {digest} is missing from the archive")))?;
            if blob.digest != digest {
                return Err(self.bad(format!("blob {digest} is corrupt: content hashes to {}", blob.digest)));
            }
            let body: serde_json::Value = serde_json::from_slice(&fs::read(&blob.file)?)
                .map_err(|e| self.bad(format!("manifest {digest}: {e}")))?;
            if media.contains("index") || body.get("manifests").is_some() {
                stack.extend(platform_manifest(&desc, &body));
                continue;
            }
            let (config, layers) = self.manifest_parts(&digest, &body)?;
            let tag = reference_of(&desc);
            if let Some(existing) = plans.iter_mut().find(|p| p.config.digest == config.digest) {
                existing.tags.extend(tag);
            } else {
                plans.push(LoadPlan { config, layers, tags: tag.into_iter().map(|t| t.with_default_tag()).collect() });
            }
        }
        Ok(plans)
    }

    /// The config and layer files an OCI manifest names, their digests checked.
    #[allow(clippy::type_complexity)]
    fn manifest_parts(
        &self,
        digest: &Sha256Digest,
        body: &serde_json::Value,
    ) -> Result<(&Extracted, Vec<(&Extracted, Option<MediaType>)>)> {
        let digest_at = |value: Option<&serde_json::Value>| -> Result<Sha256Digest> {
            value
                .and_then(|d| d.as_str())
                .unwrap_or("")
                .parse()
                .map_err(|e| self.bad(format!("manifest {digest}: {e}")))
        };
        let cfg_digest = digest_at(body.pointer("/config/digest"))?;
        let config = self
            .by_digest(&cfg_digest)
            .ok_or_else(|| self.bad(format!("config {cfg_digest} is missing from the archive")))?;
        let mut layers = Vec::new();
        for l in body.get("layers").and_then(|l| l.as_array()).cloned().unwrap_or_default() {
            let ld = digest_at(l.get("digest"))?;
            let f = self.by_digest(&ld).ok_or_else(|| self.bad(format!("layer {ld} is missing from the archive")))?;
            if f.digest != ld {
                return Err(self.bad(format!("layer blob {ld} is corrupt: content hashes to {}", f.digest)));
            }
            let mt = l.get("mediaType").and_then(|m| m.as_str()).map(MediaType::from);
            layers.push((f, mt));
        }
        if config.digest != cfg_digest {
            return Err(self.bad(format!("config {cfg_digest} is corrupt: content hashes to {}", config.digest)));
        }
        Ok((config, layers))
    }

    /// Checks `plan`'s config and every layer's diff ID before anything enters the store.
    fn verify(&self, plan: &LoadPlan) -> Result<VerifiedImage> {
        let config_raw = fs::read(&plan.config.file)?;
        let config = ImageConfig::from_json(&config_raw)
            .map_err(|e| self.bad(format!("image config {}: {e}", plan.config.digest)))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != plan.layers.len() {
            return Err(self.bad(format!(
                "image config {} lists {} layers, the archive has {}",
                plan.config.digest,
                diff_ids.len(),
                plan.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for ((f, mt), expected) in plan.layers.iter().zip(diff_ids) {
            let expected: Sha256Digest =
                expected.parse().map_err(|e| self.bad(format!("image config {}: {e}", plan.config.digest)))?;
            let head = {
                let mut h = [0u8; 4];
                let mut file = fs::File::open(&f.file)?;
                let k = file.read(&mut h)?;
                h[..k].to_vec()
            };
            let compression = Compression::detect(&head);
            // An uncompressed layer the store already holds is its own diff ID, and a tar the
            // store checked when it took it in.
            let diff_id = if f.known && compression == Compression::None && f.digest == expected {
                f.digest.clone()
            } else {
                readable_layer_diff_id(&f.file).map_err(|e| match e {
                    LayerReadError::Io(e) => StoreError::Io(e),
                    LayerReadError::Tar(why) => self.bad(format!("layer {}: {why}", f.digest)),
                })?
            };
            if diff_id != expected {
                return Err(
                    self.bad(format!("layer {} has diff ID {diff_id}, its image config says {expected}", f.digest))
                );
            }
            let media_type = mt
                .clone()
                .filter(|m| compression_of(m) == compression)
                .unwrap_or_else(|| compression.oci_layer_media_type());
            layers.push((
                f.file.clone(),
                LayerBlob { digest: f.digest.clone(), diff_id, size: f.size, media_type, unpacked_size: None },
                f.known,
            ));
        }
        Ok(VerifiedImage { config_raw, layers, tags: plan.tags.clone() })
    }
}

/// Of a nested index `body` (reached through `desc`), the manifest for this platform (or
/// without one), carrying `desc`'s annotations when it has none.
fn platform_manifest(desc: &serde_json::Value, body: &serde_json::Value) -> Option<serde_json::Value> {
    for m in body.get("manifests").and_then(|m| m.as_array()).cloned().unwrap_or_default() {
        let arch_ok = m
            .get("platform")
            .and_then(|p| p.get("architecture"))
            .and_then(|a| a.as_str())
            .is_none_or(|a| a == crate::image::platform::native_arch());
        if arch_ok {
            let mut m = m.clone();
            if m.get("annotations").is_none() {
                if let Some(a) = desc.get("annotations") {
                    m["annotations"] = a.clone();
                }
            }
            return Some(m);
        }
    }
    None
}

/// The tag an OCI index entry names (containerd's image name, or a ref name that is one).
fn reference_of(desc: &serde_json::Value) -> Option<ImageReference> {
    let ann = desc.get("annotations");
    let name = ann.and_then(|a| a.get("io.containerd.image.name")).and_then(|n| n.as_str());
    let refname = ann.and_then(|a| a.get(super::REF_NAME_ANNOTATION)).and_then(|n| n.as_str());
    match (name, refname) {
        (Some(n), _) => ImageReference::parse(n).ok(),
        (None, Some(r)) if r.contains(':') || r.contains('/') => ImageReference::parse(r).ok(),
        _ => None,
    }
}

/// Loads every image in the archive read from `input` (named `source` in errors).
pub fn load<R: Read>(
    store: &ImageStore,
    input: R,
    source: &str,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Loaded>> {
    let bad = |reason: String| StoreError::BadArchive { path: source.to_owned(), reason };
    let work = store.work_dir()?;
    let (_, stream) = decompressing_reader(progress.wrap_read(input)).map_err(|e| bad(e.to_string()))?;
    let mut archive = tar::Archive::new(stream);
    let extracted = ExtractedArchive::extract(store, &work, &mut archive, source)?;
    let plans = if extracted.lookup("manifest.json").is_some() {
        extracted.docker_plans()?
    } else if extracted.lookup("index.json").is_some() {
        extracted.oci_plans()?
    } else {
        return Err(bad("neither manifest.json nor index.json found: not a docker-archive or OCI archive".into()));
    };
    if plans.is_empty() {
        return Err(bad("the archive holds no image".into()));
    }
    // Verify everything before touching the store.
    let ready: Vec<VerifiedImage> = plans.iter().map(|p| extracted.verify(p)).collect::<Result<_>>()?;
    let mut out = Vec::new();
    for r in ready {
        for (file, layer, unsynced) in &r.layers {
            if file.exists() {
                // The blob it duplicates may have been removed meanwhile: then this copy is
                // the one kept, and synced first.
                if *unsynced && !store.has_blob(&layer.digest) {
                    fs::File::open(file)?.sync_all()?;
                }
                work.commit_blob_file(store, file, &layer.digest)?;
            }
        }
        let blobs: Vec<LayerBlob> = r.layers.into_iter().map(|(_, l, _)| l).collect();
        let image = store.put_image_raw(&r.config_raw, &blobs, &PutImage { tags: r.tags.clone(), parent: None })?;
        out.push(Loaded { id: image.id, tags: r.tags });
    }
    drop(work);
    Ok(out)
}
