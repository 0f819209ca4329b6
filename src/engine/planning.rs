//! The front half of every build, shared by `build` and `build --dry-run` (BuildKit's
//! `toDispatchState` shape): [`plan_build`] lowers the parsed Dockerfile with the base
//! images the store has ([`StoreImages`]: manifest digests for the FROM keys, ENV and ONBUILD
//! for expansion), pulls what is missing when the policy allows and lowers again. A dry run
//! uses the same images without pulling, so its cache keys are the ones a build computes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::context::BuildContext;
use crate::engine::executor::EventSink;
use crate::engine::sources::ContextSources;
use crate::engine::BuildError;
use crate::events::BuildEvent;
use crate::frontend::ast::Dockerfile;
use crate::frontend::lower::{lower, ImageResolver, LowerOptions, Platform, ResolvedImage};
use crate::plan::{BuildPlan, Dependency, StageBase};
use crate::registry::RegistryOptions;
use crate::store::{ImageReference, ImageStore, StoreError};

/// When base images are pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Never (a dry run): a missing image keeps its reference in the keys.
    Never,
    /// Only those missing from the store (Docker's default).
    Missing,
    /// Every base image (`--pull`).
    Always,
}

/// Looks base images up in the store for lowering (manifest digest for the FROM step's cache
/// key, ENV for expansion). [`StoreImages::pull_needed`] pulls those the planned stages need
/// that are missing from the store (all of them with `--pull`), once per build; failures are
/// kept for [`plan_build`] to report.
pub struct StoreImages<'a> {
    store: &'a ImageStore,
    policy: PullPolicy,
    registry: RegistryOptions,
    /// reference -> the pull's error, for every reference a pull was tried for.
    pulls: Mutex<BTreeMap<String, Option<String>>>,
    /// Where the pull's progress goes (`pull` events).
    events: EventSink,
}

impl<'a> StoreImages<'a> {
    pub fn new(store: &'a ImageStore, policy: PullPolicy, registry: RegistryOptions, events: EventSink) -> Self {
        StoreImages { store, policy, registry, pulls: Mutex::new(BTreeMap::new()), events }
    }

    /// Pulls `reference` unless it was tried already in this build.
    fn pull_once(&self, reference: &str) {
        let Ok(mut pulls) = self.pulls.lock() else { return };
        if pulls.contains_key(reference) {
            return;
        }
        let events = &self.events;
        let mut on = |e: &crate::registry::PullEvent| {
            if let Some(message) = e.message() {
                events(&BuildEvent::Pull { reference: reference.to_string(), message });
            }
        };
        let result = crate::registry::pull(self.store, reference, &self.registry, &mut on);
        if let Ok(outcome) = &result {
            let status = if outcome.up_to_date { "Image is up to date for" } else { "Downloaded newer image for" };
            let message = format!("Status: {status} {}", outcome.reference.familiar());
            events(&BuildEvent::Pull { reference: reference.to_string(), message });
        }
        pulls.insert(reference.to_string(), result.err().map(|e| e.to_string()));
    }

    /// The first pull that failed.
    fn failed_pull(&self) -> Option<(String, String)> {
        let pulls = self.pulls.lock().ok()?;
        pulls.iter().find_map(|(r, e)| e.clone().map(|e| (r.clone(), e)))
    }

    /// Pulls the images the planned stages build on or copy from, where needed. Returns
    /// whether anything was tried (the plan must then be lowered again: digests, ENV and
    /// ONBUILD triggers of the bases may have changed).
    fn pull_needed(&self, plan: &BuildPlan) -> bool {
        if self.policy == PullPolicy::Never {
            return false;
        }
        let mut tried = false;
        for reference in needed_images(plan) {
            // Only names can be pulled; an image ID (`sha256:…`, a short ID) is local.
            let name = ImageReference::parse(&reference).ok();
            // A damaged local image is reported (by the resolve in the executor), not pulled over.
            let missing = || matches!(self.store.resolve(&reference), Err(StoreError::NoSuchImage(_)));
            if name.is_some() && (self.policy == PullPolicy::Always || missing()) {
                self.pull_once(&reference);
                tried = true;
            }
        }
        tried
    }
}

/// The images (not stages) the planned stages build on or copy from.
fn needed_images(plan: &BuildPlan) -> BTreeSet<String> {
    let mut references = BTreeSet::new();
    for stage in plan.planned_stages() {
        if let StageBase::Image { reference, .. } = &stage.base {
            references.insert(reference.clone());
        }
        for dep in &stage.dependencies {
            if let Dependency::Image { reference } = dep {
                references.insert(reference.clone());
            }
        }
    }
    references
}

/// The base images of the planned stages that lowering could not find in the store, each once:
/// their FROM keys name the reference (`image:busybox`), not a manifest digest.
pub fn unresolved_bases(plan: &BuildPlan) -> Vec<String> {
    let mut seen = BTreeSet::new();
    plan.planned_stages()
        .filter_map(|s| match &s.base {
            StageBase::Image { reference, id: None } if seen.insert(reference.as_str()) => Some(reference.clone()),
            _ => None,
        })
        .collect()
}

impl ImageResolver for StoreImages<'_> {
    fn resolve(&self, reference: &str) -> Option<ResolvedImage> {
        let name = ImageReference::parse(reference).ok();
        let image = self.store.resolve(reference).ok()?;
        // The manifest the tag points at: a newer pulled base changes it, and so the key.
        let digest = name
            .filter(|n| n.digest().is_none())
            .and_then(|n| self.store.tagged_manifest(&n).ok().flatten())
            .unwrap_or_else(|| image.manifest_digest.clone());
        let config = &image.config;
        Some(ResolvedImage {
            digest: digest.to_string(),
            id: image.id.to_string(),
            env: config.env_pairs(),
            on_build: config.config.on_build.clone(),
        })
    }
}

/// What the front half needs: the parsed Dockerfile, the opened context
/// (walked once, on first use, and shared with the executor), and the flags lowering takes.
pub struct PlanRequest<'a> {
    /// The parsed Dockerfile and its text.
    pub dockerfile: &'a Dockerfile,
    pub dockerfile_text: &'a str,
    pub context: &'a BuildContext,
    pub build_args: &'a BTreeMap<String, String>,
    pub target: Option<&'a str>,
    /// The platform the stages are for (`TARGETPLATFORM`); the build's own is the native one.
    pub target_platform: Platform,
}

/// Lowers the Dockerfile with `images` (none: a dry run without a store), pulling
/// what the policy asks for and lowering again when a pull was tried; a failed pull is the
/// error.
pub fn plan_build(request: &PlanRequest, images: Option<&StoreImages>) -> Result<BuildPlan, BuildError> {
    let df = request.dockerfile;
    let sources = ContextSources::new(request.context);
    let lower_opts = LowerOptions {
        build_args: request.build_args.clone(),
        target: request.target.map(str::to_string),
        target_platform: request.target_platform.clone(),
        build_platform: Platform::native(),
        images: images.map(|i| i as &dyn ImageResolver),
        sources: Some(&sources),
    };
    // Lowered once to know which stages (and so which base images) the target needs, and
    // again if pulling them changed the store.
    let mut plan = lower(df, request.dockerfile_text, &lower_opts)?;
    let Some(images) = images else { return Ok(plan) };
    if images.pull_needed(&plan) {
        plan = lower(df, request.dockerfile_text, &lower_opts)?;
    }
    if let Some((reference, error)) = images.failed_pull() {
        let reason = if images.store.resolve(&reference).is_ok() {
            format!("--pull could not check the registry for a newer image: {error}")
        } else {
            format!("the image is not in the local store and pulling it failed: {error}")
        };
        return Err(BuildError::BaseImageMissing { reference, reason });
    }
    Ok(plan)
}

/// An event sink that drops everything (a dry run pulls nothing).
pub fn no_events() -> EventSink {
    Arc::new(|_: &BuildEvent| {})
}
