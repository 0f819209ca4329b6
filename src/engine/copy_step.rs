//! COPY and ADD as a step: the destination resolved in the image (through its symlinks),
//! `--chown`/`--chmod`, the sources selected (context, another stage or image, URLs,
//! heredocs, local archives for ADD) and written into the upper dir or a layer tree, and the
//! classic history summary (`dir:<digest> in /dest`).

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use fs_err as fs;

use crate::context::digest::classic_source_hash;
use crate::engine::add::{download, extract_archive};
use crate::engine::config::resolve_workdir;
use crate::engine::copy::{
    destination, layer_tree, materialize, parse_chmod, plan_from_context, plan_from_image, CopyItem, CopyOptions,
};
use crate::engine::destination::{apply_to_tree, apply_to_upper, DestinationResolver, DirOwnerMode};
use crate::engine::executor::{ImageState, StageExecutor};
use crate::engine::BuildError;
use crate::frontend::instructions::{FileCopy, Instruction};
use crate::layer::archive::is_tar_archive;
use crate::layer::diff::LayerTree;
use crate::layer::digest::Sha256Digest;
use crate::layer::stack::{EntryType, MergedView};
use crate::plan::{Stage, Step};
use crate::runtime::{group_id, passwd_ids};

impl StageExecutor<'_> {
    /// COPY/ADD into `upper`; returns the history summary (`dir:<digest> in /dest`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn copy_step(
        &self,
        stage: &Stage,
        step: &Step,
        fc: &FileCopy,
        state: &ImageState,
        upper: &Path,
        work: &Path,
        done: &BTreeMap<usize, Arc<ImageState>>,
    ) -> Result<(String, Option<LayerTree>), BuildError> {
        let keyword: &'static str = if step.instruction.keyword() == "ADD" { "ADD" } else { "COPY" };
        let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
        if fc.sources.iter().any(|s| s.starts_with("git@") || s.ends_with(".git") && is_url(s)) {
            return Err(BuildError::Unsupported {
                step: step.number,
                what: format!("{keyword} from a git repository"),
            });
        }
        if keyword == "COPY" && fc.sources.iter().any(|s| is_url(s)) {
            return Err(BuildError::Step { step: step.number, message: "COPY cannot copy from a URL: use ADD".into() });
        }
        let step_error =
            |e: crate::engine::copy::CopyError| BuildError::Step { step: step.number, message: e.to_string() };
        // The image's files are looked at only when the destination's text does not say it is
        // a directory or `--chown` names a user: looking unpacks every layer of the image.
        let target_view: OnceCell<MergedView> = OnceCell::new();
        let target_view = || -> Result<&MergedView, BuildError> {
            if let Some(view) = target_view.get() {
                return Ok(view);
            }
            let view =
                self.destination_view(state, &resolve_workdir(&state.config.config.working_dir, &fc.dest), fc)?;
            Ok(target_view.get_or_init(|| view))
        };
        let (dest, dest_is_dir) =
            destination(&state.config.config.working_dir, &fc.dest, |p| target_view().map(|v| v.is_dir(p)))?;
        let chown = match &fc.chown {
            Some(spec) => {
                let numeric = spec.split(':').all(|id| id.parse::<u32>().is_ok());
                let no_names = MergedView::new(&[]);
                let view = if numeric { &no_names } else { target_view()? };
                Some(
                    resolve_chown(spec, view)
                        .map_err(|e| BuildError::Step { step: step.number, message: e.to_string() })?,
                )
            }
            None => None,
        };
        let chmod = match &fc.chmod {
            Some(m) => Some(parse_chmod(m).map_err(step_error)?),
            None => None,
        };
        let mut resolver = DestinationResolver::new(target_view()?);
        let mut created: Vec<(String, DirOwnerMode)> = Vec::new();
        let (heredoc_sources, files): (Vec<&String>, Vec<&String>) =
            fc.sources.iter().partition(|s| fc.heredoc_for(s).is_some());
        let (urls, files): (Vec<&String>, Vec<&String>) = files.into_iter().partition(|s| is_url(s));
        let files: Vec<String> = files.into_iter().cloned().collect();
        let mut items = self.url_and_heredoc_items(step, fc, &urls, &heredoc_sources, work, &dest, dest_is_dir)?;
        if fc.sources.len() > 1 && !dest_is_dir {
            return Err(step_error(crate::engine::copy::CopyError::DestinationNotDirectory { keyword }));
        }
        // Whether each source (after wildcards) is a directory, for the history line.
        let mut sources_copied: Vec<bool> = vec![false; urls.len() + heredoc_sources.len()];
        let mut extracted = false;
        let mut classic_hash = None;
        if !files.is_empty() {
            match &fc.from {
                None => {
                    let copied = self.copy_from_context(
                        step,
                        fc,
                        &files,
                        urls.is_empty() && heredoc_sources.is_empty(),
                        upper,
                        (&dest, dest_is_dir, chown),
                        &mut resolver,
                        &mut created,
                    )?;
                    sources_copied.extend(copied.sources_are_dirs);
                    classic_hash = copied.classic_hash;
                    extracted = copied.extracted;
                    items.extend(copied.items);
                }
                Some(from) => {
                    let source = self.copy_source_image(stage, from, done)?;
                    let view = MergedView::new(&self.unpacked(&source)?);
                    sources_copied.extend(files.iter().map(|f| view.is_dir(f)));
                    items
                        .extend(plan_from_image(keyword, from, &view, &files, &dest, dest_is_dir).map_err(step_error)?);
                }
            }
        }
        // Destinations go through the image's symlinks; directories it has keep their owner
        // and mode, and made ones get theirs (see `engine::destination`).
        for item in items.iter_mut() {
            resolver.item(item);
        }
        let dest_dir = if dest_is_dir { dest.as_str() } else { dest.rsplit_once('/').map_or("/", |(p, _)| p) };
        let mut rules = resolver.into_kept(if dest_dir.is_empty() { "/" } else { dest_dir });
        for (path, made) in created {
            rules.entry(path).or_insert(made);
        }
        let tree = self.write_items(stage, step, upper, &items, &rules, CopyOptions { chown, chmod }, extracted)?;
        // Classic docker names context sources by their tarsum; other sources (another image or
        // stage, URLs, heredocs) by the digest of the step's sources.
        let hash = classic_hash.unwrap_or_else(|| {
            let digest = step.key_inputs.sources.as_ref().map(|s| s.digest.clone()).unwrap_or_default();
            let kind = match sources_copied.as_slice() {
                [] | [false] => "file",
                [true] => "dir",
                _ => "multi",
            };
            format!("{kind}:{}", digest.rsplit(':').next().unwrap_or_default())
        });
        Ok((format!("{hash} in {}", fc.dest), tree))
    }

    /// Writes the planned items: into `upper` when something reads the result soon (or ADD
    /// extracted an archive there), else as a layer tree; then the destination rules.
    #[allow(clippy::too_many_arguments)]
    fn write_items(
        &self,
        stage: &Stage,
        step: &Step,
        upper: &Path,
        items: &[CopyItem],
        rules: &BTreeMap<String, DirOwnerMode>,
        opts: CopyOptions,
        extracted: bool,
    ) -> Result<Option<LayerTree>, BuildError> {
        let step_error =
            |e: crate::engine::copy::CopyError| BuildError::Step { step: step.number, message: e.to_string() };
        let copying = Instant::now();
        // Creating files is most of a COPY's time, so when no RUN of this stage or other
        // stage reads the result soon, the layer is written straight from the sources.
        // Unprivileged, files cannot be given their owners on the host (a subordinate id needs
        // the container's namespace), so the layer is always written from the tree, with
        // container ids, and the store unpacks it when something reads it.
        let unprivileged = self.diff.host_ids.is_some();
        let tree = if extracted || (!unprivileged && self.unpacked_soon(stage, step)) {
            materialize(upper, items, &opts).map_err(step_error)?;
            apply_to_upper(upper, rules)?;
            None
        } else {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let mut tree = layer_tree(items, &opts, now as i64).map_err(step_error)?;
            apply_to_tree(&mut tree, rules);
            Some(tree)
        };
        tracing::debug!(step = step.number, entries = items.len(), ms = copying.elapsed().as_millis() as u64, "copied");
        Ok(tree)
    }

    /// COPY/ADD's sources from the build context: selected after `.dockerignore` and
    /// `--exclude`, local archives extracted by ADD into `upper`, the rest planned as items;
    /// `only_files`: no URL or heredoc among the sources (then the classic tarsum names them).
    #[allow(clippy::too_many_arguments)]
    fn copy_from_context(
        &self,
        step: &Step,
        fc: &FileCopy,
        files: &[String],
        only_files: bool,
        upper: &Path,
        (dest, dest_is_dir, chown): (&str, bool, Option<(u32, u32)>),
        resolver: &mut DestinationResolver,
        created: &mut Vec<(String, DirOwnerMode)>,
    ) -> Result<ContextCopy, BuildError> {
        let keyword: &'static str = if step.instruction.keyword() == "ADD" { "ADD" } else { "COPY" };
        let step_error =
            |e: crate::engine::copy::CopyError| BuildError::Step { step: step.number, message: e.to_string() };
        let uid_gid = chown.unwrap_or((0, 0));
        let roots = self
            .context
            .select_roots(files, &fc.exclude)
            .map_err(|e| BuildError::Step { step: step.number, message: e.to_string() })?;
        let mut classic_hash = None;
        if only_files {
            classic_hash = Some(classic_source_hash(&self.context.root, &roots, self.context.memo())?);
        }
        // ADD extracts local archives into the destination, keeping their owners.
        let unpack = keyword == "ADD" && fc.unpack != Some(false);
        let (archives, plain): (Vec<_>, Vec<_>) = roots.into_iter().partition(|r| {
            unpack
                && r.root.as_ref().is_some_and(|e| {
                    e.kind == crate::context::EntryKind::File && is_tar_archive(&self.context.root.join(&e.path))
                })
        });
        let mut sources_are_dirs: Vec<bool> = archives.iter().map(|_| false).collect();
        sources_are_dirs
            .extend(plain.iter().map(|r| r.root.as_ref().is_none_or(|e| e.kind == crate::context::EntryKind::Dir)));
        let mut extracted = false;
        for archive in archives.iter().filter_map(|r| r.root.as_ref()) {
            let real = resolver.directory(dest);
            let made = DirOwnerMode { uid: uid_gid.0, gid: uid_gid.1, mode: 0o755 };
            created.extend(created_components(&real, resolver).into_iter().map(|p| (p, made)));
            extract_archive(step.number, &self.context.root.join(&archive.path), upper, &real, chown)?;
            extracted = true;
        }
        // With no `.` among the sources, the destination directory is only made
        // to hold them: 0755, as Docker makes it, not the context root's mode.
        let copies_context_root = plain.iter().any(|r| r.root.is_none());
        let planned = plan_from_context(keyword, &self.context.root, &plain, dest, dest_is_dir, fc.parents)
            .map_err(step_error)?;
        if let Some(first) = planned.first() {
            if first.kind == EntryType::Dir && first.host == self.context.root && !copies_context_root {
                let real = resolver.directory(&first.dest);
                created.push((real, DirOwnerMode { uid: uid_gid.0, gid: uid_gid.1, mode: 0o755 }));
            }
        }
        Ok(ContextCopy { items: planned, sources_are_dirs, classic_hash, extracted })
    }

    /// ADD's URLs (downloaded, checked against `--checksum`, never extracted) and heredoc
    /// sources (a file named after its heredoc), as items to copy.
    #[allow(clippy::too_many_arguments)]
    fn url_and_heredoc_items(
        &self,
        step: &Step,
        fc: &FileCopy,
        urls: &[&String],
        heredoc_sources: &[&String],
        work: &Path,
        dest: &str,
        dest_is_dir: bool,
    ) -> Result<Vec<CopyItem>, BuildError> {
        let mut items = Vec::new();
        // ADD <url>: downloaded (and checked against --checksum), never extracted.
        for (n, url) in urls.iter().enumerate() {
            let (host, name) = download(step.number, url, work, n, fc.checksum.as_deref())?;
            let to_dir = dest_is_dir || fc.sources.len() > 1;
            let target = if to_dir { format!("{}/{name}", dest.trim_end_matches('/')) } else { dest.to_string() };
            items.push(CopyItem::new(host, target, EntryType::File));
        }
        // A heredoc source is a file named after its heredoc.
        for (n, src) in heredoc_sources.iter().enumerate() {
            if let Some(doc) = fc.heredoc_for(src) {
                let body =
                    if doc.chomp { crate::frontend::parser::chomp_heredoc(&doc.content) } else { doc.content.clone() };
                let host = work.join(format!("heredoc-{n}"));
                fs::write(&host, body)?;
                fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
                let to_dir = dest_is_dir || fc.sources.len() > 1;
                let target =
                    if to_dir { format!("{}/{}", dest.trim_end_matches('/'), doc.name) } else { dest.to_string() };
                items.push(CopyItem::new(host, target, EntryType::File));
            }
        }
        Ok(items)
    }

    /// Whether the image `step` makes will soon need its layers unpacked: a later RUN of the
    /// stage runs on them, a later WORKDIR looks for its directory in them, or another stage
    /// builds on or copies from this one.
    fn unpacked_soon(&self, stage: &Stage, step: &Step) -> bool {
        self.stages_read_by_others.contains(&stage.index)
            || stage
                .steps
                .iter()
                .skip_while(|s| s.number != step.number)
                .skip(1)
                .any(|s| matches!(s.instruction, Instruction::Run(_) | Instruction::Workdir { .. }))
    }

    /// The view COPY/ADD's destination side looks at. Layers this build wrote from a tree and
    /// has not unpacked are left out when they cannot change what it sees: none of their
    /// paths is on the lexical destination `dest`, under it or above it, nor `/etc/passwd` or
    /// `/etc/group` when `--chown` names users, and the destination does not exist in the
    /// other layers, whose view reaches it without a symlink. Then everything the copy writes
    /// is new, as it is in the full image, and a COPY after a COPY does not create every file
    /// of the first to answer "is there a /right?". Any doubt unpacks every layer.
    fn destination_view(&self, state: &ImageState, dest: &str, fc: &FileCopy) -> Result<MergedView, BuildError> {
        let full = || -> Result<MergedView, BuildError> { Ok(MergedView::new(&self.unpacked(state)?)) };
        let Some(image) = &state.stored else { return full() };
        let mut near = vec![dest.to_string()];
        if fc.chown.is_some() {
            near.extend(["/etc/passwd".to_string(), "/etc/group".to_string()]);
        }
        let apart = |p: &str, n: &str| {
            !(p == n || p.starts_with(&format!("{}/", n.trim_end_matches('/'))) || n.starts_with(&format!("{p}/")))
        };
        let skip: Vec<&Sha256Digest> =
            image.layers.iter().filter(|l| !l.unpacked_dir.is_dir()).map(|l| &l.chain_id).collect();
        let all_apart = !skip.is_empty()
            && !dest.split('/').any(|c| c == ".." || c == ".")
            && skip.iter().all(|chain| {
                state
                    .tree_layers
                    .iter()
                    .find(|(c, _)| c == *chain)
                    .is_some_and(|(_, paths)| paths.iter().all(|p| near.iter().all(|n| apart(p, n))))
            });
        if !all_apart {
            return full();
        }
        self.store.lease_image(image)?;
        let dirs: Vec<PathBuf> =
            image.layers.iter().filter(|l| l.unpacked_dir.is_dir()).map(|l| l.unpacked_dir.clone()).collect();
        let view = MergedView::new(&dirs);
        // Every ancestor a plain directory or absent, the destination itself absent.
        let comps: Vec<String> = dest.split('/').filter(|c| !c.is_empty()).map(String::from).collect();
        let found = view.lookup_prefixes(&comps);
        let plain = found.split_last().is_some_and(|(last, ancestors)| {
            last.is_none() && ancestors.iter().flatten().all(|e| e.metadata_kind == crate::layer::stack::EntryType::Dir)
        });
        if !plain {
            return full();
        }
        Ok(view)
    }
}

/// A `--chown` (or WORKDIR's USER) name the image does not list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChownError {
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UnknownUser { user: String },
    #[error("unable to find group {group}: no matching entries in group file")]
    UnknownGroup { group: String },
}

/// `--chown=user[:group]` with names looked up in the image's /etc/passwd and /etc/group
/// (by [`crate::runtime::user`]'s parser, the one RUN's USER uses).
pub(crate) fn resolve_chown(spec: &str, image: &MergedView) -> Result<(u32, u32), ChownError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let file = |path: &str| image.read(path).map(|text| String::from_utf8_lossy(&text).into_owned());
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => file("/etc/passwd")
            .and_then(|passwd| passwd_ids(&passwd, user))
            .ok_or_else(|| ChownError::UnknownUser { user: user.to_string() })?,
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => file("/etc/group")
                .and_then(|group| group_id(&group, g))
                .ok_or_else(|| ChownError::UnknownGroup { group: g.to_string() })?,
        },
    };
    Ok((uid, gid))
}

/// The components of the directory `real` that `resolver` did not find in the image (the ones
/// a copy into it creates), outermost first.
fn created_components(real: &str, resolver: &DestinationResolver) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = String::new();
    for comp in real.split('/').filter(|c| !c.is_empty()) {
        path.push('/');
        path.push_str(comp);
        if !resolver.has_directory(&path) {
            out.push(path.clone());
        }
    }
    out
}

/// What COPY/ADD took from the build context.
struct ContextCopy {
    items: Vec<CopyItem>,
    /// Whether each source (after wildcards) is a directory, for the history line.
    sources_are_dirs: Vec<bool>,
    /// The classic tarsum of the sources, when only context files are copied.
    classic_hash: Option<String>,
    /// Whether ADD extracted an archive into the upper dir.
    extracted: bool,
}
