//! Runs the steps of one stage against the store: for every step, a cache hit reuses the
//! recorded image; a miss runs the step (a config change, RUN in a transient container, or
//! COPY into a fresh upper dir), commits the upper dir as a layer when it changed anything,
//! stores the new image and records the cache key. Every step emits [`BuildEvent`]s.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fs_err as fs;

use crate::context::digest::classic_source_hash;
use crate::engine::add::{decompressed, is_tar_archive};
use crate::engine::cache::{CacheIndex, CacheRecord};
use crate::engine::config::{apply_config_instruction, history_created_by, resolve_workdir, StageConfigState};
use crate::engine::copy::{
    destination, layer_tree, materialize, parse_chmod, plan_from_context, plan_from_image, CopyItem, CopyOptions,
};
use crate::engine::destination::{apply_to_tree, apply_to_upper, DestinationResolver, DirOwnerMode};
use crate::engine::scheduler::{Cancel, StageRunner};
use crate::engine::BuildError;
use crate::events::BuildEvent;
use crate::frontend::instructions::{CommandForm, FileCopy, Instruction, RunInstruction};
use crate::frontend::lower::PROXY_ARGS;
use crate::image::{HistoryEntry, ImageConfig, Platform, DEFAULT_PATH};
use crate::layer::diff::{write_layer, write_layer_tree, DiffOptions, LayerTree};
use crate::layer::digest::{chain_ids, Sha256Digest};
use crate::layer::stack::{EntryType, MergedView};
use crate::plan::{CacheKey, Dependency, MissReason, SourceInputs, Stage, StageBase, Step};
use crate::runtime::{Container, ContainerSpec, NetworkMode, OverlayKind, Rootfs, StdioMode};
use crate::store::{ImageBatch, ImageStore, LayerBlob, StoreError, StoredImage};

/// Why a base image that lowering could not pull is missing when its stage runs.
const NOT_IN_STORE: &str = "the image is not in the local store";

/// Where events go: called from every stage thread.
pub type EventSink = Arc<dyn Fn(&BuildEvent) + Send + Sync>;

/// An image while a stage builds it: the config, and the stored image once there is one
/// (`FROM scratch` has none until its first step).
#[derive(Debug, Clone)]
pub struct ImageState {
    pub stored: Option<StoredImage>,
    pub config: ImageConfig,
    /// For a finished stage: the cache key its last step really had (see
    /// [`StageExecutor::rekey`]), which a stage built FROM it chains on.
    pub key: Option<CacheKey>,
    /// Layers of `stored` this build wrote from a [`LayerTree`] and has not unpacked, by chain
    /// ID, with the image paths each holds: COPY's destination side can leave them out of
    /// its view when they cannot matter (see [`StageExecutor::destination_view`]).
    pub tree_layers: Vec<(Sha256Digest, Arc<Vec<String>>)>,
}

impl ImageState {
    pub fn id(&self) -> Option<String> {
        self.stored.as_ref().map(|s| s.id.to_string())
    }
}

/// Settings every stage shares.
pub struct StageExecutor<'a> {
    pub store: &'a ImageStore,
    pub cache: CacheIndex,
    pub context: &'a crate::context::BuildContext,
    pub events: EventSink,
    pub total_steps: usize,
    pub no_cache: bool,
    pub network: NetworkMode,
    pub diff: DiffOptions,
    /// `SOURCE_DATE_EPOCH`, RFC 3339: the `created` time of everything the build writes.
    pub created: String,
    pub state_dir: PathBuf,
    pub platform: Platform,
    /// Stage names by index (for `COPY --from=<name>`).
    pub stage_names: Vec<Option<String>>,
    /// Stages that other stages build on or copy from: their layers are unpacked as soon as
    /// they are made.
    pub stages_read_by_others: BTreeSet<usize>,
    /// `--build-arg`s that are proxy variables (`HTTP_PROXY`…): every RUN sees them.
    pub proxy_args: BTreeMap<String, String>,
    /// `--secret`s, for `RUN --mount=type=secret`.
    pub secrets: &'a [crate::engine::secrets::BuildSecret],
    /// `--ssh` agents, for `RUN --mount=type=ssh`.
    pub ssh_agents: &'a [crate::engine::ssh::SshAgent],
}

static CONTAINER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh 64-hex container ID.
fn container_id() -> String {
    let n = CONTAINER_COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Sha256Digest::of(format!("{}-{}-{n}", std::process::id(), now.as_nanos()).as_bytes()).hex().to_string()
}

impl StageRunner for StageExecutor<'_> {
    type Output = ImageState;
    type Error = BuildError;

    fn run_stage(
        &self,
        stage: &Stage,
        done: &BTreeMap<usize, Arc<ImageState>>,
        cancel: &Cancel,
    ) -> Result<ImageState, BuildError> {
        // The stage's images enter the index together, and their cache records after them,
        // however the stage ends: a failed step's last good image can be run.
        let mut pending = PendingImages { batch: self.store.image_batch()?, records: Vec::new() };
        let result = self.run_steps(stage, done, cancel, &mut pending);
        let committed = self
            .store
            .commit_batch(pending.batch)
            .map_err(BuildError::from)
            .and_then(|()| self.cache.put_all(&pending.records).map_err(BuildError::from));
        let state = result?;
        committed?;
        Ok(state)
    }
}

/// What a stage made that the store and the cache do not list yet.
struct PendingImages {
    batch: ImageBatch,
    records: Vec<CacheRecord>,
}

impl StageExecutor<'_> {
    fn run_steps(
        &self,
        stage: &Stage,
        done: &BTreeMap<usize, Arc<ImageState>>,
        cancel: &Cancel,
        pending: &mut PendingImages,
    ) -> Result<ImageState, BuildError> {
        let mut state = self.base_state(stage, done)?;
        let mut config_state = StageConfigState::default();
        let mut missed = false;
        // A run of cache hits only needs its last image loaded: each hit's image is checked
        // by its config blob, and the image is read when a miss builds on it or the stage
        // ends (reading every hit made a cached rebuild of N steps cost O(N^2) time and memory).
        let mut last_hit: Option<String> = None;
        // (planned, effective) key of the previous step, when they differ.
        let mut rekeyed_parent: Option<(String, CacheKey)> = None;
        let mut last_key = None;
        for planned in &stage.steps {
            if cancel.is_cancelled() {
                return Err(BuildError::Cancelled { last_image: last_hit.or_else(|| state.id()) });
            }
            let rekeyed = self.rekey(stage, planned, rekeyed_parent.as_ref(), done, true)?;
            let mut step = rekeyed.as_ref().unwrap_or(planned);
            let before = rekeyed_parent.take();
            rekeyed_parent = rekeyed.as_ref().map(|s| (planned.cache_key.to_string(), s.cache_key.clone()));
            last_key = Some(step.cache_key.clone());
            let started = Instant::now();
            self.emit(BuildEvent::StepStarted {
                step: step.number,
                total: self.total_steps,
                stage: stage.index,
                instruction: step.original.clone(),
                cache_key: step.cache_key.to_string(),
            });
            if let Instruction::From { .. } = step.instruction {
                self.emit(BuildEvent::StepDone {
                    step: step.number,
                    image_id: state.id().unwrap_or_default(),
                    layer_size: None,
                    duration_ms: started.elapsed().as_millis() as u64,
                    cached: false,
                });
                continue;
            }
            if !self.no_cache {
                if let Some(hit) = self.cached(step)? {
                    self.emit(BuildEvent::CacheHit { step: step.number, image_id: hit.clone() });
                    last_hit = Some(hit.clone());
                    // The config comes from the cached image; keep track of what the stage set.
                    config_state.observe(&step.instruction);
                    self.emit(BuildEvent::StepDone {
                        step: step.number,
                        image_id: hit,
                        layer_size: None,
                        duration_ms: started.elapsed().as_millis() as u64,
                        cached: true,
                    });
                    continue;
                }
            }
            // A miss explains itself and records which files it copied: a memo gave only the
            // digest of a COPY --from's selection, so it is read again in full (same key).
            let full;
            if step.key_inputs.sources.as_ref().is_some_and(|s| s.files.is_empty() && !s.digest.is_empty()) {
                if let Some(again) = self.rekey(stage, planned, before.as_ref(), done, false)? {
                    full = again;
                    step = &full;
                }
            }
            let reason = if self.no_cache {
                MissReason::NoCacheFlag
            } else if missed {
                MissReason::ParentMissed
            } else {
                self.cache.explain(&step.key_inputs)?
            };
            missed = true;
            self.emit(BuildEvent::cache_miss(step.number, reason));
            if let Some(hit) = last_hit.take() {
                state = self.hit_state(&hit)?;
            }
            let (next, layer_size) = self.execute(stage, step, &state, &mut config_state, done, cancel, pending)?;
            let image_id = next.id().unwrap_or_default();
            pending.records.push(CacheRecord {
                image: image_id.clone(),
                key: step.cache_key.clone(),
                inputs: step.key_inputs.clone(),
                created: chrono::Utc::now().to_rfc3339(),
            });
            state = next;
            self.emit(BuildEvent::StepDone {
                step: step.number,
                image_id,
                layer_size,
                duration_ms: started.elapsed().as_millis() as u64,
                cached: false,
            });
        }
        let mut state = match last_hit {
            Some(hit) => self.hit_state(&hit)?,
            None => state,
        };
        state.key = last_key;
        Ok(state)
    }
}

impl StageExecutor<'_> {
    fn emit(&self, event: BuildEvent) {
        (self.events)(&event);
    }

    /// `step` with the key it really has, when that is not the planned one: a COPY/ADD
    /// `--from` an earlier stage is keyed on what it copies (the selected files' paths,
    /// content, modes and link targets in that stage), not on the stage's key, so a change
    /// there that leaves them the same still hits, as in Docker; a step after a re-keyed one
    /// chains on its new key, and so does a FROM of a stage whose last key changed.
    /// `rekeyed_parent`: (planned, effective) key of the step before.
    fn rekey(
        &self,
        stage: &Stage,
        step: &Step,
        rekeyed_parent: Option<&(String, CacheKey)>,
        done: &BTreeMap<usize, Arc<ImageState>>,
        memo: bool,
    ) -> Result<Option<Step>, BuildError> {
        let mut inputs = step.key_inputs.clone();
        if let Some((planned, effective)) = rekeyed_parent {
            if &inputs.parent == planned {
                inputs.parent = effective.to_string();
            }
        }
        // FROM an earlier stage chains on the key that stage really had.
        if let (Instruction::From { .. }, StageBase::Stage { index }) = (&step.instruction, &stage.base) {
            if let Some(key) = done.get(index).and_then(|s| s.key.as_ref()) {
                inputs.parent = format!("stage:{key}");
            }
        }
        if let Instruction::Copy(fc) | Instruction::Add(fc) = &step.instruction {
            // No sources in the plan: the COPY has only heredocs.
            if let (Some(from), Some(_)) = (&fc.from, &inputs.sources) {
                if let Some(index) = self.stage_dependency(stage, from, done) {
                    inputs.sources = Some(self.stage_sources(step, fc, from, &done[&index], memo)?);
                }
            }
        }
        if inputs == step.key_inputs {
            return Ok(None);
        }
        Ok(Some(Step { cache_key: inputs.key(), key_inputs: inputs, ..step.clone() }))
    }

    /// The digest of the files a `COPY --from=<stage>` selects in that stage's image, each
    /// named `<path> in stage <from>` so that a miss says which one changed.
    fn stage_sources(
        &self,
        step: &Step,
        fc: &FileCopy,
        from: &str,
        source: &ImageState,
        memo: bool,
    ) -> Result<SourceInputs, BuildError> {
        let keyword = if step.instruction.keyword() == "ADD" { "ADD" } else { "COPY" };
        let fail = |message: String| BuildError::Step { step: step.number, message };
        let files: Vec<String> = fc.sources.iter().filter(|s| fc.heredoc_for(s).is_none()).cloned().collect();
        // The image and the selection fix the answer: a cached rebuild reads it back instead
        // of every copied file.
        let image = source.stored.as_ref().map(|s| s.id.to_string());
        let selection = format!("{keyword} --from={from} {}", files.join("\0"));
        if let Some(digest) = image.as_deref().filter(|_| memo).and_then(|id| self.cache.source_memo(id, &selection)) {
            // The digest is the key; which files it covers is read only if the step misses.
            return Ok(SourceInputs { digest, files: BTreeMap::new() });
        }
        let view = MergedView::new(&self.unpacked(source)?);
        let items = plan_from_image(keyword, from, &view, &files, "/", true).map_err(|e| fail(e.to_string()))?;
        let mut located = Vec::with_capacity(items.len());
        for item in items {
            let path = view
                .image_path(&item.host)
                .ok_or_else(|| BuildError::Internal(format!("{} is outside stage {from}", item.host.display())))?;
            let meta = fs::symlink_metadata(&item.host)?;
            located.push((crate::context::walk::entry_from_metadata(path, &item.host, &meta)?, item.host));
        }
        // Owners are what --chown says (it is in the instruction), never the stage's.
        let digest = crate::context::located_digest(&located, Some((0, 0)))?;
        let files = digest.files.into_iter().map(|(path, d)| (format!("{path} in stage {from}"), d)).collect();
        let sources = SourceInputs { digest: digest.digest, files };
        if let Some(id) = &image {
            self.cache.put_source_memo(id, &selection, &sources.digest);
        }
        Ok(sources)
    }

    fn state_of(&self, stored: StoredImage) -> Result<ImageState, BuildError> {
        // Parsed once, when the store read the image.
        let config = stored.config.clone();
        Ok(ImageState { stored: Some(stored), config, key: None, tree_layers: Vec::new() })
    }

    /// The image ID a cache record names, if the record is there and the store still has the
    /// image's config (a file check: the index is read once, by [`Self::hit_state`]).
    fn cached(&self, step: &Step) -> Result<Option<String>, BuildError> {
        let Some(image) = self.cache.image_of(&step.cache_key)? else { return Ok(None) };
        match image.parse::<Sha256Digest>() {
            Ok(id) if self.store.has_blob(&id) => Ok(Some(image)),
            // The image was removed (rmi, prune): the record is stale.
            _ => {
                self.cache.remove(&step.cache_key)?;
                Ok(None)
            }
        }
    }

    /// The state after a cache hit: the recorded image, read from the store.
    fn hit_state(&self, image_id: &str) -> Result<ImageState, BuildError> {
        let stored = self.store.resolve(image_id).map_err(|e| {
            BuildError::Internal(format!("cache hit on image {image_id}, which the store cannot read: {e}"))
        })?;
        self.state_of(stored)
    }

    fn base_state(&self, stage: &Stage, done: &BTreeMap<usize, Arc<ImageState>>) -> Result<ImageState, BuildError> {
        match &stage.base {
            StageBase::Scratch => {
                let mut config = ImageConfig::for_platform(&self.platform);
                config.set_env("PATH", DEFAULT_PATH);
                Ok(ImageState { stored: None, config, key: None, tree_layers: Vec::new() })
            }
            StageBase::Stage { index } => {
                let mut state = done
                    .get(index)
                    .map(|s| (**s).clone())
                    .ok_or_else(|| BuildError::Internal(format!("stage {index} has not been built")))?;
                // As in Docker, an image does not inherit its base's MAINTAINER.
                state.config.author = None;
                Ok(state)
            }
            StageBase::Image { reference, id } => {
                let stored = self.store.resolve(id.as_deref().unwrap_or(reference)).map_err(|e| match e {
                    StoreError::NoSuchImage(_) => {
                        BuildError::BaseImageMissing { reference: reference.clone(), reason: NOT_IN_STORE.into() }
                    }
                    // Damaged: say so (and how to repair) rather than blame a registry.
                    e => BuildError::Store(e),
                })?;
                let mut state = self.state_of(stored)?;
                // The base's ONBUILD triggers run in this stage (lowering put them after the
                // FROM); the new image does not carry them on, as Docker clears them.
                state.config.config.on_build.clear();
                // Nor its MAINTAINER.
                state.config.author = None;
                if state.config.env_var("PATH").is_none() {
                    state.config.set_env("PATH", DEFAULT_PATH);
                }
                Ok(state)
            }
        }
    }

    /// Runs a step that missed the cache and stores the image it makes.
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &self,
        stage: &Stage,
        step: &Step,
        state: &ImageState,
        config_state: &mut StageConfigState,
        done: &BTreeMap<usize, Arc<ImageState>>,
        cancel: &Cancel,
        pending: &mut PendingImages,
    ) -> Result<(ImageState, Option<u64>), BuildError> {
        let mut config = state.config.clone();
        config.created = Some(self.created.clone());
        let is_workdir = matches!(step.instruction, Instruction::Workdir { .. });
        if apply_config_instruction(&mut config, config_state, &step.instruction) && !is_workdir {
            let created_by = history_created_by(&step.instruction, &config, None, &step.build_args, None);
            return Ok((self.commit(&mut pending.batch, state, config, None, created_by)?, None));
        }
        let work = self.store.work_dir()?;
        let upper = work.path().join("upper");
        fs::create_dir_all(&upper)?;
        // fuse-overlayfs may record whiteouts as `.wh.` files; otherwise such a name is refused.
        let mut whiteout_files = false;
        let (created_by, tree) = match &step.instruction {
            Instruction::Workdir { .. } => {
                let created_by = history_created_by(&step.instruction, &config, None, &step.build_args, None);
                if !self.make_workdir(step, state, &config.config, &upper)? {
                    return Ok((self.commit(&mut pending.batch, state, config, None, created_by)?, None));
                }
                (created_by, None)
            }
            Instruction::Run(run) => {
                let (argv, overlay) = self.run_step(stage, step, run, state, &upper, work.path(), done, cancel)?;
                whiteout_files = overlay == OverlayKind::Fuse;
                (history_created_by(&step.instruction, &config, Some(&argv), &step.build_args, None), None)
            }
            Instruction::Copy(fc) | Instruction::Add(fc) => {
                let (summary, tree) = self.copy_step(stage, step, fc, state, &upper, work.path(), done)?;
                (history_created_by(&step.instruction, &config, None, &step.build_args, Some(&summary)), tree)
            }
            other => return Err(BuildError::Internal(format!("{} reached the filesystem path", other.keyword()))),
        };
        let committing = Instant::now();
        let diff = DiffOptions { whiteout_files, ..self.diff.clone() };
        let layer = match &tree {
            Some(tree) => write_layer_tree(tree, work.path(), &diff)?,
            None => write_layer(&upper, work.path(), &diff)?,
        };
        tracing::debug!(
            step = step.number,
            bytes = layer.uncompressed_size,
            ms = committing.elapsed().as_millis() as u64,
            "layer written"
        );
        if layer.empty {
            let _ = std::fs::remove_file(&layer.path);
            return Ok((self.commit(&mut pending.batch, state, config, None, created_by)?, Some(0)));
        }
        let digest: Sha256Digest = layer.digest.parse().map_err(|e| BuildError::Internal(format!("{e}")))?;
        let diff_id: Sha256Digest = layer.diff_id.parse().map_err(|e| BuildError::Internal(format!("{e}")))?;
        work.commit_blob_file(self.store, &layer.path, &digest)?;
        let mut diff_ids: Vec<Sha256Digest> =
            state.stored.as_ref().map(|s| s.layers.iter().map(|l| l.diff_id.clone()).collect()).unwrap_or_default();
        diff_ids.push(diff_id.clone());
        let chain_id = chain_ids(&diff_ids).pop().unwrap_or_else(|| diff_id.clone());
        // The upper dir already has overlay whiteouts: it becomes the unpacked layer as is. A
        // layer written from a tree is unpacked by the store when something needs it.
        if tree.is_none() {
            work.commit_layer_dir(self.store, &upper, &chain_id)?;
        }
        let blob = LayerBlob {
            digest,
            diff_id,
            size: layer.compressed_size,
            media_type: layer.media_type.into(),
            unpacked_size: Some(layer.unpacked_size),
        };
        let size = layer.uncompressed_size;
        let mut image = self.commit(&mut pending.batch, state, config, Some(blob), created_by)?;
        if let Some(tree) = &tree {
            let paths = tree.root.keys().map(|k| format!("/{}", String::from_utf8_lossy(k))).collect();
            image.tree_layers.push((chain_id, Arc::new(paths)));
        }
        drop(work);
        Ok((image, Some(size)))
    }

    /// Stores the image that results from a step: the parent's layers plus `layer`, the config
    /// with a history entry for the step.
    fn commit(
        &self,
        batch: &mut ImageBatch,
        parent: &ImageState,
        mut config: ImageConfig,
        layer: Option<LayerBlob>,
        created_by: String,
    ) -> Result<ImageState, BuildError> {
        let mut layers: Vec<LayerBlob> = parent.stored.as_ref().map(StoredImage::layer_blobs).unwrap_or_default();
        config.created = Some(self.created.clone());
        config.history.push(HistoryEntry {
            created: Some(self.created.clone()),
            created_by: Some(created_by),
            author: config.author.clone(),
            comment: None,
            empty_layer: layer.is_none(),
        });
        if let Some(l) = layer {
            layers.push(l);
        }
        config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
        let json = config.to_json().map_err(|e| BuildError::Internal(format!("serializing an image config: {e}")))?;
        let parent_id = parent.stored.as_ref().map(|s| s.id.clone());
        let stored = self.store.put_image_in_batch(batch, &json, &layers, parent_id)?;
        Ok(ImageState { stored: Some(stored), config, key: None, tree_layers: parent.tree_layers.clone() })
    }

    /// The lower dirs of an image, top-most first as the runtime takes them.
    fn lower_dirs(&self, state: &ImageState, work: &std::path::Path) -> Result<Vec<PathBuf>, BuildError> {
        let mut lowers = match &state.stored {
            Some(image) => self.store.ensure_unpacked(image)?,
            None => Vec::new(),
        };
        lowers.reverse();
        if lowers.is_empty() {
            // An overlay needs one lower dir: scratch gets an empty one.
            let empty = work.join("empty");
            fs::create_dir_all(&empty)?;
            lowers.push(empty);
        }
        Ok(lowers)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        stage: &Stage,
        step: &Step,
        run: &RunInstruction,
        state: &ImageState,
        upper: &std::path::Path,
        work: &std::path::Path,
        done: &BTreeMap<usize, Arc<ImageState>>,
        cancel: &Cancel,
    ) -> Result<(Vec<String>, OverlayKind), BuildError> {
        // Held until the container is gone: cache locks (the copies live in `work`).
        let mounts = self.run_mounts(stage, step, run, state, work, done)?;
        let argv = run_argv(&state.config, run);
        let script = shebang_script(run, work)?;
        let overlay_work = work.join("work");
        fs::create_dir_all(&overlay_work)?;
        let id = container_id();
        let mut spec = ContainerSpec::new(
            &id,
            Rootfs::Overlay { lower: self.lower_dirs(state, work)?, upper: upper.to_path_buf(), work: overlay_work },
            script.as_ref().map_or_else(|| argv.clone(), |m| vec![m.target.clone()]),
            self.state_dir.clone(),
        );
        let mut env = state.config.config.env.clone();
        for (k, v) in &step.build_args {
            if state.config.env_var(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        // Proxy args need no ARG and stay out of the history and the cache key; a
        // `--build-arg` beats the builder's own environment.
        for name in PROXY_ARGS {
            if let Some(v) = self.proxy_args.get(*name).cloned().or_else(|| std::env::var(name).ok()) {
                env.push(format!("{name}={v}"));
            }
        }
        env.extend(mounts.env.iter().cloned());
        spec.env = env;
        spec.mounts = mounts.mounts.clone();
        spec.mounts.extend(script);
        let wd = &state.config.config.working_dir;
        spec.working_dir = Some(if wd.is_empty() { "/".to_string() } else { wd.clone() });
        let user = &state.config.config.user;
        spec.user = (!user.is_empty()).then(|| user.clone());
        spec.network = run.network.unwrap_or_default().or(self.network);
        let events = Arc::clone(&self.events);
        let number = step.number;
        spec.stdio = StdioMode::Lines(Box::new(move |stream, bytes| {
            let line = String::from_utf8_lossy(bytes).trim_end_matches(['\n', '\r']).to_string();
            events(&BuildEvent::Output { step: number, stream, line });
        }));
        self.emit(BuildEvent::ContainerStarted { step: step.number, container_id: id.clone() });
        let exit = Container::new(spec).run();
        drop(mounts);
        self.emit(BuildEvent::ContainerRemoved { step: step.number, container_id: id });
        let exit = exit?;
        if cancel.is_cancelled() {
            return Err(BuildError::Cancelled { last_image: state.id() });
        }
        if exit.code != 0 {
            return Err(BuildError::RunFailed {
                step: step.number,
                command: docker_command_text(&state.config, run),
                code: exit.code,
                last_image: state.id(),
            });
        }
        Ok((argv, exit.overlay))
    }

    /// WORKDIR makes its directory, as BuildKit does: every missing component is created in
    /// `upper` with mode 0755, owned by the USER in effect (names looked up in the image).
    /// Returns whether anything was created.
    fn make_workdir(
        &self,
        step: &Step,
        state: &ImageState,
        config: &crate::image::ContainerConfig,
        upper: &std::path::Path,
    ) -> Result<bool, BuildError> {
        let path = &config.working_dir;
        let view = MergedView::new(&self.unpacked(state)?);
        if path.is_empty() || path == "/" || view.is_dir(path) {
            return Ok(false);
        }
        let (uid, gid) = if config.user.is_empty() {
            (0, 0)
        } else {
            resolve_chown(&config.user, &view).map_err(|what| BuildError::Step {
                step: step.number,
                message: format!("WORKDIR {path}: USER {}: {what}", config.user),
            })?
        };
        // The longest prefix that exists, resolved through symlinks (`/var/run` -> `/run`), is
        // repeated in `upper` with its own metadata so the layer leaves it as it was.
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let existing = (0..=components.len())
            .rev()
            .find(|n| view.is_dir(&format!("/{}", components[..*n].join("/"))))
            .unwrap_or(0);
        // `/` always exists, even in an image without layers (FROM scratch).
        let real = if existing == 0 {
            Vec::new()
        } else {
            view.resolve(&format!("/{}", components[..existing].join("/")), true)
                .ok_or_else(|| BuildError::Internal(format!("WORKDIR {path}: an existing parent vanished")))?
                .0
        };
        // Unprivileged, what rbuild creates is the caller's, which is root in the container:
        // other owners cannot be set from outside the container's namespace.
        let unprivileged = self.diff.host_ids.is_some();
        let mut host = upper.to_path_buf();
        let mut times = Vec::new();
        // `real` is resolved: every prefix in one walk, not each from the root again (that
        // made a deep WORKDIR cost the cube of its depth).
        let lowers = view.lookup_prefixes(&real);
        for (component, lower) in real.iter().zip(lowers) {
            host.push(component);
            let lower =
                lower.ok_or_else(|| BuildError::Internal(format!("WORKDIR {path}: an existing parent vanished")))?;
            let meta = fs::symlink_metadata(&lower.host_path)?;
            fs::create_dir_all(&host)?;
            use std::os::unix::fs::MetadataExt;
            if !unprivileged {
                std::os::unix::fs::lchown(&host, Some(meta.uid()), Some(meta.gid()))?;
            }
            fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777))?;
            times.push((host.clone(), meta.modified()?));
        }
        for component in &components[existing..] {
            host.push(component);
            fs::create_dir(&host)?;
            if !unprivileged {
                std::os::unix::fs::lchown(&host, Some(uid), Some(gid))?;
            }
            fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        // Last, as creating the children touched them.
        for (dir, modified) in times.iter().rev() {
            fs::File::open(dir)?.set_modified(*modified)?;
        }
        Ok(true)
    }

    /// COPY/ADD into `upper`; returns the history summary (`dir:<digest> in /dest`).
    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &self,
        stage: &Stage,
        step: &Step,
        fc: &FileCopy,
        state: &ImageState,
        upper: &std::path::Path,
        work: &std::path::Path,
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
                Some(resolve_chown(spec, view).map_err(|what| BuildError::Step { step: step.number, message: what })?)
            }
            None => None,
        };
        let chmod = match &fc.chmod {
            Some(m) => Some(parse_chmod(m).map_err(step_error)?),
            None => None,
        };
        let uid_gid = chown.unwrap_or((0, 0));
        let mut resolver = DestinationResolver::new(target_view()?);
        let mut created: Vec<(String, DirOwnerMode)> = Vec::new();
        let (heredoc_sources, files): (Vec<&String>, Vec<&String>) =
            fc.sources.iter().partition(|s| fc.heredoc_for(s).is_some());
        let (urls, files): (Vec<&String>, Vec<&String>) = files.into_iter().partition(|s| is_url(s));
        let files: Vec<String> = files.into_iter().cloned().collect();
        let mut items = Vec::new();
        // ADD <url>: downloaded (and checked against --checksum), never extracted.
        for (n, url) in urls.iter().enumerate() {
            let (host, name) = self.download(step, url, work, n, fc.checksum.as_deref())?;
            let to_dir = dest_is_dir || fc.sources.len() > 1;
            let target = if to_dir { format!("{}/{name}", dest.trim_end_matches('/')) } else { dest.clone() };
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
                let target = if to_dir { format!("{}/{}", dest.trim_end_matches('/'), doc.name) } else { dest.clone() };
                items.push(CopyItem::new(host, target, EntryType::File));
            }
        }
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
                    let roots = self
                        .context
                        .select_roots(&files, &fc.exclude)
                        .map_err(|e| BuildError::Step { step: step.number, message: e.to_string() })?;
                    if urls.is_empty() && heredoc_sources.is_empty() {
                        classic_hash = Some(classic_source_hash(&self.context.root, &roots, self.context.memo())?);
                    }
                    // ADD extracts local archives into the destination, keeping their owners.
                    let unpack = keyword == "ADD" && fc.unpack != Some(false);
                    let (archives, plain): (Vec<_>, Vec<_>) = roots.into_iter().partition(|r| {
                        unpack
                            && r.root.as_ref().is_some_and(|e| {
                                e.kind == crate::context::EntryKind::File
                                    && is_tar_archive(&self.context.root.join(&e.path))
                            })
                    });
                    sources_copied.extend(archives.iter().map(|_| false));
                    sources_copied.extend(
                        plain.iter().map(|r| r.root.as_ref().is_none_or(|e| e.kind == crate::context::EntryKind::Dir)),
                    );
                    for archive in archives.iter().filter_map(|r| r.root.as_ref()) {
                        let real = resolver.directory(&dest);
                        let made = DirOwnerMode { uid: uid_gid.0, gid: uid_gid.1, mode: 0o755 };
                        created.extend(created_components(&real, &resolver).into_iter().map(|p| (p, made)));
                        self.extract_archive(step, &self.context.root.join(&archive.path), upper, &real, chown)?;
                        extracted = true;
                    }
                    // With no `.` among the sources, the destination directory is only made
                    // to hold them: 0755, as Docker makes it, not the context root's mode.
                    let copies_context_root = plain.iter().any(|r| r.root.is_none());
                    let planned =
                        plan_from_context(keyword, &self.context.root, &plain, &dest, dest_is_dir, fc.parents)
                            .map_err(step_error)?;
                    if let Some(first) = planned.first() {
                        if first.kind == EntryType::Dir && first.host == self.context.root && !copies_context_root {
                            let real = resolver.directory(&first.dest);
                            created.push((real, DirOwnerMode { uid: uid_gid.0, gid: uid_gid.1, mode: 0o755 }));
                        }
                    }
                    items.extend(planned);
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
        let copying = Instant::now();
        let opts = CopyOptions { chown, chmod };
        // Creating files is most of a COPY's time, so when no RUN of this stage or other
        // stage reads the result soon, the layer is written straight from the sources.
        // Unprivileged, files cannot be given their owners on the host (a subordinate id needs
        // the container's namespace), so the layer is always written from the tree, with
        // container ids, and the store unpacks it when something reads it.
        let unprivileged = self.diff.host_ids.is_some();
        let tree = if extracted || (!unprivileged && self.unpacked_soon(stage, step)) {
            materialize(upper, &items, &opts).map_err(step_error)?;
            apply_to_upper(upper, &rules)?;
            None
        } else {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let mut tree = layer_tree(&items, &opts, now as i64).map_err(step_error)?;
            apply_to_tree(&mut tree, &rules);
            Some(tree)
        };
        tracing::debug!(step = step.number, entries = items.len(), ms = copying.elapsed().as_millis() as u64, "copied");
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

    /// Downloads `url` into `work` for ADD: the file is named after the URL's last path
    /// segment, gets mode 0600 and the server's Last-Modified time (as docker does), and must
    /// match `--checksum` when one is given.
    fn download(
        &self,
        step: &Step,
        url: &str,
        work: &std::path::Path,
        n: usize,
        checksum: Option<&str>,
    ) -> Result<(PathBuf, String), BuildError> {
        use sha2::Digest;
        use std::io::{Read, Write};
        let fail = |message: String| BuildError::Step { step: step.number, message: format!("ADD {url}: {message}") };
        let response = ureq::get(url).call().map_err(|e| fail(e.to_string()))?;
        let modified = response
            .headers()
            .get("last-modified")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|t| t.timestamp());
        // `scheme://host/path?query`: the last segment of the path, else index.html.
        let path = url.split(['?', '#']).next().unwrap_or(url).splitn(4, '/').nth(3).unwrap_or("");
        let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("index.html").to_string();
        let host = work.join(format!("url-{n}"));
        let mut file = fs::File::create(&host)?;
        let mut hasher = sha2::Sha256::new();
        let mut body = response.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let read = body.read(&mut buf).map_err(|e| fail(format!("reading the response: {e}")))?;
            if read == 0 {
                break;
            }
            hasher.update(&buf[..read]);
            file.write_all(&buf[..read])?;
        }
        file.sync_all()?;
        drop(file);
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Some(want) = checksum {
            if !want.eq_ignore_ascii_case(&got) {
                return Err(fail(format!("checksum mismatch: expected {want}, got {got}")));
            }
        }
        fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        if let Some(secs) = modified {
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
            fs::File::options().write(true).open(&host)?.set_modified(when)?;
        }
        Ok((host, name))
    }

    /// ADD of a local tar (plain, gzip, bzip2, xz or zstd): extracted into `upper` at `dest` through the
    /// store's hardened applier (no path escapes the destination), owners from the archive
    /// unless `--chown` is given.
    fn extract_archive(
        &self,
        step: &Step,
        archive: &std::path::Path,
        upper: &std::path::Path,
        dest: &str,
        chown: Option<(u32, u32)>,
    ) -> Result<(), BuildError> {
        let target = upper.join(dest.trim_start_matches('/'));
        fs::create_dir_all(&target)?;
        let fail = |e: &dyn std::fmt::Display| BuildError::Step {
            step: step.number,
            message: format!("ADD {}: {e}", archive.display()),
        };
        let mut apply = crate::layer::apply::LayerApply::new(&target, crate::layer::apply::WhiteoutMode::Literal)
            .map_err(|e| fail(&e))?;
        let scratch = upper.parent().unwrap_or(upper);
        let tar = decompressed(std::io::BufReader::new(fs::File::open(archive)?), Some(scratch), None)
            .map_err(|e| fail(&e))?;
        apply.apply(tar).map_err(|e| fail(&e))?;
        if let Some((uid, gid)) = chown {
            chown_tree(&target, uid, gid)?;
        }
        Ok(())
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

    pub(crate) fn unpacked(&self, state: &ImageState) -> Result<Vec<PathBuf>, BuildError> {
        Ok(match &state.stored {
            Some(image) => self.store.ensure_unpacked(image)?,
            None => Vec::new(),
        })
    }

    /// The image a `--from` names: an earlier stage's result, or an image in the store.
    pub(crate) fn copy_source_image(
        &self,
        stage: &Stage,
        from: &str,
        done: &BTreeMap<usize, Arc<ImageState>>,
    ) -> Result<ImageState, BuildError> {
        if let Some(index) = self.stage_dependency(stage, from, done) {
            return Ok((*done[&index]).clone());
        }
        let stored = self
            .store
            .resolve(from)
            .map_err(|_| BuildError::BaseImageMissing { reference: from.to_string(), reason: NOT_IN_STORE.into() })?;
        self.state_of(stored)
    }

    /// The built stage a `--from` names, if it names one (else it names an image).
    fn stage_dependency(&self, stage: &Stage, from: &str, done: &BTreeMap<usize, Arc<ImageState>>) -> Option<usize> {
        stage.dependencies.iter().find_map(|dep| match dep {
            Dependency::Stage { index }
                if done.contains_key(index)
                    && (from.parse::<usize>().ok() == Some(*index)
                        || self.stage_name(*index).as_deref() == Some(&from.to_ascii_lowercase())) =>
            {
                Some(*index)
            }
            _ => None,
        })
    }

    fn stage_name(&self, index: usize) -> Option<String> {
        self.stage_names.get(index).cloned().flatten()
    }
}

/// argv of a RUN: exec form as is; shell form through the SHELL; a heredoc-only command runs
/// the heredoc body as the script; a command with heredocs passes the whole text to the shell,
/// which reads the heredocs itself.
pub fn run_argv(config: &ImageConfig, run: &RunInstruction) -> Vec<String> {
    match &run.command {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(cmd) => {
            let script = match (sole_heredoc(run), run.heredocs.as_slice()) {
                (Some(body), _) => body,
                (None, []) => cmd.clone(),
                (None, docs) => {
                    let mut text = cmd.clone();
                    for d in docs {
                        text.push('\n');
                        text.push_str(&d.content);
                        text.push_str(&d.name);
                    }
                    text
                }
            };
            config.shell_argv(&script)
        }
    }
}

/// The body of a RUN that is one heredoc and nothing else (`RUN <<EOF`), chomped if `<<-`.
fn sole_heredoc(run: &RunInstruction) -> Option<String> {
    let CommandForm::Shell(cmd) = &run.command else { return None };
    let [only] = run.heredocs.as_slice() else { return None };
    let alone = cmd.trim().trim_start_matches(|c: char| c.is_ascii_digit()).starts_with("<<")
        && cmd.split_whitespace().count() == 1;
    alone.then(|| if only.chomp { crate::frontend::parser::chomp_heredoc(&only.content) } else { only.content.clone() })
}

/// BuildKit runs a sole heredoc that starts with `#!` as a program, not through the shell:
/// its body becomes an executable file at `/dev/pipes/<name>` (read-only, never in the image)
/// and that file is the command, so the kernel starts the interpreter the shebang names. The
/// file lives in the step's work dir and is bind-mounted (the runtime's tmpfs-backed file
/// mounts are `noexec`, rightly so for secrets).
fn shebang_script(run: &RunInstruction, work: &std::path::Path) -> Result<Option<crate::runtime::Mount>, BuildError> {
    let Some(body) = sole_heredoc(run).filter(|b| b.starts_with("#!")) else { return Ok(None) };
    let Some(name) = run.heredocs.first().map(|d| d.name.clone()) else { return Ok(None) };
    let source = work.join("heredoc-script");
    fs::write(&source, body)?;
    fs::set_permissions(&source, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(Some(crate::runtime::Mount {
        target: format!("/dev/pipes/{name}"),
        kind: crate::runtime::MountKind::Bind { source, readonly: true },
    }))
}

/// How classic docker names a failed command: `'/bin/sh -c false'` or `'["false"]'`; a
/// heredoc RUN shows the script it ran, not just `<<EOF`.
fn docker_command_text(config: &ImageConfig, run: &RunInstruction) -> String {
    match &run.command {
        CommandForm::Shell(_) => run_argv(config, run).join(" "),
        CommandForm::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// `--chown=user[:group]` with names looked up in the image's /etc/passwd and /etc/group.
fn resolve_chown(spec: &str, image: &MergedView) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = image.read(file)?;
        String::from_utf8_lossy(&text).lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name)).then(|| {
                let id = fields.get(2).and_then(|v| v.parse().ok())?;
                let gid = fields.get(3).and_then(|v| v.parse().ok()).unwrap_or(id);
                Some((id, gid))
            })?
        })
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => lookup("/etc/passwd", user)
            .ok_or_else(|| format!("unable to find user {user}: no matching entries in passwd file"))?,
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("/etc/group", g)
                .map(|(gid, _)| gid)
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
    };
    Ok((uid, gid))
}

/// `lchown -R`.
fn chown_tree(dir: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.symlink_metadata()?.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
    }
    Ok(())
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
