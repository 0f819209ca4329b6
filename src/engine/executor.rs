//! Runs the steps of one stage against the store: for every step, a cache hit reuses the
//! recorded image; a miss runs the step (a config change, RUN in a transient container, or
//! COPY into a fresh upper dir), commits the upper dir as a layer when it changed anything,
//! stores the new image and records the cache key. Every step emits [`BuildEvent`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fs_err as fs;

use crate::engine::cache::{CacheIndex, CacheRecord};
use crate::engine::classic_cache::ClassicSources;
use crate::engine::commit::UpperDiff;
use crate::engine::config::{
    apply_config_instruction, history_created_by, inherit_image_config, inherit_stage_config, scratch_stage_config,
    StageConfigState,
};
use crate::engine::runner::ContainerRunner;
use crate::engine::scheduler::{Cancel, StageRunner};
use crate::engine::shared_cache::ImportedCaches;
use crate::engine::BuildError;
use crate::events::BuildEvent;
use crate::frontend::instructions::Instruction;
use crate::image::{ImageConfig, Platform};
use crate::layer::diff::{DiffOptions, LayerTree};
use crate::layer::digest::Sha256Digest;
use crate::plan::{CacheKey, MissReason, Stage, StageBase, Step};
use crate::runtime::{Isolation, NetworkMode};
use crate::store::{ImageBatch, ImageStore, StoreError, StoredImage};

/// Why a base image that lowering could not pull is missing when its stage runs.
pub(crate) const NOT_IN_STORE: &str = "the image is not in the local store";

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
    pub extra_hosts: Vec<crate::runtime::HostEntry>,
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
    /// Proxy variables (`HTTP_PROXY`…) every RUN sees: the builder's environment's, and
    /// `--build-arg`s over them.
    pub proxy_args: BTreeMap<String, String>,
    /// `--secret`s, for `RUN --mount=type=secret`.
    pub secrets: &'a [crate::engine::secrets::BuildSecret],
    /// `--ssh` agents, for `RUN --mount=type=ssh`.
    pub ssh_agents: &'a [crate::engine::ssh::SshAgent],
    /// `--allow`: entitlements granted (the plan was checked against them).
    pub allowed: &'a [crate::plan::entitlements::Entitlement],
    /// Runs RUN steps' containers.
    pub runner: &'a dyn ContainerRunner,
    /// `--isolation` as asked for.
    pub requested_isolation: Isolation,
    /// The isolation RUN steps use (see [`crate::runtime::choose_isolation`]), or why none can
    /// be used here (an error of the first RUN step: a build without RUN needs none). Chosen
    /// when the first RUN runs (a cached build probes nothing), unless the builder already did.
    pub isolation: Mutex<Option<Result<crate::runtime::IsolationChoice, crate::runtime::IsolationUnavailable>>>,
    /// Each running stage's rootfs after its last chroot-snapshot RUN, by stage index.
    pub(crate) kept_rootfs: Mutex<std::collections::HashMap<usize, crate::engine::snapshot_step::KeptRootfs>>,
    /// The `--cache-from` caches, consulted when the store has no record for a key.
    pub imported: &'a ImportedCaches,
    /// The classic `--cache-from IMAGE`s, consulted after them.
    pub classic: &'a ClassicSources,
    /// What the build used, for `--cache-to`: (stage, effective key) of every step that hit
    /// or ran, and (name under `cache-mounts/`, directory) of every cache mount.
    pub used: Mutex<UsedByBuild>,
}

/// See [`StageExecutor::used`].
#[derive(Debug, Default)]
pub struct UsedByBuild {
    pub steps: Vec<(usize, CacheKey)>,
    pub cache_mounts: Vec<(String, PathBuf)>,
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
        self.release_rootfs(stage);
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
pub(crate) struct PendingImages {
    pub(crate) batch: ImageBatch,
    records: Vec<CacheRecord>,
}

/// What a step that missed wrote to the filesystem.
pub(crate) enum Written {
    Nothing,
    /// The step's upper dir, and how to read it.
    Upper(UpperDiff),
    /// A layer tree (COPY that nothing reads soon).
    Tree(LayerTree),
    /// A chroot-snapshot RUN's layer and the rootfs its files are in, kept for the next RUN.
    Snapshot(LayerTree, crate::engine::snapshot_step::KeptRootfs),
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
                let hit = self.lookup(step, &state, last_hit.as_deref(), &config_state);
                if let Some(hit) = hit.map_err(|e| e.at_step(step.number))? {
                    self.note_step(stage.index, &step.cache_key);
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
                match self.cache.explain(&step.key_inputs)? {
                    MissReason::NoRecord => self.imported.explain(&step.key_inputs).unwrap_or(MissReason::NoRecord),
                    reason => reason,
                }
            };
            missed = true;
            self.emit(BuildEvent::cache_miss(step.number, reason));
            if let Some(hit) = last_hit.take() {
                state = self.hit_state(&hit).map_err(|e| e.at_step(step.number))?;
            }
            let (next, layer_size) = self
                .execute(stage, step, &state, &mut config_state, done, cancel, pending)
                .map_err(|e| e.at_step(step.number))?;
            let image_id = next.id().unwrap_or_default();
            self.note_step(stage.index, &step.cache_key);
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
    pub(crate) fn emit(&self, event: BuildEvent) {
        (self.events)(&event);
    }

    pub(crate) fn state_of(&self, stored: StoredImage) -> Result<ImageState, BuildError> {
        // Parsed once, when the store read the image.
        let config = stored.config.clone();
        Ok(ImageState { stored: Some(stored), config, key: None, tree_layers: Vec::new() })
    }

    fn base_state(&self, stage: &Stage, done: &BTreeMap<usize, Arc<ImageState>>) -> Result<ImageState, BuildError> {
        match &stage.base {
            StageBase::Scratch => {
                let config = scratch_stage_config(&self.platform);
                Ok(ImageState { stored: None, config, key: None, tree_layers: Vec::new() })
            }
            StageBase::Stage { index } => {
                let mut state = done
                    .get(index)
                    .map(|s| (**s).clone())
                    .ok_or_else(|| BuildError::Internal(format!("stage {index} has not been built")))?;
                inherit_stage_config(&mut state.config);
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
                inherit_image_config(&mut state.config);
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
        let config_only = apply_config_instruction(&mut config, config_state, &step.instruction) && !is_workdir;
        let work = if config_only { None } else { Some(self.store.work_dir()?) };
        let (mut argv, mut summary) = (None, None);
        let written = match &work {
            None => Written::Nothing,
            Some(work) => {
                let upper = work.path().join("upper");
                fs::create_dir_all(&upper)?;
                match &step.instruction {
                    Instruction::Workdir { .. } => self.make_workdir(step, state, &config.config, &upper)?,
                    Instruction::Run(run) if self.isolation()? == Isolation::Chroot => {
                        let (run_argv, tree, rootfs) =
                            self.run_step_snapshot(stage, step, run, state, work.path(), done, cancel)?;
                        argv = Some(run_argv);
                        Written::Snapshot(tree, rootfs)
                    }
                    Instruction::Run(run) => {
                        let (run_argv, upper_diff) =
                            self.run_step(stage, step, run, state, &upper, work.path(), done, cancel)?;
                        argv = Some(run_argv);
                        Written::Upper(upper_diff)
                    }
                    Instruction::Copy(fc) | Instruction::Add(fc) => {
                        let (copied, tree) = self.copy_step(stage, step, fc, state, &upper, work.path(), done)?;
                        summary = Some(copied);
                        tree.map_or(Written::Upper(UpperDiff::default()), Written::Tree)
                    }
                    other => {
                        return Err(BuildError::Internal(format!("{} reached the filesystem path", other.keyword())))
                    }
                }
            }
        };
        let created_by =
            history_created_by(&step.instruction, &config, argv.as_deref(), &step.build_args, summary.as_deref());
        match (work, written) {
            (Some(work), Written::Upper(upper)) => {
                self.commit_layer(step, state, config, created_by, work, None, upper, pending)
            }
            (Some(work), Written::Tree(tree)) => {
                self.commit_layer(step, state, config, created_by, work, Some(tree), UpperDiff::default(), pending)
            }
            (Some(work), Written::Snapshot(tree, mut rootfs)) => {
                rootfs.record(&tree);
                let (image, size) = self.commit_layer(
                    step,
                    state,
                    config,
                    created_by,
                    work,
                    Some(tree),
                    UpperDiff::default(),
                    pending,
                )?;
                self.keep_rootfs(stage, rootfs, &image);
                Ok((image, size))
            }
            _ => Ok((self.commit(&mut pending.batch, state, config, None, created_by)?, None)),
        }
    }

    /// The isolation RUN steps use, or the error that none can be used; chosen (and reported)
    /// on the first call.
    pub(crate) fn isolation(&self) -> Result<Isolation, BuildError> {
        let mut chosen = self.isolation.lock().unwrap_or_else(|e| e.into_inner());
        let choice = match &mut *chosen {
            Some(choice) => choice,
            unset => {
                unset.insert(choose_run_isolation(self.store, self.requested_isolation, self.network, &self.events)?)
            }
        };
        match choice {
            Ok(choice) => Ok(choice.isolation),
            Err(e) => Err(BuildError::Isolation(e.clone())),
        }
    }

    pub(crate) fn unpacked(&self, state: &ImageState) -> Result<Vec<PathBuf>, BuildError> {
        Ok(match &state.stored {
            Some(image) => self.store.ensure_unpacked(image)?,
            None => Vec::new(),
        })
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;

/// Chooses the isolation of RUN steps (for `auto`, the strongest that works here, including a
/// test mount of the kernel overlay on the store's filesystem) and reports it.
pub(crate) fn choose_run_isolation(
    store: &ImageStore,
    requested: Isolation,
    network: NetworkMode,
    sink: &EventSink,
) -> Result<Result<crate::runtime::IsolationChoice, crate::runtime::IsolationUnavailable>, BuildError> {
    let mut choice = crate::runtime::choose_isolation(requested);
    if requested == Isolation::Auto && choice.as_ref().is_ok_and(|c| c.isolation == Isolation::Root) {
        let scratch = store.work_dir()?;
        if let Err(reason) = crate::runtime::overlay_mount_works(scratch.path()) {
            choice = crate::runtime::choose_without_overlay(reason);
        }
    }
    if let Ok(c) = &choice {
        sink(&BuildEvent::Isolation { mode: c.isolation.name().into(), reason: c.reason.clone(), usual: c.usual });
        if c.isolation == Isolation::Chroot && network == NetworkMode::None {
            sink(&BuildEvent::Warning {
                message: "--network none cannot be honoured in the chroot-snapshot mode: RUN steps use the host's \
                          network"
                    .into(),
            });
        }
    }
    Ok(choice)
}
