//! The cache key of a build step (DESIGN.md, "Cache key"): sha256 over the parent's key, the
//! canonical instruction, the build args the step can see and, for COPY/ADD, the digest of
//! the selected sources. Never mtimes. The inputs are kept beside the key so that a miss can
//! be explained.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

/// A step's cache key: `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits without the algorithm prefix.
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sources a COPY or ADD reads: the digest over the whole selection and one digest per
/// selected path (so a miss can name the file that changed).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SourceInputs {
    pub digest: String,
    pub files: BTreeMap<String, String>,
}

/// Everything a cache key is computed from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheKeyInputs {
    /// The parent step's key; for a FROM step, the base: `image:<manifest digest or reference>`,
    /// `scratch`, or `stage:<final key of that stage>`.
    pub parent: String,
    /// The instruction in canonical form after expansion.
    pub instruction: String,
    /// Build args the step can see, with their values.
    pub build_args: BTreeMap<String, String>,
    /// For COPY/ADD (and RUN bind mounts of the context): the selected sources.
    pub sources: Option<SourceInputs>,
}

/// Version tag hashed into every key, so that a change of the key's layout can never make an
/// old record hit.
const KEY_DOMAIN: &[u8] = b"rbuild cache key v1";

impl CacheKeyInputs {
    /// The key: each field is hashed with a tag and its length, so no two different inputs can
    /// produce the same byte stream.
    pub fn key(&self) -> CacheKey {
        let mut hasher = Sha256::new();
        hasher.update(KEY_DOMAIN);
        let mut field = |tag: &[u8], value: &str| {
            hasher.update(tag);
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        };
        field(b"parent", &self.parent);
        field(b"instruction", &self.instruction);
        for (name, value) in &self.build_args {
            field(b"arg", name);
            field(b"value", value);
        }
        if let Some(sources) = &self.sources {
            field(b"sources", &sources.digest);
        }
        CacheKey(format!("sha256:{}", hex::encode(hasher.finalize())))
    }
}

/// Why a step did not hit the cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum MissReason {
    /// `--no-cache` was given.
    NoCacheFlag,
    /// Nothing was ever recorded under this parent for a step like this one.
    NoRecord,
    /// Neither the store nor the imported caches (`--cache-from`) have a record for this step
    /// or one like it on the same parent.
    NoRecordInCache { cache: String },
    /// An earlier step missed, so this one runs on a new parent.
    ParentMissed,
    /// The FROM step's base resolved to something else.
    BaseChanged { old: String, new: String },
    /// The expanded instruction differs from the recorded one.
    InstructionChanged { old: String, new: String },
    /// A build arg the step can see has another value (None: not set).
    BuildArgChanged { name: String, old: Option<String>, new: Option<String> },
    /// A selected source file's content, mode or owner changed.
    SourceChanged { path: String },
    /// A source path is selected now that was not before.
    SourceAdded { path: String },
    /// A source path that was selected before is gone.
    SourceRemoved { path: String },
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::NoCacheFlag => f.write_str("--no-cache"),
            MissReason::NoRecord => f.write_str("no cache record"),
            MissReason::NoRecordInCache { cache } => write!(f, "no record in cache {cache}"),
            MissReason::ParentMissed => f.write_str("parent step missed"),
            MissReason::BaseChanged { old, new } => write!(f, "base image changed: {old} -> {new}"),
            MissReason::InstructionChanged { old, new } => {
                write!(f, "instruction changed: {old} -> {new}")
            }
            MissReason::BuildArgChanged { name, .. } => write!(f, "build arg changed: {name}"),
            MissReason::SourceChanged { path } => write!(f, "source changed: {path}"),
            MissReason::SourceAdded { path } => write!(f, "source added: {path}"),
            MissReason::SourceRemoved { path } => write!(f, "source removed: {path}"),
        }
    }
}

/// Explains why `current` misses when `recorded` is the closest record (the last one made for
/// this step position). Fields are compared in the order they enter the key; the first that
/// differs is the reason. Returns `None` when the inputs are equal (that is a hit).
pub fn explain_miss(recorded: &CacheKeyInputs, current: &CacheKeyInputs) -> Option<MissReason> {
    if recorded.parent != current.parent {
        let is_base = |p: &str| !p.starts_with("sha256:");
        if is_base(&recorded.parent) && is_base(&current.parent) {
            return Some(MissReason::BaseChanged { old: recorded.parent.clone(), new: current.parent.clone() });
        }
        return Some(MissReason::ParentMissed);
    }
    if recorded.instruction != current.instruction {
        return Some(MissReason::InstructionChanged {
            old: recorded.instruction.clone(),
            new: current.instruction.clone(),
        });
    }
    if recorded.build_args != current.build_args {
        let names = recorded.build_args.keys().chain(current.build_args.keys());
        for name in names {
            let old = recorded.build_args.get(name);
            let new = current.build_args.get(name);
            if old != new {
                return Some(MissReason::BuildArgChanged { name: name.clone(), old: old.cloned(), new: new.cloned() });
            }
        }
    }
    match (&recorded.sources, &current.sources) {
        (Some(old), Some(new)) if old.digest != new.digest => Some(source_difference(old, new)),
        (None, Some(new)) => {
            Some(MissReason::SourceAdded { path: new.files.keys().next().cloned().unwrap_or_default() })
        }
        (Some(old), None) => {
            Some(MissReason::SourceRemoved { path: old.files.keys().next().cloned().unwrap_or_default() })
        }
        _ => None,
    }
}

/// The first path (in sorted order) whose digest differs, appeared or disappeared.
fn source_difference(old: &SourceInputs, new: &SourceInputs) -> MissReason {
    let mut old_iter = old.files.iter().peekable();
    let mut new_iter = new.files.iter().peekable();
    loop {
        match (old_iter.peek(), new_iter.peek()) {
            (Some((op, od)), Some((np, nd))) => match op.cmp(np) {
                std::cmp::Ordering::Equal => {
                    if od != nd {
                        return MissReason::SourceChanged { path: (*np).clone() };
                    }
                    old_iter.next();
                    new_iter.next();
                }
                std::cmp::Ordering::Less => return MissReason::SourceRemoved { path: (*op).clone() },
                std::cmp::Ordering::Greater => return MissReason::SourceAdded { path: (*np).clone() },
            },
            (Some((op, _)), None) => return MissReason::SourceRemoved { path: (*op).clone() },
            (None, Some((np, _))) => return MissReason::SourceAdded { path: (*np).clone() },
            // Same per-file digests but another overall digest: the selection's shape changed
            // (for example the destination-relative layout); name the first path.
            (None, None) => {
                return MissReason::SourceChanged { path: new.files.keys().next().cloned().unwrap_or_default() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(parent: &str, instruction: &str) -> CacheKeyInputs {
        CacheKeyInputs {
            parent: parent.into(),
            instruction: instruction.into(),
            build_args: BTreeMap::new(),
            sources: None,
        }
    }

    #[test]
    fn key_is_stable_and_prefixed() {
        let a = inputs("scratch", "ENV A=1").key();
        assert_eq!(a, inputs("scratch", "ENV A=1").key());
        assert!(a.as_str().starts_with("sha256:"));
        assert_eq!(a.hex().len(), 64);
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = inputs("sha256:p", "RUN true");
        let mut other_parent = base.clone();
        other_parent.parent = "sha256:q".into();
        let mut other_instruction = base.clone();
        other_instruction.instruction = "RUN false".into();
        let mut with_arg = base.clone();
        with_arg.build_args.insert("V".into(), "1".into());
        let mut with_sources = base.clone();
        with_sources.sources = Some(SourceInputs { digest: "sha256:s".into(), files: BTreeMap::new() });
        let keys = [base.key(), other_parent.key(), other_instruction.key(), with_arg.key(), with_sources.key()];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let mut a = inputs("p", "x");
        a.build_args.insert("AB".into(), "C".into());
        let mut b = inputs("p", "x");
        b.build_args.insert("A".into(), "BC".into());
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn explains_instruction_change() {
        let old = inputs("sha256:p", "ENV REFRESHED_AT=2016-11-09");
        let new = inputs("sha256:p", "ENV REFRESHED_AT=2016-11-10");
        let reason = explain_miss(&old, &new).expect("a miss");
        assert_eq!(
            reason.to_string(),
            "instruction changed: ENV REFRESHED_AT=2016-11-09 -> ENV REFRESHED_AT=2016-11-10"
        );
        assert_eq!(explain_miss(&old, &old), None);
    }

    #[test]
    fn explains_parent_base_and_arg_changes() {
        assert_eq!(
            explain_miss(&inputs("sha256:a", "RUN x"), &inputs("sha256:b", "RUN x")),
            Some(MissReason::ParentMissed)
        );
        assert!(matches!(
            explain_miss(
                &inputs("image:busybox@sha256:1", "FROM busybox"),
                &inputs("image:busybox@sha256:2", "FROM busybox")
            ),
            Some(MissReason::BaseChanged { .. })
        ));
        let mut old = inputs("sha256:a", "RUN x");
        old.build_args.insert("VERSION".into(), "1".into());
        let mut new = old.clone();
        new.build_args.insert("VERSION".into(), "2".into());
        assert_eq!(explain_miss(&old, &new).map(|r| r.to_string()), Some("build arg changed: VERSION".into()));
    }

    #[test]
    fn names_the_changed_source_file() {
        let files = |pairs: &[(&str, &str)]| pairs.iter().map(|(p, d)| (p.to_string(), d.to_string())).collect();
        let mut old = inputs("sha256:a", "COPY app/ /app/");
        old.sources =
            Some(SourceInputs { digest: "d1".into(), files: files(&[("app/a.py", "1"), ("app/main.py", "2")]) });
        let mut new = old.clone();
        new.sources =
            Some(SourceInputs { digest: "d2".into(), files: files(&[("app/a.py", "1"), ("app/main.py", "3")]) });
        assert_eq!(explain_miss(&old, &new).map(|r| r.to_string()), Some("source changed: app/main.py".into()));
        new.sources = Some(SourceInputs { digest: "d3".into(), files: files(&[("app/a.py", "1")]) });
        assert_eq!(explain_miss(&old, &new).map(|r| r.to_string()), Some("source removed: app/main.py".into()));
    }
}
