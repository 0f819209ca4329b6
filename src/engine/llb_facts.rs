//! What lowering to LLB ([`crate::llb`]) needs from the engine beside the plan: the image
//! config each step leaves (base configs read from the store, instructions applied by
//! [`crate::engine::config`] as a build applies them) and the argv of every RUN (through the
//! SHELL, heredocs included, as [`crate::engine::run_step::run_argv`] runs it).

use crate::engine::config::{
    apply_config_instruction, inherit_image_config, inherit_stage_config, scratch_stage_config, StageConfigState,
};
use crate::engine::executor::NOT_IN_STORE;
use crate::engine::run_step::run_argv;
use crate::engine::BuildError;
use crate::frontend::instructions::Instruction;
use crate::image::{ImageConfig, Platform};
use crate::llb::{PlanFacts, StepFacts};
use crate::plan::{BuildPlan, Stage, StageBase};
use crate::store::{ImageStore, StoreError};

/// The facts of every planned stage's steps; base images must be in `store`.
pub fn plan_facts(plan: &BuildPlan, store: &ImageStore, platform: &Platform) -> Result<PlanFacts, BuildError> {
    let mut facts = PlanFacts::new();
    for stage in plan.planned_stages() {
        let base = base_config(stage, &facts, store, platform)?;
        let mut state = StageConfigState::default();
        let mut steps = Vec::with_capacity(stage.steps.len());
        let mut config = base;
        for (position, step) in stage.steps.iter().enumerate() {
            let mut after = config.clone();
            let mut argv = None;
            if position > 0 {
                if let Instruction::Run(run) = &step.instruction {
                    argv = Some(run_argv(&config, run));
                }
                apply_config_instruction(&mut after, &mut state, &step.instruction);
            }
            steps.push(StepFacts { config: after.clone(), run_argv: argv });
            config = after;
        }
        facts.insert(stage.index, steps);
    }
    Ok(facts)
}

/// The config a stage starts from, as the executor's base state has it.
fn base_config(
    stage: &Stage,
    done: &PlanFacts,
    store: &ImageStore,
    platform: &Platform,
) -> Result<ImageConfig, BuildError> {
    match &stage.base {
        StageBase::Scratch => Ok(scratch_stage_config(platform)),
        StageBase::Stage { index } => {
            let mut config =
                done.get(index).and_then(|steps| steps.last()).map(|s| s.config.clone()).ok_or_else(|| {
                    BuildError::Internal(format!("stage {index} was not lowered before its dependant"))
                })?;
            inherit_stage_config(&mut config);
            Ok(config)
        }
        StageBase::Image { reference, id } => {
            let image = store.resolve(id.as_deref().unwrap_or(reference)).map_err(|e| match e {
                StoreError::NoSuchImage(_) => {
                    BuildError::BaseImageMissing { reference: reference.clone(), reason: NOT_IN_STORE.into() }
                }
                e => BuildError::Store(e),
            })?;
            let mut config = image.config.clone();
            inherit_image_config(&mut config);
            Ok(config)
        }
    }
}
