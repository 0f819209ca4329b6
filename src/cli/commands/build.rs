//! `rbuild build [OPTIONS] CONTEXT` (and the short form `rbuild -t name:tag CONTEXT`).
//!
//! Without `--dry-run` it runs the build with [`crate::engine::Builder`] and renders its events
//! (classic `docker build` output, or JSON lines with `--progress json`). `--dry-run` plans the
//! build as a build does ([`crate::engine::planning::plan_build`], base images read from the
//! store, nothing pulled) and prints the stages and steps with their expanded instruction and
//! cache key, plus the context's file count and size; it needs no root and writes no store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};

use crate::cli::{Exit, Printer};

mod llb_output;
use crate::context::remote::{self, FetchOptions, RemoteContext, RemoteError};
use crate::context::BuildContext;
use crate::engine::planning::{no_events, plan_build, unresolved_bases, PlanRequest, PullPolicy, StoreImages};
use crate::engine::settings::BuildSettings;
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
    #[command(flatten)]
    outputs: super::build_outputs::OutputArgs,
    /// Output: auto, plain (classic docker build lines), tty, or json (one event per line)
    #[arg(long, value_name = "MODE", value_enum, default_value = "auto")]
    progress: Progress,
    /// Network for RUN steps: default (a namespace of its own with outbound access), host or none
    #[arg(long, value_name = "MODE", value_enum, default_value = "default")]
    network: Network,
    /// How RUN steps are isolated: auto (the strongest this environment allows, reported when
    /// it is not the usual one), namespaces (root: mount/PID/network namespaces and the kernel
    /// overlay), rootless (a user namespace), or chroot (no namespace and no mount, for an
    /// unprivileged CI container: the rootfs is a plain directory, the step runs under proot
    /// or chroot(2) on the host's network, and its changes are found by comparison)
    #[arg(long, value_name = "MODE", value_enum, default_value = "auto")]
    isolation: IsolationArg,
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
    /// Grant an entitlement: `security.insecure` lets `RUN --security=insecure` run with every
    /// capability and no seccomp filter; `network.host` is granted anyway. May be repeated.
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    allow: Vec<String>,
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
    /// Import build cache: `type=registry,ref=REPO[:TAG]`, `type=local,src=DIR`, or an image
    /// (Docker's classic `--cache-from IMAGE`); may be repeated
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Export build cache when the build succeeds: `type=registry,ref=REPO[:TAG]` or
    /// `type=local,dest=DIR`, with `mode=min|max` (the target stage's steps, or every stage's),
    /// `compression=gzip|zstd` (of the cache-mount archives; layers travel as stored),
    /// `cache-mounts=true` (RUN --mount=type=cache directories travel too), `ignore-error=true`
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Solve the build on a BuildKit daemon instead of here and load the image into the store:
    /// `docker://[SOCKET]` for the BuildKit inside dockerd (default socket
    /// /var/run/docker.sock; `?session=control` runs the session over the control API),
    /// `unix:///PATH` or `tcp://HOST:PORT[?cacert=CA&cert=CERT&key=KEY&servername=NAME]` for
    /// buildkitd. rbuild's cache and BuildKit's are separate: --cache-to/--cache-from then
    /// name BuildKit's own caches
    #[arg(long, value_name = "URL")]
    builder: Option<String>,
    /// The build context: a directory; `-` for a tar archive on stdin; a git repository
    /// (`https://host/repo.git#ref:subdir`, `git@host:repo.git`, `git://host/repo#ref:subdir`),
    /// fetched shallowly at the ref (its `.git` dropped unless `--build-arg
    /// BUILDKIT_CONTEXT_KEEP_GIT_DIR=1`); or an http(s) URL of a tar archive (plain, gzip,
    /// bzip2, xz, zstd) or of a Dockerfile (an empty context). With a remote context, `-f` is
    /// relative to it, and `--build-arg SOURCE_DATE_EPOCH=context` takes its time (commit time,
    /// Last-Modified or the newest archive entry)
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

/// `--isolation` of RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IsolationArg {
    Auto,
    Namespaces,
    Rootless,
    Chroot,
}

/// `--compression` of new layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LayerCompression {
    Gzip,
    Zstd,
}

pub fn run(args: BuildArgs, printer: &mut Printer) -> anyhow::Result<()> {
    if let Some(dest) = llb_output::llb_destination(args.outputs.raw())? {
        return llb_output::write_llb(&args, &dest, printer);
    }
    if let Some(url) = &args.builder {
        let url = crate::buildkit::BuilderUrl::parse(url)?;
        return llb_output::build_on_buildkit(&args, &url, printer);
    }
    if !args.dry_run {
        return build(args, printer);
    }
    let store = crate::store::ImageStore::existing_default()?;
    let mut build_args = parse_build_args(&args.build_args)?;
    let opened = open_context(&args, &mut build_args, store.as_ref(), Arc::new(AtomicBool::new(false)), printer)?;
    BuildSettings::from_env().resolve_epoch_arg(&mut build_args, opened.time);
    let dockerfile = opened.dockerfile.clone().unwrap_or_else(|| opened.dir.join("Dockerfile"));
    let (name, text) = super::read_dockerfile(&dockerfile)?;
    let df = parser::parse(&text, &name)?;
    let ignore_anchor = (dockerfile != Path::new("-")).then_some(dockerfile.as_path());
    let context = BuildContext::open(&opened.dir, ignore_anchor)
        .with_context(|| format!("opening the build context {}", args.context.display()))?;
    let summary = context.summary()?;
    let target_platform = match &args.platform {
        Some(p) => Platform::parse(p).map_err(anyhow::Error::msg)?,
        None => Platform::native(),
    };
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
    let images = store.as_ref().map(|store| {
        StoreImages::new(store, PullPolicy::Never, crate::registry::RegistryOptions::default(), no_events())
    });
    let plan = plan_build(&request, images.as_ref())?;
    // What the build would refuse, the dry run refuses too.
    crate::plan::entitlements::check(&plan, &crate::plan::entitlements::Entitlement::parse_all(&args.allow)?)?;
    for reference in unresolved_bases(&plan) {
        printer.warn(format!(
            "[Warning] {reference} is not in the local store: its cache keys name the reference; a build pulls it and keys its digest"
        ));
    }
    for warning in &plan.warnings {
        printer.warn(warning);
    }
    let ignore = match &context.ignore_file {
        // A fetched context's file is named inside it, not in its temp dir.
        Some(path) if opened.origin.is_some() => {
            format!("after {}", path.strip_prefix(&opened.dir).unwrap_or(path).display())
        }
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

/// What planning reads, loaded as `build --dry-run` and `build --output type=llb` load it.
struct PlanInput {
    /// The Dockerfile's display name and text, parsed.
    pub name: String,
    pub text: String,
    pub dockerfile: crate::frontend::ast::Dockerfile,
    pub context: BuildContext,
    pub build_args: BTreeMap<String, String>,
    pub platform: Platform,
}

impl PlanInput {
    fn read(args: &BuildArgs) -> anyhow::Result<PlanInput> {
        let dockerfile = args.file.clone().unwrap_or_else(|| args.context.join("Dockerfile"));
        let (name, text) = super::read_dockerfile(&dockerfile)?;
        let df = parser::parse(&text, &name)?;
        let ignore_anchor = (dockerfile != Path::new("-")).then_some(dockerfile.as_path());
        let context = BuildContext::open(&args.context, ignore_anchor)
            .with_context(|| format!("opening the build context {}", args.context.display()))?;
        let platform = match &args.platform {
            Some(p) => Platform::parse(p).map_err(anyhow::Error::msg)?,
            None => Platform::native(),
        };
        let build_args = parse_build_args(&args.build_args)?;
        Ok(PlanInput { name, text, dockerfile: df, context, build_args, platform })
    }

    fn request<'a>(&'a self, args: &'a BuildArgs) -> PlanRequest<'a> {
        PlanRequest {
            dockerfile: &self.dockerfile,
            dockerfile_text: &self.text,
            context: &self.context,
            build_args: &self.build_args,
            target: args.target.as_deref(),
            target_platform: self.platform.clone(),
        }
    }
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
    use crate::engine::{BuildOptions, Builder};

    if let Some(p) = &args.platform {
        let wanted = Platform::parse(p).map_err(anyhow::Error::msg)?;
        let native = Platform::native();
        if wanted.os != native.os || wanted.arch != native.arch {
            bail!("--platform {wanted}: only the native platform ({native}) can be built here, there is no emulation");
        }
    }
    let isolation = match args.isolation {
        IsolationArg::Auto => crate::runtime::Isolation::Auto,
        IsolationArg::Namespaces => crate::runtime::Isolation::Root,
        IsolationArg::Rootless => crate::runtime::Isolation::UserNamespace,
        IsolationArg::Chroot => crate::runtime::Isolation::Chroot,
    };
    // The rootless prerequisites matter only where RUN steps would use a user namespace.
    let rootless = crate::runtime::choose_isolation(isolation)
        .is_ok_and(|choice| choice.isolation == crate::runtime::Isolation::UserNamespace);
    if let Some(warning) = crate::runtime::rootless_setup_warning().filter(|_| rootless) {
        printer.warn(warning);
    }
    let outputs = args.outputs.plan(&args.tags)?;
    // Leased: what the build resolves and makes stays until it ends, whatever rmi/gc do.
    let store = crate::store::ImageStore::open_default()?.leased("build");
    let builder = Builder::new(store);
    let mut build_args = parse_build_args(&args.build_args)?;
    let opened = open_context(&args, &mut build_args, Some(builder.store()), builder.cancel_handle().flag(), printer)?;
    let mut opts = BuildOptions::new(&opened.dir);
    opts.context_origin = opened.origin.clone();
    opts.dockerfile = opened.dockerfile.clone();
    if args.file.as_deref() == Some(Path::new("-")) {
        opts.dockerfile_text = Some(super::read_dockerfile(Path::new("-"))?.1);
    }
    opts.settings.resolve_epoch_arg(&mut build_args, opened.time);
    // With `--output`, the -t names name the archives; the store's tags stay as they are.
    opts.tags = if outputs.tag_store { args.tags.clone() } else { Vec::new() };
    opts.build_args = build_args;
    opts.target = args.target.clone();
    opts.no_cache = args.no_cache;
    opts.secrets =
        args.secrets.iter().map(|s| crate::engine::secrets::BuildSecret::parse(s)).collect::<Result<Vec<_>, _>>()?;
    opts.allow = crate::plan::entitlements::Entitlement::parse_all(&args.allow)?;
    opts.ssh = crate::engine::ssh::SshAgent::parse_all(&args.ssh)?;
    opts.pull = args.pull;
    use crate::engine::shared_cache::{CacheExportSpec, CacheImportSpec};
    opts.cache_from = args.cache_from.iter().map(|s| CacheImportSpec::parse(s)).collect::<Result<Vec<_>, _>>()?;
    opts.cache_to = args.cache_to.iter().map(|s| CacheExportSpec::parse(s)).collect::<Result<Vec<_>, _>>()?;
    opts.registry = crate::registry::RegistryOptions::from_env(args.tls_verify);
    opts.network = match args.network {
        Network::None => crate::runtime::NetworkMode::None,
        Network::Host => crate::runtime::NetworkMode::Host,
        Network::Default => crate::runtime::NetworkMode::Default,
    };
    opts.extra_hosts = parse_add_hosts(&args.add_hosts)?;
    opts.isolation = isolation;
    opts.compression = match args.compression {
        LayerCompression::Gzip => crate::layer::media::Compression::Gzip,
        LayerCompression::Zstd => crate::layer::media::Compression::Zstd,
    };
    for label in &args.labels {
        let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
        opts.labels.insert(k.to_string(), v.to_string());
    }
    printer.flush()?;
    let (sink, render_errors) = event_sink(&args, outputs.uses_stdout());
    let result = builder.build_with(&opts, sink);
    if let Some(e) = render_errors.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(e.into());
    }
    match result {
        Ok(id) => {
            let built = super::build_outputs::Built {
                store: builder.store(),
                id: &id,
                tags: &args.tags,
                registry: &opts.registry,
                quiet: args.quiet,
                iidfile: args.iidfile.as_deref(),
            };
            super::build_outputs::finish(&args.outputs, &outputs, &built, printer)
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

/// The first error a renderer hit, reported after the build.
type RenderErrors = Arc<Mutex<Option<std::io::Error>>>;

/// Where a build's events go: the classic, tty or JSON renderer (nothing with `-q`); on stderr
/// when an output archive takes stdout.
fn event_sink(args: &BuildArgs, uses_stdout: bool) -> (crate::engine::executor::EventSink, RenderErrors) {
    use crate::events::{BuildEvent, ClassicRenderer, JsonRenderer, Renderer, TtyRenderer};
    use std::io::IsTerminal;

    let tty = args.progress == Progress::Tty || (args.progress == Progress::Auto && std::io::stderr().is_terminal());
    let renderer: Option<Box<dyn Renderer>> = match (args.quiet, args.progress) {
        (true, _) => None,
        (false, Progress::Json) if uses_stdout => Some(Box::new(JsonRenderer::new(std::io::stderr()))),
        (false, Progress::Json) => Some(Box::new(JsonRenderer::new(std::io::stdout()))),
        _ if tty => Some(Box::new(TtyRenderer::default())),
        _ if uses_stdout => Some(Box::new(ClassicRenderer::new(std::io::stderr()))),
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
    (sink, render_errors)
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

/// `--build-arg BUILDKIT_CONTEXT_KEEP_GIT_DIR=1`: a git context keeps its `.git` (BuildKit's
/// name; an instruction to the fetch, not an ARG of the Dockerfile).
const KEEP_GIT_DIR: &str = "BUILDKIT_CONTEXT_KEEP_GIT_DIR";

/// The directory a streamed or fetched context lives in, removed when dropped (on success,
/// failure and an interrupted build): a work dir in the store's `tmp/` (what a killed rbuild
/// leaves there, the next run reclaims), else (a dry run without a store) a temp dir.
enum ContextHolder {
    Work(crate::store::WorkDir),
    Temp(tempfile::TempDir),
}

impl ContextHolder {
    fn new(store: Option<&crate::store::ImageStore>) -> anyhow::Result<Self> {
        Ok(match store {
            Some(store) => ContextHolder::Work(store.work_dir().context("creating a work dir for the build context")?),
            None => ContextHolder::Temp(
                tempfile::Builder::new()
                    .prefix("rbuild-context-")
                    .tempdir()
                    .context("creating a temp dir for the build context")?,
            ),
        })
    }

    fn path(&self) -> &Path {
        match self {
            ContextHolder::Work(work) => work.path(),
            ContextHolder::Temp(temp) => temp.path(),
        }
    }
}

/// The context a build reads, wherever it came from.
struct OpenedContext {
    /// The context directory.
    dir: PathBuf,
    /// The Dockerfile when not `dir/Dockerfile` (`-f`; inside the context for a remote one;
    /// `-f -` is read by the caller).
    dockerfile: Option<PathBuf>,
    /// A remote context's URL.
    origin: Option<String>,
    /// A remote context's time (for `SOURCE_DATE_EPOCH=context`).
    time: Option<i64>,
    /// Keeps a streamed or fetched context until the build ends.
    _holder: Option<ContextHolder>,
}

/// Opens the build's context: a local directory as it is; `-` (a tar archive on stdin) and a
/// remote context ([`remote::fetch`]) into a [`ContextHolder`]. While a remote context is
/// fetched and built, SIGINT/SIGTERM set `cancel` (the build's cancel flag), so the fetch or
/// the build stops and the holder is removed on the way out.
fn open_context(
    args: &BuildArgs,
    build_args: &mut BTreeMap<String, String>,
    store: Option<&crate::store::ImageStore>,
    cancel: Arc<AtomicBool>,
    printer: &mut Printer,
) -> anyhow::Result<OpenedContext> {
    let file = args.file.clone().filter(|f| f != Path::new("-"));
    let local = |dir: PathBuf, holder: Option<ContextHolder>| OpenedContext {
        dir,
        dockerfile: file.clone(),
        origin: None,
        time: None,
        _holder: holder,
    };
    if args.context == Path::new("-") {
        if args.file.as_deref() == Some(Path::new("-")) {
            bail!("the context and the Dockerfile cannot both come from stdin (-f - with context -)");
        }
        let holder = ContextHolder::new(store)?;
        context_from_stdin(holder.path())?;
        return Ok(local(holder.path().to_path_buf(), Some(holder)));
    }
    let Some(context) = args.context.to_str().and_then(RemoteContext::parse) else {
        return Ok(local(args.context.clone(), None));
    };
    let keep_git_dir = build_args.remove(KEEP_GIT_DIR).is_some_and(|v| matches!(v.trim(), "1" | "true"));
    let holder = ContextHolder::new(store)?;
    stop_on_interrupt(&cancel)?;
    let fetched = match remote::fetch(&context, holder.path(), &FetchOptions { keep_git_dir, cancel: &cancel }) {
        Ok(fetched) => fetched,
        Err(e @ RemoteError::Interrupted { .. }) => {
            eprintln!("{e}");
            return Err(Exit(130).into());
        }
        Err(e) => return Err(e.into()),
    };
    if file.is_some() && fetched.dockerfile_only {
        printer.warn(format!("[Warning] {} is a Dockerfile, not an archive: -f is ignored", context.url()));
    }
    let stdin_dockerfile = args.file.as_deref() == Some(Path::new("-"));
    let dockerfile = match file.as_deref() {
        _ if stdin_dockerfile => None,
        Some(path) if !fetched.dockerfile_only => Some(dockerfile_inside(&context, &fetched.root, path)?),
        _ => Some(dockerfile_inside(&context, &fetched.root, Path::new("Dockerfile"))?),
    };
    Ok(OpenedContext {
        dir: fetched.root.clone(),
        dockerfile,
        origin: Some(context.url().to_string()),
        time: fetched.time,
        _holder: Some(holder),
    })
}

/// The Dockerfile `path` (`-f`, else `Dockerfile`) of a fetched context: a path inside it, as
/// Docker reads `-f` there, resolved inside it too (a symlink in a fetched tree never makes
/// rbuild read a file of this machine).
fn dockerfile_inside(context: &RemoteContext, root: &Path, path: &Path) -> anyhow::Result<PathBuf> {
    if !remote::stays_inside(path) {
        bail!(
            "-f {}: with a remote context the Dockerfile is a path inside the context (no leading '/', no '..')",
            path.display()
        );
    }
    match remote::resolve_inside(root, path) {
        Ok(Some(resolved)) => Ok(resolved),
        Ok(None) => bail!("{}: the Dockerfile {} leads out of the context", context.url(), path.display()),
        Err(e) => bail!("{}: no Dockerfile {} in the context ({e})", context.url(), path.display()),
    }
}

/// From now until rbuild exits, SIGINT and SIGTERM set `cancel` instead of killing rbuild; a
/// second one exits 130 at once (the next run reclaims what that leaves in the store's
/// `tmp/`). The handlers stay: signal-hook cannot give the default action back, so
/// unregistering would leave Ctrl-C ignored for the rest of the run.
fn stop_on_interrupt(cancel: &Arc<AtomicBool>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(cancel))
            .context("installing a signal handler")?;
        signal_hook::flag::register(signal, Arc::clone(cancel)).context("installing a signal handler")?;
    }
    Ok(())
}

/// Extracts a tar archive (plain, gzip or zstd) read from stdin into `dir`, through the
/// store's hardened applier: no entry can land outside the dir.
fn context_from_stdin(dir: &Path) -> anyhow::Result<()> {
    let mut apply = crate::layer::apply::LayerApply::new(dir, crate::layer::apply::WhiteoutMode::Literal)
        .context("preparing to read the build context from stdin")?;
    apply.apply(std::io::stdin().lock()).context("reading the build context (a tar archive) from stdin")?;
    Ok(())
}

/// `--add-host` values, each `NAME:IP`.
pub fn parse_add_hosts(values: &[String]) -> anyhow::Result<Vec<crate::runtime::HostEntry>> {
    values.iter().map(|v| crate::runtime::HostEntry::parse(v).map_err(anyhow::Error::msg)).collect()
}
