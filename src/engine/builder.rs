//! [`Builder`]: the library entry point of a build. It reads the Dockerfile and the context,
//! lowers the plan with the store as the image resolver, runs the stages, tags the result and
//! returns the image ID with every event, so a test suite can assert on cache behaviour:
//!
//! ```no_run
//! use rbuild::engine::{BuildOptions, Builder};
//! use rbuild::events::BuildEvent;
//!
//! let builder = Builder::open(std::path::Path::new("/tmp/rbuild-store"))?;
//! let out = builder.build(&BuildOptions::new("testdata/example"))?;
//! let hits = out.events.iter().filter(|e| matches!(e, BuildEvent::CacheHit { .. })).count();
//! println!("{} ({hits} steps from cache)", out.image_id);
//! # Ok::<(), rbuild::engine::BuildError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::context::{BuildContext, ContentMemo};
use crate::engine::cache::CacheIndex;
use crate::engine::classic_cache::ClassicSources;
use crate::engine::executor::{EventSink, ImageState, StageExecutor};
use crate::engine::planning::{plan_build, PlanRequest, PullPolicy, StoreImages};
use crate::engine::scheduler::{run_stages, Cancel};
use crate::engine::settings::BuildSettings;
use crate::engine::shared_cache::{export, CacheExportSpec, CacheImportSpec, ExportRequest, ImportedCaches};
use crate::engine::BuildError;
use crate::events::BuildEvent;
use crate::frontend::parser;
use crate::image::Platform;
use crate::layer::diff::DiffOptions;
use crate::layer::media::Compression;
use crate::plan::Dependency;
use crate::registry::cache::CacheLocation;
use crate::registry::RegistryOptions;
use crate::runtime::NetworkMode;
use crate::store::{ImageReference, ImageStore, PutImage};

/// What to build and how; the same knobs as `docker build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub context: PathBuf,
    /// Where a fetched context came from (its URL): the misses of its builds are explained
    /// against earlier builds of the same URL, and no content memo is kept for its temp dir.
    pub context_origin: Option<String>,
    /// The Dockerfile; default `CONTEXT/Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's text when it does not come from a file (`-f -`).
    pub dockerfile_text: Option<String>,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub labels: BTreeMap<String, String>,
    pub network: NetworkMode,
    /// `--add-host` entries for every RUN step's `/etc/hosts`.
    pub extra_hosts: Vec<crate::runtime::HostEntry>,
    pub compression: Compression,
    /// Stages built at once (default: the number of cores).
    pub jobs: usize,
    /// `--secret`s for `RUN --mount=type=secret`.
    pub secrets: Vec<crate::engine::secrets::BuildSecret>,
    /// `--ssh` agents for `RUN --mount=type=ssh`.
    pub ssh: Vec<crate::engine::ssh::SshAgent>,
    /// `--allow`: the entitlements the build is granted (see [`crate::plan::entitlements`]).
    pub allow: Vec<crate::plan::entitlements::Entitlement>,
    /// `--pull`: check the registry for every base image, even one already in the store.
    /// Without it, only a base image missing from the store is pulled (Docker's behaviour).
    pub pull: bool,
    /// How to reach registries for those pulls.
    pub registry: RegistryOptions,
    /// What the build takes from the environment (`SOURCE_DATE_EPOCH`, proxy variables).
    pub settings: BuildSettings,
    /// `--cache-from`: caches (and classic images) consulted when the store has no record.
    pub cache_from: Vec<CacheImportSpec>,
    /// `--cache-to`: where the build's records go when it succeeds.
    pub cache_to: Vec<CacheExportSpec>,
    /// `--isolation`: how RUN steps are isolated (auto: the strongest the environment allows).
    pub isolation: crate::runtime::Isolation,
}

impl BuildOptions {
    /// Docker's defaults for a build of `context`; the environment is read here, once
    /// ([`BuildSettings::from_env`], [`RegistryOptions::from_env`]).
    pub fn new(context: impl Into<PathBuf>) -> Self {
        BuildOptions {
            context: context.into(),
            context_origin: None,
            dockerfile: None,
            dockerfile_text: None,
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            labels: BTreeMap::new(),
            network: NetworkMode::Default,
            extra_hosts: Vec::new(),
            compression: Compression::Gzip,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()).max(2),
            secrets: Vec::new(),
            ssh: Vec::new(),
            allow: Vec::new(),
            pull: false,
            registry: RegistryOptions::from_env(None),
            settings: BuildSettings::from_env(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            isolation: crate::runtime::Isolation::Auto,
        }
    }
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image ID (`sha256:…`).
    pub image_id: String,
    pub events: Vec<BuildEvent>,
}

/// Runs builds against one store.
pub struct Builder {
    store: ImageStore,
    cancel: Cancel,
}

impl Builder {
    pub fn new(store: ImageStore) -> Self {
        Builder { store, cancel: Cancel::new() }
    }

    /// A builder on the store at `root` (created if missing), leasing what it uses.
    pub fn open(root: &Path) -> Result<Self, BuildError> {
        Ok(Builder::new(ImageStore::open(root)?.leased("build")))
    }

    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// The flag that stops a running build (set it from a signal handler).
    pub fn cancel_handle(&self) -> Cancel {
        self.cancel.clone()
    }

    /// Builds and returns the image ID and every event.
    pub fn build(&self, opts: &BuildOptions) -> Result<BuildOutput, BuildError> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink_events = Arc::clone(&events);
        let sink: EventSink = Arc::new(move |e: &BuildEvent| {
            if let Ok(mut v) = sink_events.lock() {
                v.push(e.clone());
            }
        });
        let image_id = self.build_with(opts, sink)?;
        let events = events.lock().map(|v| v.clone()).unwrap_or_default();
        Ok(BuildOutput { image_id, events })
    }

    /// Builds, sending every event to `sink` as it happens; a failure is also reported as a
    /// `build_failed` event before it is returned.
    pub fn build_with(&self, opts: &BuildOptions, sink: EventSink) -> Result<String, BuildError> {
        let started = std::time::Instant::now();
        match self.run(opts, &sink, started) {
            Ok(id) => Ok(id),
            Err(e) => {
                let exit_code = match &e {
                    BuildError::RunFailed { code, .. } => Some(*code),
                    _ => None,
                };
                sink(&BuildEvent::BuildFailed {
                    step: e.step(),
                    message: e.to_string(),
                    exit_code,
                    last_image_id: e.last_image().map(str::to_string),
                });
                Err(e)
            }
        }
    }

    fn run(&self, opts: &BuildOptions, sink: &EventSink, started: std::time::Instant) -> Result<String, BuildError> {
        let dockerfile = opts.dockerfile.clone().unwrap_or_else(|| opts.context.join("Dockerfile"));
        let (name, text) = match &opts.dockerfile_text {
            Some(text) => ("Dockerfile".to_string(), text.clone()),
            None => (dockerfile.display().to_string(), fs_err::read_to_string(&dockerfile)?),
        };
        for secret in &opts.secrets {
            secret.check()?;
        }
        for agent in &opts.ssh {
            agent.check()?;
        }
        let df = parser::parse(&text, &name)?;
        let anchor = opts.dockerfile_text.is_none().then_some(dockerfile.as_path());
        // File digests of this context remembered from its earlier builds.
        // The store's cache index: content memos now, step records (with the lineage) below.
        let memo_cache = CacheIndex::open(&self.store.root().join("cache"))?;
        let context_id = opts.context.canonicalize().unwrap_or_else(|_| opts.context.clone());
        // A fetched context is a new directory every time: nothing to remember.
        let memo = Arc::new(match opts.context_origin {
            Some(_) => ContentMemo::default(),
            None => memo_cache.content_memo(&context_id),
        });
        let context = BuildContext::open(&opts.context, anchor)?.with_memo(Arc::clone(&memo));
        let summary = context.summary()?;
        let policy = if opts.pull { PullPolicy::Always } else { PullPolicy::Missing };
        let images = StoreImages::new(&self.store, policy, opts.registry.clone(), Arc::clone(sink));
        let platform = Platform::native();
        let request = PlanRequest {
            dockerfile: &df,
            dockerfile_text: &text,
            context: &context,
            build_args: &opts.build_args,
            target: opts.target.as_deref(),
            target_platform: platform.clone(),
        };
        let plan = plan_build(&request, Some(&images))?;
        crate::plan::entitlements::check(&plan, &opts.allow)?;
        for stage in plan.planned_stages() {
            check_stage_platform(stage, &platform)?;
        }
        announce(sink, &summary, &plan);
        let isolation = isolation_for(&self.store, opts, &plan, sink)?;
        let state_dir = self.store.root().join("run");
        fs_err::create_dir_all(&state_dir)?;
        crate::runtime::cleanup_stale(&state_dir)?;
        let created = opts.settings.created();
        let diff = DiffOptions {
            compression: opts.compression,
            // Layers record container ids in every mode.
            host_ids: crate::runtime::unprivileged_host_ids(),
            source_date_epoch: opts.settings.source_date_epoch()?,
            ..DiffOptions::default()
        };
        // Misses are explained against this Dockerfile's earlier builds only.
        let lineage = lineage(opts, &dockerfile, &context_id);
        let runner = crate::engine::runner::RuntimeRunner::default();
        let imported = self.import_caches(opts, sink);
        let classic = self.classic_sources(opts, sink)?;
        let executor = StageExecutor {
            store: &self.store,
            cache: memo_cache.clone().with_lineage(lineage),
            context: &context,
            events: Arc::clone(sink),
            total_steps: plan.step_count(),
            no_cache: opts.no_cache,
            network: opts.network,
            extra_hosts: opts.extra_hosts.clone(),
            diff,
            created,
            state_dir,
            platform: platform.clone(),
            stage_names: plan.stages.iter().map(|s| s.name.clone()).collect(),
            stages_read_by_others: stages_read_by_others(&plan),
            proxy_args: proxy_args(opts),
            secrets: &opts.secrets,
            ssh_agents: &opts.ssh,
            allowed: &opts.allow,
            runner: &runner,
            requested_isolation: opts.isolation,
            isolation: Mutex::new(isolation),
            kept_rootfs: Default::default(),
            imported: &imported,
            classic: &classic,
            used: Default::default(),
        };
        let outputs = run_stages(&plan, &executor, opts.jobs, &self.cancel);
        if opts.context_origin.is_none() {
            memo_cache.put_content_memo(&context_id, &memo);
        }
        let outputs = outputs?;
        let target = outputs.get(&plan.target).ok_or_else(|| match self.cancel.is_cancelled() {
            // Ctrl-C between stages: nothing failed, the target never started.
            true => BuildError::Cancelled { last_image: None },
            false => BuildError::Internal("the target stage produced nothing".into()),
        })?;
        let image = self.finish(target, opts)?;
        let id = image.id.to_string();
        if !opts.cache_to.is_empty() {
            let used = executor.used.into_inner().unwrap_or_default();
            let request = ExportRequest {
                store: &self.store,
                cache: &executor.cache,
                steps: &used.steps,
                target_stage: plan.target,
                cache_mounts: &used.cache_mounts,
                diff: &executor.diff,
                registry: &opts.registry,
            };
            export_caches(&request, &opts.cache_to, sink)?;
        }
        for tag in &opts.tags {
            let reference = ImageReference::parse(tag).map_err(crate::store::StoreError::from)?;
            self.store.tag(&image, &reference)?;
        }
        sink(&BuildEvent::BuildDone {
            image_id: id.clone(),
            tags: opts.tags.iter().map(|t| display_tag(t)).collect(),
            duration_ms: started.elapsed().as_millis() as u64,
        });
        Ok(id)
    }

    /// The target's image, with `--label`s added (a stage with no step after `FROM scratch` is
    /// stored empty, as Docker does).
    fn finish(&self, target: &ImageState, opts: &BuildOptions) -> Result<crate::store::StoredImage, BuildError> {
        if opts.labels.is_empty() {
            if let Some(stored) = &target.stored {
                return Ok(stored.clone());
            }
        }
        let mut config = target.config.clone();
        config.config.labels.extend(opts.labels.clone());
        let layers = target.stored.as_ref().map(crate::store::StoredImage::layer_blobs).unwrap_or_default();
        let json = config.to_json().map_err(|e| BuildError::Internal(format!("serializing an image config: {e}")))?;
        let parent = target.stored.as_ref().map(|s| s.id.clone());
        Ok(self.store.put_image_raw(&json, &layers, &PutImage { tags: Vec::new(), parent })?)
    }
}

/// The build's first events: the context's size, the plan's warnings, and the ARGs before the
/// first FROM (steps in classic output, with nothing to run).
fn announce(sink: &EventSink, summary: &crate::context::ContextSummary, plan: &crate::plan::BuildPlan) {
    sink(&BuildEvent::BuildStarted {
        context_files: summary.files,
        context_bytes: summary.bytes,
        total_steps: plan.step_count(),
    });
    for warning in &plan.warnings {
        sink(&BuildEvent::Warning { message: warning.clone() });
    }
    for arg in &plan.global_arg_steps {
        sink(&BuildEvent::StepStarted {
            step: arg.number,
            total: plan.step_count(),
            stage: 0,
            instruction: arg.original.clone(),
            cache_key: String::new(),
        });
    }
}

/// The isolation of the build's RUN steps when `--isolation` names one: a mode that cannot
/// work here fails the build now. `auto` is chosen when the first RUN runs (a build without
/// RUN, or all cached, probes nothing; one where nothing works fails at that RUN).
fn isolation_for(
    store: &ImageStore,
    opts: &BuildOptions,
    plan: &crate::plan::BuildPlan,
    sink: &EventSink,
) -> Result<Option<Result<crate::runtime::IsolationChoice, crate::runtime::IsolationUnavailable>>, BuildError> {
    let has_run = plan.planned_stages().any(|s| {
        s.steps.iter().any(|step| matches!(step.instruction, crate::frontend::instructions::Instruction::Run(_)))
    });
    if opts.isolation == crate::runtime::Isolation::Auto || !has_run {
        return Ok(None);
    }
    match crate::engine::executor::choose_run_isolation(store, opts.isolation, opts.network, sink)? {
        Err(e) => Err(BuildError::Isolation(e)),
        Ok(choice) => Ok(Some(Ok(choice))),
    }
}

/// What a build's cache misses are explained against: the earlier builds of the same
/// Dockerfile (by path; `text:<context>` for `-f -`), and for a fetched context of the same
/// URL and Dockerfile inside it.
fn lineage(opts: &BuildOptions, dockerfile: &Path, context_id: &Path) -> String {
    match (&opts.context_origin, &opts.dockerfile_text) {
        (Some(origin), Some(_)) => format!("text:{origin}"),
        (Some(origin), None) => {
            let file = dockerfile.canonicalize().unwrap_or_else(|_| dockerfile.to_path_buf());
            format!("{origin}:{}", file.strip_prefix(context_id).unwrap_or(&file).display())
        }
        (None, Some(_)) => format!("text:{}", context_id.display()),
        (None, None) => dockerfile.canonicalize().unwrap_or_else(|_| dockerfile.to_path_buf()).display().to_string(),
    }
}

impl Builder {
    /// Opens the `--cache-from` caches (a classic `--cache-from IMAGE` is read by the
    /// executor from the image itself), saying what each holds.
    fn import_caches(&self, opts: &BuildOptions, sink: &EventSink) -> ImportedCaches {
        let locations: Vec<CacheLocation> = opts
            .cache_from
            .iter()
            .filter_map(|c| match c {
                CacheImportSpec::Cache(location) => Some(location.clone()),
                CacheImportSpec::Image(_) => None,
            })
            .collect();
        let warn = |message: String| sink(&BuildEvent::Warning { message });
        let imported = ImportedCaches::open(&locations, &opts.registry, &warn);
        for (location, records, mounts) in imported.summary() {
            sink(&BuildEvent::CacheTransfer {
                location: location.clone(),
                message: format!("importing cache {location}: {records} records, {mounts} cache mounts"),
            });
        }
        imported
    }

    /// The images of the classic `--cache-from IMAGE`s: from the store, else pulled. One that
    /// cannot be had is a warning, as the classic builder goes on without it.
    fn classic_sources(&self, opts: &BuildOptions, sink: &EventSink) -> Result<ClassicSources, BuildError> {
        let mut images = Vec::new();
        for spec in &opts.cache_from {
            let CacheImportSpec::Image(name) = spec else { continue };
            let image = match self.store.resolve(name) {
                Ok(image) => image,
                Err(crate::store::StoreError::NoSuchImage(_)) => {
                    let mut on = |e: &crate::registry::PullEvent| {
                        if let Some(message) = e.message() {
                            sink(&BuildEvent::Pull { reference: name.clone(), message });
                        }
                    };
                    match crate::registry::pull(&self.store, name, &opts.registry, &mut on) {
                        Ok(pulled) => pulled.image,
                        Err(e) => {
                            sink(&BuildEvent::Warning {
                                message: format!("--cache-from {name}: {e}; building without it"),
                            });
                            continue;
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            };
            images.push(image);
        }
        Ok(ClassicSources { images })
    }
}

/// Writes every `--cache-to`; a failure fails the build unless its spec says `ignore-error`.
fn export_caches(request: &ExportRequest, specs: &[CacheExportSpec], sink: &EventSink) -> Result<(), BuildError> {
    for spec in specs {
        let location = spec.location.to_string();
        match export(request, spec) {
            Ok((records, mounts, outcome)) => sink(&BuildEvent::CacheTransfer {
                location: location.clone(),
                message: format!(
                    "exporting cache to {location}: {records} records, {mounts} cache mounts; blobs: {} uploaded, {} mounted, {} already there; manifest {}",
                    outcome.uploaded, outcome.mounted, outcome.existing, outcome.manifest_digest
                ),
            }),
            Err(e) if spec.ignore_error => {
                sink(&BuildEvent::Warning { message: format!("exporting cache to {location} failed (ignored): {e}") })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `FROM --platform=…` must name the platform the build runs on: steps run natively, and
/// without emulation a foreign image's RUN could not run (Docker would pull the foreign
/// variant and emulate it). A build that quietly used the native image instead would produce
/// an image for the wrong platform.
fn check_stage_platform(stage: &crate::plan::Stage, native: &Platform) -> Result<(), BuildError> {
    let Some(text) = &stage.platform else { return Ok(()) };
    let step = stage.steps.first().map_or(0, |s| s.number);
    let wanted = Platform::parse(text).map_err(|e| BuildError::Step { step, message: e.to_string() })?;
    let variant_differs = matches!((&wanted.variant, &native.variant), (Some(a), Some(b)) if a != b);
    if wanted.os != native.os || wanted.arch != native.arch || variant_differs {
        return Err(BuildError::ForeignPlatform { step, platform: wanted.to_string(), native: native.to_string() });
    }
    Ok(())
}

/// Stages that other stages build on or copy from.
fn stages_read_by_others(plan: &crate::plan::BuildPlan) -> BTreeSet<usize> {
    plan.stages
        .iter()
        .flat_map(|s| &s.dependencies)
        .filter_map(|d| match d {
            Dependency::Stage { index } => Some(*index),
            _ => None,
        })
        .collect()
}

/// The proxy variables every RUN sees: the environment's, and `--build-arg`s over them.
fn proxy_args(opts: &BuildOptions) -> BTreeMap<String, String> {
    let from_args = opts.build_args.iter().filter(|(k, _)| crate::frontend::lower::PROXY_ARGS.contains(&k.as_str()));
    opts.settings.proxy_env.clone().into_iter().chain(from_args.map(|(k, v)| (k.clone(), v.clone()))).collect()
}

/// A tag as `docker build` prints it (`app:1`, `app:latest`).
fn display_tag(tag: &str) -> String {
    if tag.rsplit('/').next().is_some_and(|last| last.contains(':')) || tag.contains('@') {
        tag.to_string()
    } else {
        format!("{tag}:latest")
    }
}
