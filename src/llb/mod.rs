//! Lowering a [`BuildPlan`] to BuildKit's LLB (`pb.Definition`), the low-level build graph a
//! BuildKit daemon solves, shaped as BuildKit's own Dockerfile frontend shapes it: FROM is a
//! `docker-image://` source, the context a `local://context` source carrying `.dockerignore`
//! as exclude patterns, RUN an exec op (argv, env, cwd, user, network, mounts for the root
//! filesystem and every `RUN --mount`), COPY/ADD and WORKDIR file ops (chown, chmod), stages
//! the ops their dependants read, and the image config the exporter writes
//! (`containerimage.config`, as the frontend hands it to the exporter).
//!
//! The protos are `bollard-buildkit-proto`'s (BuildKit's own `.proto` files on current prost);
//! the graph is built here because no maintained Rust crate offers BuildKit's Go `llb` client.
//! What the plan does not hold (each step's image config, a RUN's argv through the SHELL) the
//! engine supplies as [`StepFacts`], so this module never re-derives them.

mod exec;
mod files;
mod graph;

use std::collections::BTreeMap;

pub use bollard_buildkit_proto::pb;
pub use graph::{op_digest, CapRequirement, Output};

use crate::context::BuildContext;
use crate::image::{ImageConfig, Platform};
use crate::plan::instruction::Instruction;
use crate::plan::{BuildPlan, Dependency, NetworkMode, Stage, StageBase, Step};
use crate::store::ImageReference;
use graph::{Graph, OpOrigin};

/// The key of the terminal op's description that carries the image config JSON, and the
/// exporter attribute BuildKit's image exporters read it from.
pub const IMAGE_CONFIG_KEY: &str = "containerimage.config";

/// Why a plan cannot be lowered to LLB.
#[derive(Debug, thiserror::Error)]
pub enum LlbError {
    /// An instruction LLB lowering does not cover; names the Dockerfile line.
    #[error("{file}:{line}: {instruction}: {reason}")]
    Unsupported { file: String, line: usize, instruction: String, reason: String },
    /// The engine's facts do not cover a planned step (a bug, not a user error).
    #[error("no image config for stage {stage} step {step}")]
    MissingFacts { stage: usize, step: usize },
    #[error("the image config cannot be encoded: {0}")]
    Config(#[from] serde_json::Error),
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
}

impl LlbError {
    /// `step` (in `file`) has no lowering, for `reason`.
    fn unsupported(file: &str, step: &Step, reason: &str) -> LlbError {
        LlbError::Unsupported {
            file: file.to_string(),
            line: step.line,
            instruction: step.original.clone(),
            reason: reason.to_string(),
        }
    }
}

/// What the engine knows of one planned step beyond the plan.
#[derive(Debug, Clone)]
pub struct StepFacts {
    /// The image config after the step (for the FROM step: the inherited base config).
    pub config: ImageConfig,
    /// RUN only: the argv it runs (exec form, or the SHELL with the command or heredoc).
    pub run_argv: Option<Vec<String>>,
}

/// Facts for every step of every planned stage: `facts[stage index][step position]`.
pub type PlanFacts = BTreeMap<usize, Vec<StepFacts>>;

/// What lowering reads.
pub struct LlbRequest<'a> {
    pub plan: &'a BuildPlan,
    pub facts: &'a PlanFacts,
    /// The build context (its `.dockerignore` patterns become the local source's excludes).
    pub context: &'a BuildContext,
    /// The Dockerfile's display name and text, kept as the Definition's source.
    pub dockerfile: (&'a str, &'a str),
    /// The network of RUN steps without `--network`: [`NetworkMode::Default`] leaves BuildKit's
    /// default (a sandbox with outbound access, as `docker build` gives).
    pub network: NetworkMode,
    pub platform: Platform,
}

/// A lowered build.
#[derive(Debug, Clone)]
pub struct LlbDefinition {
    pub definition: pb::Definition,
    /// The target's image config, as the exporter should write it.
    pub image_config: ImageConfig,
    /// The capabilities the ops need, each with the first instruction needing it.
    pub requirements: Vec<CapRequirement>,
    /// The plan step (`Step N/M` number) of each op digest that belongs to a step.
    pub steps: BTreeMap<String, usize>,
}

impl LlbDefinition {
    /// The Definition's protobuf bytes (what `buildctl build` reads on stdin).
    pub fn encode(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.definition)
    }

    /// The entitlements a solve of this definition must ask for: `network.host` when a RUN
    /// uses the host's network, `security.insecure` when one runs insecure (as buildx's
    /// `--allow` names them; BuildKit refuses such ops without them).
    pub fn entitlements(&self) -> Vec<String> {
        let mut wanted = std::collections::BTreeSet::new();
        for bytes in &self.definition.def {
            let Ok(op) = <pb::Op as prost::Message>::decode(bytes.as_slice()) else { continue };
            let Some(pb::op::Op::Exec(exec)) = op.op else { continue };
            if exec.network == pb::NetMode::Host as i32 {
                wanted.insert("network.host");
            }
            if exec.security == pb::SecurityMode::Insecure as i32 {
                wanted.insert("security.insecure");
            }
        }
        wanted.into_iter().map(String::from).collect()
    }
}

/// The capabilities in `requirements` that a worker announcing `caps` lacks: for each, the
/// instruction that needs a newer BuildKit.
pub fn missing_caps<'r>(
    requirements: &'r [CapRequirement],
    caps: &std::collections::BTreeSet<String>,
) -> Vec<&'r CapRequirement> {
    requirements.iter().filter(|r| !caps.contains(&r.cap)).collect()
}

/// A stage's filesystem so far: `None` is scratch (an empty filesystem).
pub(crate) type Fs = Option<Output>;

/// State shared by the lowering of every stage.
pub(crate) struct Lowering<'a> {
    pub request: &'a LlbRequest<'a>,
    pub graph: Graph,
    /// The result of every lowered stage.
    pub stages: BTreeMap<usize, Fs>,
    /// The `local://context` source, made on first use.
    pub context: Option<Output>,
    pub platform: pb::Platform,
}

/// Lowers the plan's target and the stages it needs.
pub fn lower_plan(request: &LlbRequest) -> Result<LlbDefinition, LlbError> {
    let platform = pb::Platform {
        architecture: request.platform.arch.clone(),
        os: request.platform.os.clone(),
        variant: request.platform.variant.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mut lowering = Lowering { request, graph: Graph::default(), stages: BTreeMap::new(), context: None, platform };
    let mut image_config = None;
    for stage in request.plan.planned_stages() {
        let (fs, config) = lowering.stage(stage)?;
        lowering.stages.insert(stage.index, fs);
        if stage.index == request.plan.target {
            image_config = Some(config);
        }
    }
    let target = request.plan.target;
    let image_config = image_config.ok_or(LlbError::MissingFacts { stage: target, step: 0 })?;
    let result = lowering.stages.get(&target).cloned().flatten();
    let requirements = lowering.graph.requirements();
    let steps = lowering.graph.steps();
    let mut description = BTreeMap::new();
    description.insert(IMAGE_CONFIG_KEY.to_string(), String::from_utf8_lossy(&image_config.to_json()?).into_owned());
    let definition = lowering.graph.finish(result.as_ref(), request.dockerfile, description);
    Ok(LlbDefinition { definition, image_config, requirements, steps })
}

impl Lowering<'_> {
    /// Lowers one stage: its filesystem result and its final image config.
    fn stage(&mut self, stage: &Stage) -> Result<(Fs, ImageConfig), LlbError> {
        let facts = self
            .request
            .facts
            .get(&stage.index)
            .filter(|f| f.len() == stage.steps.len())
            .ok_or(LlbError::MissingFacts { stage: stage.index, step: 0 })?;
        let mut fs = self.base(stage)?;
        let mut config = facts.first().map(|f| f.config.clone());
        for (position, step) in stage.steps.iter().enumerate().skip(1) {
            let before = config.as_ref().ok_or(LlbError::MissingFacts { stage: stage.index, step: position })?;
            let origin = self.origin(stage, position, step);
            let fact = &facts[position];
            fs = match &step.instruction {
                Instruction::Run(run) => Some(self.run(stage, step, run, before, fact, fs, &origin)?),
                Instruction::Copy(fc) | Instruction::Add(fc) => Some(self.copy(stage, step, fc, before, fs, &origin)?),
                Instruction::Workdir { .. } => Some(self.workdir(&fact.config, before, fs, &origin)),
                _ => fs,
            };
            config = Some(fact.config.clone());
        }
        let config = config.ok_or(LlbError::MissingFacts { stage: stage.index, step: 0 })?;
        let mut config = config;
        add_history(&mut config, stage, facts);
        Ok((fs, config))
    }

    /// What a stage starts from.
    fn base(&mut self, stage: &Stage) -> Result<Fs, LlbError> {
        match &stage.base {
            StageBase::Scratch => Ok(None),
            StageBase::Stage { index } => Ok(self.stages.get(index).cloned().flatten()),
            StageBase::Image { reference, .. } => {
                let from = stage.steps.first();
                let origin = OpOrigin {
                    name: format!(
                        "[{} 1/{}] FROM {}",
                        stage_label(stage),
                        stage.steps.len(),
                        image_identifier(reference)
                    ),
                    lines: from.map(|s| (s.line, s.end_line)),
                    instruction: from.map(|s| s.original.clone()).unwrap_or_default(),
                    caps: vec!["source.image"],
                    step: from.map(|s| s.number),
                };
                Ok(Some(self.image_source(reference, &origin)))
            }
        }
    }

    /// A `docker-image://` source for `reference`.
    pub(crate) fn image_source(&mut self, reference: &str, origin: &OpOrigin) -> Output {
        let op = pb::Op {
            op: Some(pb::op::Op::Source(pb::SourceOp {
                identifier: format!("docker-image://{}", image_identifier(reference)),
                attrs: BTreeMap::new(),
            })),
            platform: Some(self.platform.clone()),
            constraints: Some(pb::WorkerConstraints::default()),
            ..Default::default()
        };
        self.graph.add(op, origin)
    }

    /// The op's name in BuildKit's progress and where it came from.
    fn origin(&self, stage: &Stage, position: usize, step: &Step) -> OpOrigin {
        OpOrigin {
            name: format!("[{} {}/{}] {}", stage_label(stage), position + 1, stage.steps.len(), step.canonical),
            lines: Some((step.line, step.end_line)),
            instruction: step.original.clone(),
            caps: Vec::new(),
            step: Some(step.number),
        }
    }

    /// The filesystem of what a `--from` names: an earlier stage, else an image.
    pub(crate) fn source_named(&mut self, stage: &Stage, from: &str, origin: &OpOrigin) -> Fs {
        let wanted = from.to_ascii_lowercase();
        let plan = self.request.plan;
        let named = stage.dependencies.iter().find_map(|dep| match dep {
            Dependency::Stage { index } => {
                let s = plan.stages.get(*index)?;
                (s.name.as_deref() == Some(wanted.as_str()) || index.to_string() == wanted).then_some(*index)
            }
            Dependency::Image { .. } => None,
        });
        match named {
            Some(index) => self.stages.get(&index).cloned().flatten(),
            None => {
                let origin = OpOrigin { caps: vec!["source.image"], ..origin.clone() };
                Some(self.image_source(from, &origin))
            }
        }
    }

    /// The `local://context` source, with `.dockerignore` as exclude patterns.
    pub(crate) fn context_source(&mut self) -> Output {
        if let Some(out) = &self.context {
            return out.clone();
        }
        let excludes: Vec<String> = self
            .request
            .context
            .matcher()
            .patterns()
            .iter()
            .map(|p| if p.exception { format!("!{}", p.text) } else { p.text.clone() })
            .collect();
        let mut attrs = BTreeMap::new();
        attrs.insert("local.sharedkeyhint".to_string(), "context".to_string());
        let mut caps = vec!["source.local", "source.local.sharedkeyhint"];
        if !excludes.is_empty() {
            attrs.insert("local.excludepatterns".to_string(), serde_json::to_string(&excludes).unwrap_or_default());
            caps.push("source.local.excludepatterns");
        }
        let op = pb::Op {
            op: Some(pb::op::Op::Source(pb::SourceOp { identifier: "local://context".to_string(), attrs })),
            constraints: Some(pb::WorkerConstraints::default()),
            ..Default::default()
        };
        let origin = OpOrigin { name: "[internal] load build context".to_string(), caps, ..Default::default() };
        let out = self.graph.add(op, &origin);
        self.context = Some(out.clone());
        out
    }

    /// The Dockerfile file name, for errors.
    pub(crate) fn file(&self) -> String {
        self.request.dockerfile.0.to_string()
    }
}

/// `docker.io/library/busybox:latest` for `busybox`: BuildKit resolves only full names.
pub fn image_identifier(reference: &str) -> String {
    match ImageReference::parse(reference) {
        Ok(r) => r.with_default_tag().to_string(),
        Err(_) => reference.to_string(),
    }
}

/// `stage-1` or the stage's name, as BuildKit labels steps.
fn stage_label(stage: &Stage) -> String {
    stage.name.clone().unwrap_or_else(|| format!("stage-{}", stage.index))
}

/// The history the frontend adds for every instruction after FROM: `created_by` worded as
/// BuildKit words it, `empty_layer` for the ones that change no file.
fn add_history(config: &mut ImageConfig, stage: &Stage, facts: &[StepFacts]) {
    for (step, fact) in stage.steps.iter().zip(facts).skip(1) {
        let (created_by, empty) = match (&step.instruction, &fact.run_argv) {
            (Instruction::Run(_), Some(argv)) => (format!("RUN {}", argv.join(" ")), false),
            (Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir { .. }, _) => {
                (step.canonical.clone(), false)
            }
            _ => (step.canonical.clone(), true),
        };
        config.history.push(crate::image::HistoryEntry {
            created: None,
            created_by: Some(created_by),
            author: None,
            comment: Some("buildkit.dockerfile.v0".to_string()),
            empty_layer: empty,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_named_in_full_as_buildkit_resolves_them() {
        assert_eq!(image_identifier("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(image_identifier("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
    }

    #[test]
    fn a_worker_without_a_cap_names_the_instruction_that_needs_it() {
        let need = |cap: &str, line| CapRequirement {
            cap: cap.to_string(),
            line,
            instruction: format!("instruction on line {line}"),
        };
        let requirements = vec![need("exec.mount.cache", 7), need("file.base", 5), need("mergeop", 9)];
        let worker: std::collections::BTreeSet<String> =
            ["exec.mount.cache", "file.base"].iter().map(|s| s.to_string()).collect();
        let missing = missing_caps(&requirements, &worker);
        assert_eq!(missing.len(), 1);
        assert_eq!((missing[0].cap.as_str(), missing[0].line), ("mergeop", 9));
    }

    #[test]
    fn host_network_and_insecure_runs_ask_for_their_entitlements() {
        let exec = |network: pb::NetMode, security: pb::SecurityMode| {
            let op = pb::Op {
                op: Some(pb::op::Op::Exec(pb::ExecOp {
                    network: network as i32,
                    security: security as i32,
                    ..Default::default()
                })),
                ..Default::default()
            };
            prost::Message::encode_to_vec(&op)
        };
        let definition = |def: Vec<Vec<u8>>| LlbDefinition {
            definition: pb::Definition { def, ..Default::default() },
            image_config: ImageConfig::scratch("linux", "amd64", None),
            requirements: Vec::new(),
            steps: BTreeMap::new(),
        };
        let plain = definition(vec![exec(pb::NetMode::Unset, pb::SecurityMode::Sandbox)]);
        assert!(plain.entitlements().is_empty());
        let both = definition(vec![
            exec(pb::NetMode::Host, pb::SecurityMode::Sandbox),
            exec(pb::NetMode::None, pb::SecurityMode::Insecure),
            exec(pb::NetMode::Host, pb::SecurityMode::Sandbox),
        ]);
        assert_eq!(both.entitlements(), ["network.host", "security.insecure"]);
    }
}
