//! `rbuild build [OPTIONS] CONTEXT` (and the short form `rbuild -t name:tag CONTEXT`).
//!
//! `--dry-run` lowers the Dockerfile and prints the stages and steps with their expanded
//! instruction and cache key, plus the context's file count and size; it needs no root and
//! touches no store. Running the steps comes with the build engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;

use crate::cli::units::human_size_4 as human_size;
use crate::cli::{InternalError, Printer};
use crate::context::BuildContext;
use crate::engine::sources::ContextSources;
use crate::frontend::lower::{lower, LowerOptions, Platform};
use crate::frontend::parser;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (`name:tag`); may be repeated
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads stdin)
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Set a build-time variable (`NAME=VALUE`, or `NAME` to take it from the environment)
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    build_args: Vec<String>,
    /// Build only up to this stage
    #[arg(long)]
    target: Option<String>,
    /// Target platform (only the native platform can run)
    #[arg(long)]
    platform: Option<String>,
    /// Print the plan (stages, steps, expanded instructions, cache keys) without building
    #[arg(long)]
    dry_run: bool,
    /// The build context directory
    #[arg(default_value = ".")]
    context: PathBuf,
}

pub fn run(args: BuildArgs, printer: &mut Printer) -> anyhow::Result<()> {
    if !args.dry_run {
        return Err(InternalError(
            "running build steps is not available in this version yet; `rbuild build --dry-run` prints the plan".into(),
        )
        .into());
    }
    let dockerfile = args.file.clone().unwrap_or_else(|| args.context.join("Dockerfile"));
    let (name, text) = super::read_dockerfile(&dockerfile)?;
    let df = parser::parse(&text, &name)?;
    let ignore_anchor = (dockerfile != Path::new("-")).then_some(dockerfile.as_path());
    let context = BuildContext::open(&args.context, ignore_anchor)
        .with_context(|| format!("opening the build context {}", args.context.display()))?;
    let summary = context.summary()?;
    let sources = ContextSources::new(&context);
    let mut opts = LowerOptions {
        build_args: parse_build_args(&args.build_args)?,
        target: args.target.clone(),
        sources: Some(&sources),
        ..LowerOptions::default()
    };
    if let Some(p) = &args.platform {
        opts.target_platform = Platform::parse(p).map_err(anyhow::Error::msg)?;
    }
    let plan = lower(&df, &text, &opts)?;
    for warning in &plan.warnings {
        printer.warn(warning);
    }
    let ignore = match &context.ignore_file {
        Some(path) => format!("after {}", path.display()),
        None => "no .dockerignore".to_string(),
    };
    printer.line(format!(
        "Build context {}: {} files, {} ({ignore})",
        args.context.display(),
        summary.files,
        human_size(summary.bytes)
    ))?;
    let total = plan.step_count();
    for stage in &plan.stages {
        let needed = plan.needed.get(stage.index).copied().unwrap_or(false);
        let base = match &stage.base {
            crate::plan::StageBase::Scratch => "scratch".to_string(),
            crate::plan::StageBase::Image { reference } => reference.clone(),
            crate::plan::StageBase::Stage { index } => format!("stage {index}"),
        };
        let status = if needed { "" } else { " (skipped: the target does not need it)" };
        let name = stage.name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
        printer.line(format!("Stage {}{name} from {base}{status}", stage.index))?;
        if !needed {
            continue;
        }
        for step in &stage.steps {
            printer.line(format!("Step {}/{} : {}", step.number, total, step.original))?;
            if step.canonical != step.original {
                printer.line(format!("  expanded: {}", step.canonical))?;
            }
            for (k, v) in &step.build_args {
                printer.line(format!("  build arg: {k}={v}"))?;
            }
            printer.line(format!("  cache key: {}", step.cache_key))?;
        }
    }
    if !args.tags.is_empty() {
        printer.line(format!("Would tag: {}", args.tags.join(", ")))?;
    }
    Ok(())
}

/// `--build-arg NAME=VALUE`, or `NAME` alone to take the value from the environment (and skip
/// it when unset), as docker does.
fn parse_build_args(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in raw {
        match item.split_once('=') {
            Some(("", _)) => bail!("invalid --build-arg {item:?}: the name is empty"),
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(item) {
                    out.insert(item.clone(), v);
                }
            }
        }
    }
    Ok(out)
}
