//! Build plans: the stages and steps a Dockerfile lowers to, and the cache key of every step.
//!
//! A [`BuildPlan`] is pure data: it runs nothing and reads nothing. The engine walks it, looks
//! each step's [`CacheKey`] up in the store and records new keys. The inputs of every key are
//! kept ([`CacheKeyInputs`]) so that a later miss can be explained against the recorded inputs
//! ([`explain_miss`]).

mod cache_key;
mod container;
pub mod entitlements;
pub mod instruction;

pub use cache_key::{explain_miss, CacheKey, CacheKeyInputs, MissReason, SourceInputs};
pub use container::{NetworkMode, OutputStream};

use std::collections::BTreeMap;

use instruction::Instruction;

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageBase {
    /// `FROM scratch`: an empty filesystem and an empty config.
    Scratch,
    /// An image reference, as written after expansion (`busybox`, `localhost:5000/a/b:t`), and
    /// the image ID it named when the plan was made: the stage runs on that image even if the
    /// tag moves or is removed meanwhile (a leased image outlives `rmi -f` of its tag).
    Image { reference: String, id: Option<String> },
    /// An earlier stage of the same Dockerfile, by index.
    Stage { index: usize },
}

/// Something a stage needs before it can run, beyond its own base.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Dependency {
    /// An earlier stage (`FROM <stage>`, `COPY --from=<stage>`, `RUN --mount=from=<stage>`).
    Stage { index: usize },
    /// An image that is not a stage (`COPY --from=nginx:latest`).
    Image { reference: String },
}

/// One build stage: a FROM and the steps up to the next FROM.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stage {
    pub index: usize,
    /// The `AS name`, lower-cased as Docker compares stage names.
    pub name: Option<String>,
    pub base: StageBase,
    /// `FROM --platform=…` after expansion.
    pub platform: Option<String>,
    /// Stages and images this stage reads, including its base when that is a stage.
    pub dependencies: Vec<Dependency>,
    /// The steps, starting with the FROM step itself.
    pub steps: Vec<Step>,
}

impl Stage {
    /// The name shown to users: `builder`, or the index when the stage has no name.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }

    /// The cache key of the last step, which identifies the stage's result.
    pub fn final_key(&self) -> Option<&CacheKey> {
        self.steps.last().map(|s| &s.cache_key)
    }
}

/// One instruction of a stage, ready to run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    /// 1-based position among all steps of the planned stages, as `Step 3/7` counts them.
    pub number: usize,
    /// Where the instruction stands in the Dockerfile.
    pub line: usize,
    pub end_line: usize,
    /// The instruction as written (the logical line).
    pub original: String,
    /// The instruction in canonical form after expansion; part of the cache key.
    pub canonical: String,
    /// The typed instruction after expansion.
    pub instruction: Instruction,
    /// Build args this step can see, with their values (what RUN gets in its environment and
    /// what expansion used). Proxy args are left out, as Docker leaves them out of the cache.
    pub build_args: BTreeMap<String, String>,
    pub cache_key: CacheKey,
    pub key_inputs: CacheKeyInputs,
}

/// An ARG before the first FROM. Classic `docker build` counts it as a step (`Step 1/5 : ARG
/// X=1`) that prints nothing more; it has no image and no cache key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GlobalArgStep {
    /// 1-based, before every stage's steps.
    pub number: usize,
    pub line: usize,
    /// The instruction as written (the logical line).
    pub original: String,
}

/// A lowered Dockerfile: the stages the target needs, in Dockerfile order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BuildPlan {
    /// The Dockerfile's display name.
    pub file: String,
    /// All stages of the Dockerfile, in order. Stages that the target does not need are kept
    /// (indices stay stable) but marked in [`BuildPlan::needed`].
    pub stages: Vec<Stage>,
    /// `needed[i]` is true when stage `i` must be built for the target.
    pub needed: Vec<bool>,
    /// Index of the target stage (the last stage unless `--target` named another).
    pub target: usize,
    /// ARGs declared before the first FROM, with their values after `--build-arg`.
    pub global_args: BTreeMap<String, Option<String>>,
    /// The ARG instructions before the first FROM, numbered as the first steps.
    pub global_arg_steps: Vec<GlobalArgStep>,
    /// `--build-arg` names that no planned stage declared (Docker's "were not consumed").
    pub unconsumed_build_args: Vec<String>,
    /// Non-fatal findings: parser warnings and lowering warnings, already formatted.
    pub warnings: Vec<String>,
}

impl BuildPlan {
    /// The stages that must be built, in an order where every stage comes after what it needs.
    pub fn planned_stages(&self) -> impl Iterator<Item = &Stage> {
        self.stages.iter().filter(|s| self.needed.get(s.index).copied().unwrap_or(false))
    }

    /// Number of steps that will run (the `M` in `Step N/M`), counting the ARGs before the
    /// first FROM as classic `docker build` does.
    pub fn step_count(&self) -> usize {
        self.global_arg_steps.len() + self.planned_stages().map(|s| s.steps.len()).sum::<usize>()
    }
}
