//! One image as the differential suite compares it, read the same way from `docker save` and
//! `rbuild save` (both write a docker-archive: `manifest.json`, the config blob, one tar per
//! layer): the config fields that a Dockerfile sets, the history, the layer count and the root
//! filesystem flattened path by path (whiteouts and opaque dirs applied; mtimes dropped).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The config fields compared (under the config's `config` object), in Docker's spelling.
pub const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

/// One history entry: what made it and whether it added a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub created_by: String,
    pub empty_layer: bool,
}

/// One path of the flattened root filesystem, without times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `file`, `dir`, `symlink`, `char`, `block` or `fifo`.
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// sha256 of a regular file's content.
    pub sha256: Option<String>,
    /// A symlink's target; a device's `major:minor`.
    pub target: Option<String>,
    /// The other paths of this file's hardlink group (sorted), empty when it has one name.
    pub hardlinks: Vec<String>,
}

/// What the suite compares of one image.
#[derive(Debug)]
pub struct Image {
    /// Config fields (null and missing are the same: both absent here), plus `author`.
    pub config: BTreeMap<String, Value>,
    pub history: Vec<HistoryEntry>,
    pub layers: usize,
    /// Absolute path (`/etc/passwd`) to node; the root itself is not listed.
    pub files: BTreeMap<String, Node>,
}

/// A node during flattening: the hardlink group is an inode number resolved at the end.
struct Flat {
    node: Node,
    inode: u64,
}

/// Reads a docker-archive (`docker save` / `rbuild save --format docker`) holding one image.
pub fn read_archive(path: &Path) -> Result<Image, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes.as_slice());
    for entry in archive.entries().map_err(|e| format!("{}: {e}", path.display()))? {
        let mut entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(|e| format!("{}: {e}", path.display()))?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| format!("{}: {name}: {e}", path.display()))?;
        members.insert(name.trim_start_matches("./").to_owned(), data);
    }
    let member = |name: &str| members.get(name).ok_or_else(|| format!("{}: no member {name}", path.display()));
    let manifest: Value = serde_json::from_slice(member("manifest.json")?)
        .map_err(|e| format!("{}: manifest.json: {e}", path.display()))?;
    let [image] = manifest.as_array().map(Vec::as_slice).unwrap_or_default() else {
        return Err(format!("{}: manifest.json must list exactly one image", path.display()));
    };
    let config_name = image["Config"].as_str().ok_or("manifest.json: no Config")?;
    let config: Value =
        serde_json::from_slice(member(config_name)?).map_err(|e| format!("{}: {config_name}: {e}", path.display()))?;
    let layer_names: Vec<&str> =
        image["Layers"].as_array().ok_or("manifest.json: no Layers")?.iter().filter_map(Value::as_str).collect();
    let mut flat: BTreeMap<String, Flat> = BTreeMap::new();
    let mut next_inode = 0;
    for name in &layer_names {
        apply_layer(&mut flat, &mut next_inode, member(name)?)
            .map_err(|e| format!("{}: {name}: {e}", path.display()))?;
    }
    Ok(Image {
        config: config_fields(&config),
        history: history(&config),
        layers: layer_names.len(),
        files: resolve_hardlinks(flat),
    })
}

fn config_fields(config: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let inner = &config["config"];
    for field in CONFIG_FIELDS {
        match inner.get(*field) {
            // Docker writes unset fields as null, "" or {} depending on the builder: all absent.
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::Object(o)) if o.is_empty() => {}
            Some(value) => {
                out.insert((*field).to_owned(), value.clone());
            }
        }
    }
    if let Some(author) = config.get("author").filter(|a| !a.is_null() && a.as_str() != Some("")) {
        out.insert("author".to_owned(), author.clone());
    }
    out
}

fn history(config: &Value) -> Vec<HistoryEntry> {
    let entries = config["history"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .map(|h| HistoryEntry {
            created_by: h["created_by"].as_str().unwrap_or_default().to_owned(),
            empty_layer: h["empty_layer"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// The layer's tar, decompressed when it is gzip (docker-archives normally hold plain tars).
fn layer_tar(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        // rbuild compresses big layers in parallel, as pigz does: several gzip members.
        flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).map_err(|e| format!("gunzip: {e}"))?;
        Ok(out)
    } else {
        Ok(data.to_vec())
    }
}

/// `./a/b/` -> `/a/b`; the root is `/`.
fn absolute(name: &str) -> String {
    let trimmed = name.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
    format!("/{trimmed}")
}

fn remove_tree(flat: &mut BTreeMap<String, Flat>, path: &str, keep_self: bool) {
    let prefix = format!("{}/", path.trim_end_matches('/'));
    let doomed: Vec<String> =
        flat.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()).collect();
    for key in doomed {
        flat.remove(&key);
    }
    if !keep_self {
        flat.remove(path);
    }
}

/// Applies one layer as overlay semantics say: opaque markers and whiteouts hide what lower
/// layers had, then the layer's own entries land (a directory entry replaces only metadata).
fn apply_layer(flat: &mut BTreeMap<String, Flat>, next_inode: &mut u64, data: &[u8]) -> Result<(), String> {
    let tar = layer_tar(data)?;
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut own: Vec<(String, Flat, Option<String>)> = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let raw = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let path = absolute(&raw);
        let (parent, base) = path.rsplit_once('/').unwrap_or(("", &path));
        if base == ".wh..wh..opq" {
            remove_tree(flat, if parent.is_empty() { "/" } else { parent }, true);
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            remove_tree(flat, &format!("{parent}/{hidden}"), false);
            continue;
        }
        if path == "/" {
            continue;
        }
        let header = entry.header();
        let kind_of = header.entry_type();
        let mode = header.mode().map_err(|e| format!("{raw}: {e}"))? & 0o7777;
        let uid = header.uid().map_err(|e| format!("{raw}: {e}"))?;
        let gid = header.gid().map_err(|e| format!("{raw}: {e}"))?;
        let link = entry.link_name().map_err(|e| format!("{raw}: {e}"))?.map(|l| l.to_string_lossy().into_owned());
        let (kind, target, hardlink_to) = match kind_of {
            tar::EntryType::Directory => ("dir", None, None),
            tar::EntryType::Symlink => ("symlink", link, None),
            tar::EntryType::Link => ("file", None, link.map(|l| absolute(&l))),
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let kind = if kind_of == tar::EntryType::Char { "char" } else { "block" };
                (kind, Some(format!("{major}:{minor}")), None)
            }
            tar::EntryType::Fifo => ("fifo", None, None),
            _ => ("file", None, None),
        };
        let mut content = Vec::new();
        if kind == "file" && hardlink_to.is_none() {
            entry.read_to_end(&mut content).map_err(|e| format!("{raw}: {e}"))?;
        }
        let sha256 = (kind == "file" && hardlink_to.is_none()).then(|| sha256_hex(&content));
        *next_inode += 1;
        let node = Node { kind, mode, uid, gid, size: content.len() as u64, sha256, target, hardlinks: Vec::new() };
        own.push((path, Flat { node, inode: *next_inode }, hardlink_to));
    }
    for (path, mut item, hardlink_to) in own {
        if let Some(target) = hardlink_to {
            let Some(linked) = flat.get(&target) else {
                return Err(format!("{path}: hardlink to {target}, which the layer does not hold"));
            };
            item = Flat { node: linked.node.clone(), inode: linked.inode };
        }
        if item.node.kind != "dir" {
            remove_tree(flat, &path, true);
        }
        flat.insert(path, item);
    }
    Ok(())
}

fn resolve_hardlinks(flat: BTreeMap<String, Flat>) -> BTreeMap<String, Node> {
    let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (path, item) in &flat {
        groups.entry(item.inode).or_default().push(path.clone());
    }
    flat.into_iter()
        .map(|(path, item)| {
            let mut node = item.node;
            node.hardlinks = groups[&item.inode].iter().filter(|p| **p != path).cloned().collect();
            (path, node)
        })
        .collect()
}

/// sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A node in one line, for failure messages.
pub fn describe(node: Option<&Node>) -> String {
    match node {
        None => "absent".to_owned(),
        Some(n) => {
            let mut text = format!("{} {:04o} {}:{}", n.kind, n.mode, n.uid, n.gid);
            if let Some(sha) = &n.sha256 {
                text.push_str(&format!(" size={} sha256={}", n.size, &sha[..12]));
            }
            if let Some(target) = &n.target {
                text.push_str(&format!(" -> {target}"));
            }
            if !n.hardlinks.is_empty() {
                text.push_str(&format!(" links={:?}", n.hardlinks));
            }
            text
        }
    }
}
