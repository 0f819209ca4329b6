//! Comparing rbuild's image with Docker's: contents follow BuildKit, config and history follow
//! classic, and where classic and BuildKit agree rbuild must agree with both. Differences the
//! allow-list (`allowlist.toml`) names for a case are not reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::image::{describe, HistoryEntry, Image, Node};

/// One documented, deliberate difference from Docker.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Allowance {
    pub id: String,
    /// What differs.
    pub what: String,
    /// Why rbuild differs on purpose.
    pub why: String,
    /// Applies to every case (else only to cases that name it in `allow`).
    #[serde(default)]
    pub everywhere: bool,
    /// Rootfs paths it covers: exact, or a prefix ending in `/**`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// What may differ: node attributes (`uid`, `gid`, `mode`, `kind`, `size`, `sha256`,
    /// `target`, `hardlinks`, `presence`), `history.source-digest`, `history`, `layers` or
    /// `config.<Field>`.
    pub attributes: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct AllowFile {
    allow: Vec<Allowance>,
}

/// Reads `allowlist.toml`: every entry needs a reason and a unique id.
pub fn read_allowlist(path: &Path) -> Result<Vec<Allowance>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: AllowFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut ids = BTreeSet::new();
    for entry in &file.allow {
        if !ids.insert(entry.id.clone()) {
            return Err(format!("{}: duplicate id {}", path.display(), entry.id));
        }
        if entry.why.trim().is_empty() || entry.what.trim().is_empty() {
            return Err(format!("{}: {} needs `what` and `why`", path.display(), entry.id));
        }
    }
    Ok(file.allow)
}

/// The allowances in force for one case.
pub struct Allowed<'a>(pub Vec<&'a Allowance>);

impl Allowed<'_> {
    fn attribute(&self, attribute: &str) -> bool {
        self.0.iter().any(|a| a.paths.is_empty() && a.attributes.iter().any(|x| x == attribute))
    }

    fn path_attribute(&self, path: &str, attribute: &str) -> bool {
        self.0.iter().any(|a| {
            a.attributes.iter().any(|x| x == attribute)
                && a.paths.iter().any(|p| match p.strip_suffix("/**") {
                    Some(prefix) => path.starts_with(&format!("{prefix}/")),
                    None => p == path,
                })
        })
    }
}

/// The Docker results one case is compared with.
pub struct Expected<'a> {
    pub classic: Option<&'a Image>,
    pub buildkit: Option<&'a Image>,
}

/// `COPY file:<64 hex> in /x` -> `COPY file:<digest> in /x`: classic's source digest is its own
/// tarsum-style hash.
fn without_source_digest(created_by: &str) -> String {
    let re = regex::Regex::new(r"(file|dir|multi):[0-9a-f]{64}").expect("static regex");
    re.replace_all(created_by, "$1:<digest>").into_owned()
}

fn node_differences(path: &str, ours: Option<&Node>, theirs: Option<&Node>, allowed: &Allowed) -> Vec<&'static str> {
    let (ours, theirs) = match (ours, theirs) {
        (Some(a), Some(b)) => (a, b),
        (None, None) => return Vec::new(),
        _ => return if allowed.path_attribute(path, "presence") { Vec::new() } else { vec!["presence"] },
    };
    let checks: [(&'static str, bool); 8] = [
        ("kind", ours.kind == theirs.kind),
        ("mode", ours.mode == theirs.mode),
        ("uid", ours.uid == theirs.uid),
        ("gid", ours.gid == theirs.gid),
        ("size", ours.size == theirs.size),
        ("sha256", ours.sha256 == theirs.sha256),
        ("target", ours.target == theirs.target),
        ("hardlinks", ours.hardlinks == theirs.hardlinks),
    ];
    checks
        .into_iter()
        .filter(|(name, same)| !same && !allowed.path_attribute(path, name))
        .map(|(name, _)| name)
        .collect()
}

/// Every difference between rbuild's image and what Docker's builders say it must be.
pub fn differences(ours: &Image, expected: &Expected, allowed: &Allowed) -> Vec<String> {
    let mut out = Vec::new();
    // Contents: BuildKit when it built the case, else classic. Where classic agrees with
    // BuildKit, agreeing with BuildKit is agreeing with both.
    let contents = expected.buildkit.or(expected.classic).expect("at least one builder");
    let all_paths: BTreeSet<&String> = ours.files.keys().chain(contents.files.keys()).collect();
    for path in all_paths {
        let mine = ours.files.get(path);
        let reference = contents.files.get(path);
        let differ = node_differences(path, mine, reference, allowed);
        if !differ.is_empty() {
            out.push(format!(
                "{path}: {} differ: rbuild {} vs docker {}",
                differ.join(","),
                describe(mine),
                describe(reference)
            ));
        }
    }
    // Config, history and layers: classic when it built the case, else BuildKit.
    let meta = expected.classic.or(expected.buildkit).expect("at least one builder");
    let fields: BTreeSet<&String> = ours.config.keys().chain(meta.config.keys()).collect();
    for field in fields {
        let (a, b) = (ours.config.get(field), meta.config.get(field));
        if a != b && !allowed.attribute(&format!("config.{field}")) {
            out.push(format!("config {field}: rbuild {a:?} vs docker {b:?}"));
        }
    }
    if ours.layers != meta.layers && !allowed.attribute("layers") {
        out.push(format!("layer count: rbuild {} vs docker {}", ours.layers, meta.layers));
    }
    if !allowed.attribute("history") {
        let digestless = allowed.attribute("history.source-digest");
        let shape = |h: &[HistoryEntry], classic: bool| -> Vec<String> {
            h.iter()
                .map(|e| {
                    let by = if !classic {
                        String::new()
                    } else if digestless {
                        without_source_digest(&e.created_by)
                    } else {
                        e.created_by.clone()
                    };
                    format!("{by} empty_layer={}", e.empty_layer)
                })
                .collect()
        };
        // BuildKit words history its own way: without classic, only the layer shape counts.
        let classic = expected.classic.is_some();
        let (a, b) = (shape(&ours.history, classic), shape(&meta.history, classic));
        if a != b {
            out.push(format!("history:\n  rbuild {a:#?}\n  docker {b:#?}"));
        }
    }
    out
}

/// Case options from `case.toml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CaseOptions {
    pub builders: Option<Vec<String>>,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    #[serde(default)]
    pub expect_fail: bool,
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub rootless: bool,
    #[serde(default)]
    pub allow: Vec<String>,
    /// For what Docker 20.10 cannot build (`builders = []`): files rbuild's image must hold,
    /// by path, with this content, as the cited BuildKit documentation says.
    pub documented: Option<Documented>,
}

/// Expected files taken from BuildKit's documentation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Documented {
    /// Where the semantics are documented.
    pub source: String,
    pub files: BTreeMap<String, String>,
}

/// What differs between rbuild's image and the documented files.
pub fn documented_differences(ours: &Image, documented: &Documented) -> Vec<String> {
    let mut out = Vec::new();
    for (path, content) in &documented.files {
        let want = super::image::sha256_hex(content.as_bytes());
        match ours.files.get(path) {
            Some(node) if node.kind == "file" && node.sha256.as_deref() == Some(want.as_str()) => {}
            other => out.push(format!(
                "{path}: rbuild {} vs documented file with {content:?} ({})",
                describe(other),
                documented.source
            )),
        }
    }
    out
}
