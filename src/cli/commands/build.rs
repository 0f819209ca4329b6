//! `rbuild build [OPTIONS] CONTEXT` (and the short form `rbuild -t name:tag CONTEXT`).
//!
//! Without `--dry-run` it runs the build with [`crate::engine::Builder`] and renders its events
//! (classic `docker build` output, or JSON lines with `--progress json`). `--dry-run` plans the
//! build as a build does ([`crate::engine::planning::plan_build`], base images read from the
//! store, nothing pulled) and prints the stages and steps with their expanded instruction and
//! cache key, plus the context's file count and size; it needs no root and writes no store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};

use crate::cli::{Exit, Printer};
use crate::context::BuildContext;
use crate::engine::planning::{no_events, plan_build, unresolved_bases, PlanRequest, PullPolicy, StoreImages};
use crate::engine::BuildError;
use crate::events::units::human_size_4 as human_size;
use crate::frontend::parser;
use crate::image::Platform;

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
    /// Do not use the cache (new results are still recorded)
    #[arg(long)]
    no_cache: bool,
    /// Print only the image ID
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write the image ID to this file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Output: auto, plain (classic docker build lines), tty, or json (one event per line)
    #[arg(long, value_name = "MODE", value_enum, default_value = "auto")]
    progress: Progress,
    /// Network for RUN steps: default (a namespace of its own with outbound access), host or none
    #[arg(long, value_name = "MODE", value_enum, default_value = "default")]
    network: Network,
    /// Add a custom host-to-IP mapping to RUN steps' /etc/hosts (NAME:IP)
    #[arg(long = "add-host", value_name = "NAME:IP")]
    add_hosts: Vec<String>,
    /// A secret for `RUN --mount=type=secret,id=ID`: `id=ID,src=FILE` or `id=ID,env=VAR`
    /// (`id=ID` alone: the variable ID if set, else the file ID). Never stored in the image.
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|,env=VAR]")]
    secrets: Vec<String>,
    /// An ssh agent for `RUN --mount=type=ssh[,id=ID]`: `default` (the agent in
    /// $SSH_AUTH_SOCK) or `ID=SOCKET`. Only the agent protocol reaches the step, never a key.
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET]")]
    ssh: Vec<String>,
    /// Set a label on the image (`KEY=VALUE`); may be repeated
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Layer compression: gzip (default) or zstd
    #[arg(long, value_enum, default_value = "gzip")]
    compression: LayerCompression,
    /// Always check the registry for a newer base image and pull it (without it, only base
    /// images missing from the store are pulled)
    #[arg(long)]
    pull: bool,
    /// Require HTTPS for registries (false: plain HTTP to any registry; default: plain HTTP
    /// only to localhost, 127.0.0.0/8 and RBUILD_INSECURE_REGISTRIES)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// The build context: a directory, or `-` for a tar archive on stdin
    #[arg(default_value = ".")]
    context: PathBuf,
}

/// `--progress`: how events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Progress {
    Auto,
    Plain,
    Tty,
    Json,
}

/// `--network` for RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Network {
    Host,
    None,
    Default,
}

/// `--compression` of new layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LayerCompression {
    Gzip,
    Zstd,
}

pub fn run(args: BuildArgs, printer: &mut Printer) -> anyhow::Result<()> {
    if !args.dry_run {
        return build(args, printer);
    }
    let dockerfile = args.file.clone().unwrap_or_else(|| args.context.join("Dockerfile"));
    let (name, text) = super::read_dockerfile(&dockerfile)?;
    let df = parser::parse(&text, &name)?;
    let ignore_anchor = (dockerfile != Path::new("-")).then_some(dockerfile.as_path());
    let context = BuildContext::open(&args.context, ignore_anchor)
        .with_context(|| format!("opening the build context {}", args.context.display()))?;
    let summary = context.summary()?;
    let target_platform = match &args.platform {
        Some(p) => Platform::parse(p).map_err(anyhow::Error::msg)?,
        None => Platform::native(),
    };
    let build_args = parse_build_args(&args.build_args)?;
    let request = PlanRequest {
        dockerfile: &df,
        dockerfile_text: &text,
        context: &context,
        build_args: &build_args,
        target: args.target.as_deref(),
        target_platform,
    };
    // The base images come from the store, read only (nothing is pulled), so the keys are the
    // ones a build computes; a missing base keeps its reference in the keys, and says so.
    let store = crate::store::ImageStore::existing_default()?;
    let images = store.as_ref().map(|store| {
        StoreImages::new(store, PullPolicy::Never, crate::registry::RegistryOptions::default(), no_events())
    });
    let plan = plan_build(&request, images.as_ref())?;
    for reference in unresolved_bases(&plan) {
        printer.warn(format!(
            "[Warning] {reference} is not in the local store: its cache keys name the reference; a build pulls it and keys its digest"
        ));
    }
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
    for arg in &plan.global_arg_steps {
        printer.line(format!("Step {}/{} : {}", arg.number, total, arg.original))?;
    }
    for stage in &plan.stages {
        let needed = plan.needed.get(stage.index).copied().unwrap_or(false);
        let base = match &stage.base {
            crate::plan::StageBase::Scratch => "scratch".to_string(),
            crate::plan::StageBase::Image { reference, .. } => reference.clone(),
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
            None if item.trim().is_empty() => bail!("invalid --build-arg {item:?}: expected NAME=VALUE or NAME"),
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

/// Runs the build and renders its events.
fn build(args: BuildArgs, printer: &mut Printer) -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};

    use crate::engine::{BuildOptions, Builder};
    use crate::events::{BuildEvent, ClassicRenderer, JsonRenderer, Renderer, TtyRenderer};

    if let Some(p) = &args.platform {
        let wanted = Platform::parse(p).map_err(anyhow::Error::msg)?;
        let native = Platform::native();
        if wanted.os != native.os || wanted.arch != native.arch {
            bail!("--platform {wanted}: only the native platform ({native}) can be built here, there is no emulation");
        }
    }
    // `-`: the context is a tar archive on stdin, extracted (safely) into a temp dir.
    let stdin_context = if args.context == Path::new("-") {
        if args.file.as_deref() == Some(Path::new("-")) {
            bail!("the context and the Dockerfile cannot both come from stdin (-f - with context -)");
        }
        Some(context_from_stdin()?)
    } else {
        None
    };
    let context_dir = stdin_context.as_ref().map_or(args.context.clone(), |t| t.path().to_path_buf());
    let mut opts = BuildOptions::new(&context_dir);
    if let Some(file) = &args.file {
        if file == Path::new("-") {
            opts.dockerfile_text = Some(super::read_dockerfile(file)?.1);
        } else {
            opts.dockerfile = Some(file.clone());
        }
    }
    opts.tags = args.tags.clone();
    opts.build_args = parse_build_args(&args.build_args)?;
    opts.target = args.target.clone();
    opts.no_cache = args.no_cache;
    opts.secrets =
        args.secrets.iter().map(|s| crate::engine::secrets::BuildSecret::parse(s)).collect::<Result<Vec<_>, _>>()?;
    opts.ssh = args.ssh.iter().map(|s| crate::engine::ssh::SshAgent::parse(s)).collect::<Result<Vec<_>, _>>()?;
    opts.pull = args.pull;
    opts.registry = crate::registry::RegistryOptions::from_env(args.tls_verify);
    opts.network = match args.network {
        Network::None => crate::runtime::NetworkMode::None,
        Network::Host => crate::runtime::NetworkMode::Host,
        Network::Default => crate::runtime::NetworkMode::Default,
    };
    opts.extra_hosts = parse_add_hosts(&args.add_hosts)?;
    opts.compression = match args.compression {
        LayerCompression::Gzip => crate::layer::media::Compression::Gzip,
        LayerCompression::Zstd => crate::layer::media::Compression::Zstd,
    };
    for label in &args.labels {
        let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
        opts.labels.insert(k.to_string(), v.to_string());
    }
    // Leased: what the build resolves and makes stays until it ends, whatever rmi/gc do.
    let store = crate::store::ImageStore::open_default()?.leased("build");
    let builder = Builder::new(store);
    printer.flush()?;
    use std::io::IsTerminal;
    let tty = args.progress == Progress::Tty || (args.progress == Progress::Auto && std::io::stderr().is_terminal());
    let renderer: Option<Box<dyn Renderer>> = match (args.quiet, args.progress) {
        (true, _) => None,
        (false, Progress::Json) => Some(Box::new(JsonRenderer::new(std::io::stdout()))),
        _ if tty => Some(Box::new(TtyRenderer::default())),
        _ => Some(Box::new(ClassicRenderer::new(std::io::stdout()))),
    };
    let renderer = Arc::new(Mutex::new(renderer));
    let render_errors = Arc::new(Mutex::new(None::<std::io::Error>));
    let sink = {
        let renderer = Arc::clone(&renderer);
        let render_errors = Arc::clone(&render_errors);
        let json = args.progress == Progress::Json;
        Arc::new(move |event: &BuildEvent| {
            // The failure goes to stderr below, as docker prints it; JSON keeps it in the stream.
            if matches!(event, BuildEvent::BuildFailed { .. }) && !json {
                return;
            }
            if let Ok(mut guard) = renderer.lock() {
                if let Some(r) = guard.as_mut() {
                    if let Err(e) = r.render(event) {
                        if let Ok(mut slot) = render_errors.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            }
        })
    };
    let result = builder.build_with(&opts, sink);
    if let Some(e) = render_errors.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(e.into());
    }
    match result {
        Ok(id) => {
            if args.quiet {
                printer.line(&id)?;
            }
            if let Some(path) = &args.iidfile {
                fs_err::write(path, &id)?;
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            if let Some(id) = e.last_image() {
                let short = crate::events::short_id(id);
                eprintln!(
                    "The last image built before the failure is {short}; debug it with: rbuild run -it {short} sh"
                );
            }
            Err(Exit(build_exit_code(&e)).into())
        }
    }
}

/// The exit status of a failed build: a failing RUN's own status, as `docker build` exits
/// with it (`RUN exit 3` exits 3); 130 after Ctrl-C; 1 for anything else.
fn build_exit_code(error: &BuildError) -> i32 {
    match error {
        _ if error.is_interrupted() => 130,
        BuildError::RunFailed { code, .. } if (1..=255).contains(code) => *code,
        _ => 1,
    }
}

/// Extracts a tar archive (plain, gzip or zstd) read from stdin into a temp dir, through the
/// store's hardened applier: no entry can land outside the dir.
fn context_from_stdin() -> anyhow::Result<tempfile::TempDir> {
    let dir =
        tempfile::Builder::new().prefix("rbuild-context-").tempdir().context("creating a temp dir for the context")?;
    let mut apply = crate::layer::apply::LayerApply::new(dir.path(), crate::layer::apply::WhiteoutMode::Literal)
        .context("preparing to read the build context from stdin")?;
    apply.apply(std::io::stdin().lock()).context("reading the build context (a tar archive) from stdin")?;
    Ok(dir)
}

/// `--add-host` values, each `NAME:IP`.
pub fn parse_add_hosts(values: &[String]) -> anyhow::Result<Vec<crate::runtime::HostEntry>> {
    values.iter().map(|v| crate::runtime::HostEntry::parse(v).map_err(anyhow::Error::msg)).collect()
}
