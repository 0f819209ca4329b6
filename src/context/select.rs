//! COPY/ADD source selection over the filtered build context: cleaning and confining each
//! source to the context root, Go `filepath.Match` wildcards per path component, a directory
//! selecting everything below it, and `--exclude` patterns.

use std::collections::{BTreeSet, HashMap};

use super::pattern::{clean_path, glob_match, has_glob_meta, PatternMatcher};
use super::walk::{BuildContext, ContextEntry, EntryKind};
use super::ContextError;

/// Clean a COPY source and confine it to the context root (`../x` -> `x`, `/a` -> `a`).
/// Returns `.` for the root itself.
pub fn confine_source(src: &str) -> String {
    let rooted = clean_path(&format!("/{src}"));
    match rooted.strip_prefix('/') {
        Some("") | None => ".".to_string(),
        Some(rest) => rest.to_string(),
    }
}

/// Does a context path match a cleaned wildcard source, component by component?
fn matches_source_glob(source: &str, path: &str) -> Result<bool, &'static str> {
    let mut source_parts = source.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (source_parts.next(), path_parts.next()) {
            (None, None) => return Ok(true),
            (Some(pattern), Some(name)) => {
                if !glob_match(pattern, name)? {
                    return Ok(false);
                }
            }
            _ => return Ok(false),
        }
    }
}

impl BuildContext {
    /// COPY/ADD source selection. Each `src` is cleaned and confined to the context, may hold
    /// Go `filepath.Match` wildcards (matched per path component against the entries that
    /// survived `.dockerignore`); a directory selects itself and everything below it. A
    /// wildcard that matches nothing is skipped unless nothing is selected at all.
    /// `exclude` patterns (COPY --exclude, `.dockerignore` syntax) are matched against paths
    /// relative to each selected source (a selected file is matched by its base name) and drop
    /// entries; an excluded directory stays only if something below it is kept. A source that
    /// matches nothing is an error naming it. Entries come back in walk order, deduplicated.
    pub fn select(&self, srcs: &[String], exclude: &[String]) -> Result<Vec<ContextEntry>, ContextError> {
        let entries = self.entries()?;
        let mut selected: BTreeSet<usize> = BTreeSet::new();
        for (_, _, members) in self.select_groups(entries, srcs, exclude)? {
            selected.extend(members);
        }
        Ok(selected.into_iter().map(|idx| entries[idx].clone()).collect())
    }

    /// The same selection, grouped by matched root, as COPY needs it to compute destinations:
    /// each [`SelectedRoot`] is one match of one source (`root` is `None` for the context root)
    /// with the entries at and below it, in walk order.
    pub fn select_roots(&self, srcs: &[String], exclude: &[String]) -> Result<Vec<SelectedRoot>, ContextError> {
        let entries = self.entries()?;
        let groups = self.select_groups(entries, srcs, exclude)?;
        Ok(groups
            .into_iter()
            .map(|(root, name, members)| SelectedRoot {
                root: root.map(|idx| entries[idx].clone()),
                name,
                entries: members.into_iter().map(|idx| entries[idx].clone()).collect(),
            })
            .collect())
    }

    /// (root index, name of a followed link, selected entry indices) for every match of every
    /// source.
    #[allow(clippy::type_complexity)]
    fn select_groups(
        &self,
        entries: &[ContextEntry],
        srcs: &[String],
        exclude: &[String],
    ) -> Result<Vec<(Option<usize>, Option<String>, BTreeSet<usize>)>, ContextError> {
        let mut groups = Vec::new();
        let exclude = PatternMatcher::new(exclude)?;
        let index: HashMap<&str, usize> =
            entries.iter().enumerate().map(|(idx, entry)| (entry.path.as_str(), idx)).collect();
        let mut unmatched_wildcard = None;
        for src in srcs {
            let source = confine_source(src);
            let roots: Vec<Option<usize>> = if source == "." {
                vec![None]
            } else if has_glob_meta(&source) {
                let mut roots = Vec::new();
                for (idx, entry) in entries.iter().enumerate() {
                    let hit = matches_source_glob(&source, &entry.path).map_err(|reason| ContextError::BadPattern {
                        origin: "COPY source".into(),
                        pattern: src.clone(),
                        reason: reason.into(),
                    })?;
                    if hit {
                        roots.push(Some(idx));
                    }
                }
                roots
            } else {
                index.get(source.as_str()).map(|idx| vec![Some(*idx)]).unwrap_or_default()
            };
            if roots.is_empty() {
                if has_glob_meta(&source) {
                    // Like BuildKit, a wildcard that matches nothing is skipped: only a
                    // selection with nothing at all is an error.
                    unmatched_wildcard.get_or_insert(src);
                    continue;
                }
                return Err(ContextError::SourceNotFound { src: src.clone(), context: self.root.clone() });
            }
            for root in roots {
                // Like BuildKit, a matched source that is a symlink is followed (inside the
                // context) and copied under the link's own name.
                let (root, name) = match root {
                    Some(idx) if matches!(entries[idx].kind, EntryKind::Symlink { .. }) => {
                        let target = resolve_link(entries, &index, idx).ok_or_else(|| {
                            ContextError::SourceNotFound { src: src.clone(), context: self.root.clone() }
                        })?;
                        let path = &entries[idx].path;
                        (Some(target), Some(path.rsplit('/').next().unwrap_or(path).to_string()))
                    }
                    other => (other, None),
                };
                let mut selected = BTreeSet::new();
                select_below(entries, root, &exclude, &mut selected)?;
                groups.push((root, name, selected));
            }
        }
        if let (true, Some(src)) = (groups.is_empty(), unmatched_wildcard) {
            return Err(ContextError::NoWildcardMatch { src: src.clone(), context: self.root.clone() });
        }
        Ok(groups)
    }
}

/// One match of a COPY source: the matched entry (`None`: the context root) and the selected
/// entries at and below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedRoot {
    pub root: Option<ContextEntry>,
    /// When the source named a symlink that was followed to `root`: the link's base name,
    /// which the copy keeps.
    pub name: Option<String>,
    pub entries: Vec<ContextEntry>,
}

/// The entry a symlink entry leads to, following chains (at most 40 links, as the kernel
/// does): relative targets from the link's directory, absolute ones from the context root,
/// `..` never above the root. `None` when it leads nowhere in the (filtered) context.
fn resolve_link(entries: &[ContextEntry], index: &HashMap<&str, usize>, mut idx: usize) -> Option<usize> {
    for _ in 0..40 {
        let EntryKind::Symlink { target } = &entries[idx].kind else {
            return Some(idx);
        };
        let path = &entries[idx].path;
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let mut parts: Vec<&str> =
            if target.starts_with('/') { Vec::new() } else { dir.split('/').filter(|p| !p.is_empty()).collect() };
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                other => parts.push(other),
            }
        }
        idx = *index.get(parts.join("/").as_str())?;
    }
    None
}

/// Add the entries under one selected root (`None` = the context root) to `selected`.
fn select_below(
    entries: &[ContextEntry],
    root: Option<usize>,
    exclude: &PatternMatcher,
    selected: &mut BTreeSet<usize>,
) -> Result<(), ContextError> {
    let (prefix, candidates): (String, Vec<usize>) = match root {
        None => (String::new(), (0..entries.len()).collect()),
        Some(idx) => {
            let entry = &entries[idx];
            if entry.kind != EntryKind::Dir {
                let base = entry.path.rsplit('/').next().unwrap_or(&entry.path);
                if exclude.is_empty() || !exclude.matches(base)?.excluded {
                    selected.insert(idx);
                }
                return Ok(());
            }
            let prefix = format!("{}/", entry.path);
            let below = entries
                .iter()
                .enumerate()
                .skip(idx + 1)
                .take_while(|(_, e)| e.path.starts_with(&prefix))
                .map(|(i, _)| i);
            let candidates = std::iter::once(idx).chain(below).collect();
            (prefix, candidates)
        }
    };
    if exclude.is_empty() {
        selected.extend(candidates);
        return Ok(());
    }
    let mut kept: Vec<usize> = Vec::new();
    for idx in &candidates {
        let path = &entries[*idx].path;
        let relative = path.strip_prefix(&prefix).unwrap_or(".");
        let relative = if Some(*idx) == root { "." } else { relative };
        if !exclude.matches(relative)?.excluded {
            kept.push(*idx);
        }
    }
    // Keep an excluded directory when something below it is kept.
    let kept_set: BTreeSet<usize> = kept.iter().copied().collect();
    let candidate_index: HashMap<&str, usize> =
        candidates.iter().map(|idx| (entries[*idx].path.as_str(), *idx)).collect();
    for idx in &kept_set {
        let mut path = entries[*idx].path.as_str();
        while let Some((parent, _)) = path.rsplit_once('/') {
            match candidate_index.get(parent) {
                Some(parent_idx) => {
                    selected.insert(*parent_idx);
                }
                None => break,
            }
            path = parent;
        }
        selected.insert(*idx);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(files: &[&str], ignore: &[&str]) -> (tempfile::TempDir, BuildContext) {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, file.as_bytes()).unwrap();
        }
        let ignore: Vec<String> = ignore.iter().map(|p| p.to_string()).collect();
        let ctx = BuildContext::with_patterns(dir.path(), &ignore).unwrap();
        (dir, ctx)
    }

    fn paths(ctx: &BuildContext, srcs: &[&str], exclude: &[&str]) -> Vec<String> {
        let srcs: Vec<String> = srcs.iter().map(|p| p.to_string()).collect();
        let exclude: Vec<String> = exclude.iter().map(|p| p.to_string()).collect();
        ctx.select(&srcs, &exclude).unwrap().into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn confines_and_cleans_sources() {
        assert_eq!(confine_source("../x"), "x");
        assert_eq!(confine_source("/a/./b/"), "a/b");
        assert_eq!(confine_source(".."), ".");
        assert_eq!(confine_source(""), ".");
    }

    #[test]
    fn dir_selects_itself_and_below_and_globs_are_per_component() {
        let (_dir, ctx) = context(&["src/a.rs", "src/sub/b.rs", "srcx/c.rs", "top.rs"], &[]);
        assert_eq!(paths(&ctx, &["src/"], &[]), ["src", "src/a.rs", "src/sub", "src/sub/b.rs"]);
        assert_eq!(paths(&ctx, &["*.rs"], &[]), ["top.rs"]);
        assert_eq!(paths(&ctx, &["src*/*.rs"], &[]), ["src/a.rs", "srcx/c.rs"]);
        assert_eq!(paths(&ctx, &["../top.rs"], &[]), ["top.rs"]);
    }

    #[test]
    fn exclude_and_ignore_apply() {
        let (_dir, ctx) = context(&["src/a.rs", "src/sub/b.rs", "src/c.txt"], &["**/c.txt"]);
        assert_eq!(paths(&ctx, &["."], &["sub"]), ["src", "src/a.rs", "src/sub", "src/sub/b.rs"]);
        assert_eq!(paths(&ctx, &["src"], &["sub"]), ["src", "src/a.rs"]);
        assert_eq!(paths(&ctx, &["src"], &["*", "!a.rs"]), ["src", "src/a.rs"]);
    }

    #[test]
    fn missing_source_is_an_error_naming_it() {
        let (_dir, ctx) = context(&["a", "b.txt"], &["a"]);
        let err = ctx.select(&["a".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("\"a\""), "{err}");
        let err = ctx.select(&["*.none".into(), "*.nix".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("wildcard \"*.none\" matched nothing"), "{err}");
        // A literal source that is missing fails even when others match.
        assert!(ctx.select(&["b.txt".into(), "a".into()], &[]).is_err());
    }

    #[test]
    fn a_wildcard_matching_nothing_is_skipped_among_others() {
        let (_dir, ctx) = context(&["a.txt", "b.txt"], &[]);
        assert_eq!(paths(&ctx, &["*foo", "*.txt"], &[]), ["a.txt", "b.txt"]);
        assert_eq!(ctx.select_roots(&["*foo".into(), "a.txt".into()], &[]).unwrap().len(), 1);
    }
}
