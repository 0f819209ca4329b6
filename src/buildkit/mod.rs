//! Solving a lowered build ([`crate::llb::LlbDefinition`]) on a BuildKit daemon and bringing
//! the image back.
//!
//! - `docker://` ([`BuilderUrl::Docker`]): the BuildKit embedded in dockerd, reached through the
//!   upgraded `/grpc` (control API) and, for this client's session, `/session` (or the control
//!   API's `Session` stream), as buildx's docker driver does. dockerd's BuildKit exports with its
//!   `moby` exporter into dockerd's image store (it has no docker/oci tarball exporter), so the
//!   image is exported under a temporary name and, unless the store already has the layers of
//!   that very image ([`exports`]), saved from dockerd as a docker archive and loaded; the
//!   temporary name is removed. The name is claimed in the store first ([`export_names`]), so
//!   the next build removes it when this one dies before it could.
//! - `unix://`, `tcp://` ([`BuilderUrl::Buildkitd`]): buildkitd, its session tunnelled through
//!   the control API's `Session` stream ([`control`]); its `docker` exporter streams the image
//!   tarball back through the session's `FileSend`, and it is loaded.
//!
//! The session ([`session`]) serves the context, `--secret` values and, when `--ssh` is given,
//! the agents for ssh mounts.
//!
//! Either way the image config is the plan's, made to account for BuildKit's layers
//! ([`exported_config`]). `--cache-to/--cache-from` go to BuildKit's own cache exporters and
//! importers ([`CacheSpec`]). Progress comes from BuildKit's status stream, per op digest, and is
//! reported as rbuild's [`BuildEvent`]s for the plan step each op belongs to (so `Using cache`
//! shows for ops BuildKit had cached); a failing op names its step, and a failing RUN's exit
//! status is kept. SIGINT/SIGTERM (the CLI's cancel flag) gives the solve up: its gRPC calls
//! are dropped, so BuildKit cancels it, and the build ends interrupted (exit status 130).
//!
//! `bollard`'s BuildKit support is not used: its solve always runs the Dockerfile frontend
//! (`definition: None`) with the context uploaded as a tarball, and its session has no
//! FileSync server; the protos are bollard's (`bollard-buildkit-proto`).

mod builder_url;
mod control;
mod dockerd;
mod export_names;
mod exports;
mod progress;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::{
    CacheOptions, CacheOptionsEntry, SolveRequest, SolveResponse, StatusRequest,
};
use tonic::transport::Channel;

pub use builder_url::{BuilderUrl, Endpoint, SessionTransport, TlsFiles};

use crate::context::ContextEntry;
use crate::events::BuildEvent;
use crate::image::{HistoryEntry, ImageConfig};
use crate::layer::diff::{write_layer, DiffOptions};
use crate::layer::digest::Sha256Digest;
use crate::layer::media::Compression;
use crate::llb::{LlbDefinition, IMAGE_CONFIG_KEY};
use crate::store::{ImageStore, LayerBlob, WorkDir};
use exports::ExportedImage;

/// The image config field BuildKit writes its inline cache (`--cache-to type=inline`) to.
const INLINE_CACHE_KEY: &str = "moby.buildkit.cache.v0";

/// Why a solve on BuildKit failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildkitError {
    #[error("--builder {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the builder at {endpoint}: {error}")]
    Connect { endpoint: String, error: String },
    #[error("--builder TLS: {0}")]
    Tls(String),
    #[error("BuildKit: {0}")]
    Protocol(String),
    /// The builder's BuildKit lacks an LLB capability an instruction's op needs.
    #[error(
        "{file}:{line}: {instruction}: needs a newer BuildKit than this builder's (it lacks the LLB capability {cap})"
    )]
    NeedsNewerBuildkit { file: String, line: usize, instruction: String, cap: String },
    /// A step's op failed on BuildKit; `code` is a failing RUN's exit status.
    #[error("step {step} ({instruction}) failed on BuildKit: {message}")]
    StepFailed { step: usize, instruction: String, code: Option<i32>, message: String },
    /// The solve failed outside any step (a source was missing, a cache could not be exported, ...).
    #[error("BuildKit failed to solve the build: {0}")]
    Solve(String),
    /// A `--cache-to`/`--cache-from` value BuildKit cannot take.
    #[error("{flag} {spec:?}: {reason}")]
    BadCacheSpec { flag: &'static str, spec: String, reason: String },
    /// The builder's BuildKit has no cache exporter/importer of the type asked for.
    #[error(
        "{flag} type={kind}: this builder's BuildKit cannot {action} a cache of type {kind} (dockerd's embedded BuildKit exports only type=inline, and imports type=registry and type=local; a buildkitd, --builder unix:// or tcp://, does them all)"
    )]
    CacheTypeUnsupported { flag: &'static str, action: &'static str, kind: String },
    /// SIGINT or SIGTERM while BuildKit solved: the solve was given up.
    #[error("build interrupted")]
    Interrupted,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A layer of dockerd's image could not be written from its overlay2 directory.
    #[error("reading dockerd's image layer: {0}")]
    Layer(#[from] crate::layer::diff::LayerError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl BuildkitError {
    /// The exit status `rbuild build` ends with: a failing RUN's own (as a local build's), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildkitError::StepFailed { code: Some(code), .. } if (1..=255).contains(code) => *code,
            BuildkitError::Interrupted => 130,
            _ => 1,
        }
    }
}

/// One `--cache-to`/`--cache-from` for BuildKit's own cache exporters and importers
/// (`type=registry,ref=…,mode=max`, `type=local,dest=…`, `type=inline`): the type and the
/// attributes, handed over as given (BuildKit checks them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub kind: String,
    pub attrs: BTreeMap<String, String>,
}

impl CacheSpec {
    /// Reads `type=T,key=value,…`; `flag` names the option in errors.
    pub fn parse(flag: &'static str, text: &str) -> Result<CacheSpec, BuildkitError> {
        let bad = |reason: String| BuildkitError::BadCacheSpec { flag, spec: text.to_string(), reason };
        let mut kind = None;
        let mut attrs = BTreeMap::new();
        for field in text.split(',').filter(|f| !f.is_empty()) {
            let (key, value) = field.split_once('=').ok_or_else(|| bad(format!("{field:?} is not key=value")))?;
            if key == "type" {
                kind = Some(value.to_string());
            } else if attrs.insert(key.to_string(), value.to_string()).is_some() {
                return Err(bad(format!("{key} is given twice")));
            }
        }
        let kind =
            kind.ok_or_else(|| bad("type= is missing (type=registry,ref=REPO:TAG, type=local, type=inline)".into()))?;
        Ok(CacheSpec { kind, attrs })
    }

    fn entry(&self) -> CacheOptionsEntry {
        CacheOptionsEntry { r#type: self.kind.clone(), attrs: self.attrs.clone().into_iter().collect() }
    }
}

/// What a remote solve needs.
pub struct SolveInput<'a> {
    pub builder: &'a BuilderUrl,
    pub definition: &'a LlbDefinition,
    /// The Dockerfile's display name, for errors naming a line.
    pub dockerfile_name: &'a str,
    /// The build context directory and its entries (walked, `.dockerignore` applied).
    pub context_root: &'a Path,
    pub context_entries: Vec<ContextEntry>,
    /// `Step N/M`'s M, and the step's instruction text by number, for progress.
    pub total_steps: usize,
    pub step_text: HashMap<usize, (usize, String)>,
    pub events: Arc<dyn Fn(&BuildEvent) + Send + Sync>,
    /// `--secret` values by id, served to BuildKit's secret mounts.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--ssh` agent sockets by id (each checked to be a socket), forwarded to ssh mounts.
    pub ssh_agents: BTreeMap<String, PathBuf>,
    /// `--cache-to` and `--cache-from`, for BuildKit's own cache.
    pub cache_to: Vec<CacheSpec>,
    pub cache_from: Vec<CacheSpec>,
    /// Set by the CLI's SIGINT/SIGTERM handler: the solve is given up (BuildKit cancels it
    /// when its client goes), what it left in dockerd removed, and the build ends interrupted.
    pub cancel: Arc<std::sync::atomic::AtomicBool>,
}

/// Solves the definition on the builder and loads the image into `store`; returns its ID.
pub fn solve(input: SolveInput, store: &ImageStore) -> Result<String, BuildkitError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // `_pins` keeps the blobs of layers read from dockerd's directories until the image is put.
    let (exported, _pins) = match input.builder {
        BuilderUrl::Docker { socket, session } => {
            runtime.block_on(solve_on_dockerd(socket, *session, &input, store))?
        }
        BuilderUrl::Buildkitd { endpoint, tls } => {
            (runtime.block_on(solve_on_buildkitd(endpoint, tls.as_ref(), &input, store))?, None)
        }
    };
    // dockerd's `moby` exporter takes the image config only from a frontend's result, never
    // from the exporter attributes a definition solve can pass: its image has BuildKit's layers
    // under a default config. The config is put back here, as BuildKit's image exporter would
    // (buildkitd's `docker` exporter takes it, but wording its history its own way).
    let created = exported.created.clone().unwrap_or_else(now);
    let diff_ids = exported.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let mut config = exported_config(&input.definition.image_config, diff_ids, &created);
    if let Some(cache) = exported.inline_cache {
        // `--cache-to type=inline`: BuildKit's cache metadata stays in the config it wrote it to.
        config.extra.insert(INLINE_CACHE_KEY.to_string(), cache);
    }
    let image = store.put_image(&config, &exported.layers, &[])?;
    Ok(image.id.to_string())
}

/// The session's services for `input`; its ssh forwarding ends when `ended` becomes true.
fn services(
    input: &SolveInput,
    export: Option<session::ExportReceiver>,
    ended: tokio::sync::watch::Receiver<bool>,
) -> session::Services {
    session::Services {
        context: session::ContextSync {
            root: input.context_root.to_path_buf(),
            entries: Arc::new(input.context_entries.clone()),
        },
        secrets: session::BuildSecrets(input.secrets.clone()),
        ssh: (!input.ssh_agents.is_empty()).then(|| session::SshAgents { sockets: input.ssh_agents.clone(), ended }),
        export,
    }
}

/// The image a solve left in dockerd: its temporary name and, as the exporter reports it, ID.
struct DockerdImage {
    name: String,
    id: Option<String>,
}

async fn solve_on_dockerd(
    socket: &Path,
    transport: SessionTransport,
    input: &SolveInput<'_>,
    store: &ImageStore,
) -> Result<(ExportedImage, Option<WorkDir>), BuildkitError> {
    let endpoint = format!("{}/grpc", socket.display());
    let channel = control::channel_on(dockerd::upgrade(socket, "/grpc", &[]).await?, &endpoint).await?;
    let session_id = random_id();
    let offers = session::Offers { export: false, ssh: !input.ssh_agents.is_empty() };
    let headers = session::headers(&session_id, &shared_key(input.context_root), offers);
    let session_stream = match transport {
        SessionTransport::DockerdUpgrade => Session::Upgraded(dockerd::upgrade(socket, "/session", &headers).await?),
        SessionTransport::ControlStream => {
            Session::Tunnelled(control::session_stream(channel.clone(), &headers).await?)
        }
    };
    let session = session_stream.serve(input, None);
    remove_abandoned_names(socket, store).await;
    let claim = export_names::ExportName::claim(store, socket, &random_id())?;
    let name = claim.name().to_string();
    let solved = until_cancelled(&input.cancel, run_solve(channel, &session_id, input, "moby", &name)).await;
    session.end();
    let solved = match solved {
        Some(solved) => solved,
        None => {
            // The exporter may have named the image already; a name it gives after this is
            // removed by the next build (the claim stays for it when this removal fails).
            if dockerd::remove_image(socket, &name).await.is_ok() {
                claim.release();
            }
            return Err(BuildkitError::Interrupted);
        }
    };
    let exported = DockerdImage { name, id: solved?.exporter_response.get("containerimage.digest").cloned() };
    let wants_config = input.cache_to.iter().any(|c| c.kind == "inline");
    let loaded = exported_layers(socket, &exported, store, wants_config).await;
    let removed = dockerd::remove_image(socket, &exported.name).await;
    if removed.is_ok() {
        claim.release();
    }
    let image = loaded?;
    removed?;
    Ok(image)
}

/// Removes from dockerd the temporary names of earlier builds of this store that died before
/// removing them ([`export_names`]). Best effort: a name that cannot be removed now is tried
/// again by the next build.
async fn remove_abandoned_names(socket: &Path, store: &ImageStore) {
    for abandoned in export_names::abandoned(store, socket) {
        match dockerd::remove_image(socket, &abandoned.name).await {
            Ok(()) => {
                tracing::debug!("removed {} from dockerd, left by a build that died", abandoned.name);
                abandoned.forget();
            }
            Err(e) => tracing::debug!("cannot remove {} from dockerd yet: {e}", abandoned.name),
        }
    }
}

/// Runs `work` until it ends (`Some`) or `cancel` is set (`None`, `work` dropped: its gRPC
/// calls are reset, so BuildKit cancels the solve).
async fn until_cancelled<T>(
    cancel: &std::sync::atomic::AtomicBool,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let watch = async {
        while !cancel.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    match futures_util::future::select(std::pin::pin!(work), std::pin::pin!(watch)).await {
        futures_util::future::Either::Left((done, _)) => Some(done),
        futures_util::future::Either::Right(_) => None,
    }
}

async fn solve_on_buildkitd(
    endpoint: &Endpoint,
    tls: Option<&TlsFiles>,
    input: &SolveInput<'_>,
    store: &ImageStore,
) -> Result<ExportedImage, BuildkitError> {
    let channel = control::connect(endpoint, tls).await?;
    let session_id = random_id();
    let offers = session::Offers { export: true, ssh: !input.ssh_agents.is_empty() };
    let headers = session::headers(&session_id, &shared_key(input.context_root), offers);
    let work = store.work_dir()?;
    let archive = work.path().join("image.tar");
    let stream = control::session_stream(channel.clone(), &headers).await?;
    let session = Session::Tunnelled(stream).serve(input, Some(session::ExportReceiver(archive.clone())));
    let name = format!("{}{}", export_names::NAME_PREFIX, random_id());
    let solved = until_cancelled(&input.cancel, run_solve(channel, &session_id, input, "docker", &name)).await;
    session.end();
    solved.ok_or(BuildkitError::Interrupted)??;
    let file = std::fs::File::open(&archive)?;
    load_archive(store, std::io::BufReader::with_capacity(1 << 20, file), "the image buildkitd exported")
}

/// The connection a session runs on.
enum Session {
    Upgraded(tokio::net::UnixStream),
    Tunnelled(tokio::io::DuplexStream),
}

/// A session being served; [`ServedSession::end`] stops it once the solve is over.
struct ServedSession {
    task: tokio::task::JoinHandle<()>,
    /// Tells the ssh relays to close (tonic serves each connection on a task of its own,
    /// which aborting `task` does not end).
    ended: tokio::sync::watch::Sender<bool>,
}

impl ServedSession {
    fn end(self) {
        self.task.abort();
        let _ = self.ended.send(true);
    }
}

impl Session {
    /// Serves `input`'s session services (and `export`, when the solve streams its result to
    /// the client) on this connection.
    fn serve(self, input: &SolveInput, export: Option<session::ExportReceiver>) -> ServedSession {
        let (ended, end_seen) = tokio::sync::watch::channel(false);
        let services = services(input, export, end_seen);
        let task = tokio::spawn(async move {
            let served = match self {
                Session::Upgraded(stream) => session::serve(stream, services).await,
                Session::Tunnelled(stream) => session::serve(stream, services).await,
            };
            if let Err(e) = served {
                tracing::debug!("the BuildKit session ended: {e}");
            }
        });
        ServedSession { task, ended }
    }
}

/// Solves `input`'s definition with `exporter` (the image named `name`), following the status
/// stream into rbuild's events; a failure names the step it happened in.
async fn run_solve(
    channel: Channel,
    session_id: &str,
    input: &SolveInput<'_>,
    exporter: &str,
    name: &str,
) -> Result<SolveResponse, BuildkitError> {
    let build_ref = random_id();
    let mut attrs = HashMap::new();
    attrs.insert("name".to_string(), name.to_string());
    let config = serde_json::to_string(&input.definition.image_config)
        .map_err(|e| BuildkitError::Protocol(format!("encoding the image config: {e}")))?;
    attrs.insert(IMAGE_CONFIG_KEY.to_string(), config);
    let request = SolveRequest {
        r#ref: build_ref.clone(),
        definition: Some(input.definition.definition.clone()),
        exporter_deprecated: exporter.to_string(),
        exporter_attrs_deprecated: attrs,
        session: session_id.to_string(),
        entitlements: input.definition.entitlements(),
        cache: Some(CacheOptions {
            exports: input.cache_to.iter().map(CacheSpec::entry).collect(),
            imports: input.cache_from.iter().map(CacheSpec::entry).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status_client = ControlClient::new(channel.clone());
    let reporter = progress::Reporter::new(input);
    let status = tokio::spawn(progress::follow(status_client, StatusRequest { r#ref: build_ref }, reporter));
    let solved = ControlClient::new(channel).max_decoding_message_size(16 << 20).solve(request).await;
    let failed_step = match status.await {
        Ok(mut reporter) => {
            reporter.advance(solved.is_ok());
            reporter.failed_step()
        }
        Err(_) => None,
    };
    match solved {
        Ok(response) => Ok(response.into_inner()),
        Err(e) => Err(solve_error(e.message(), failed_step, input)),
    }
}

/// The store's blobs for the layers of the image dockerd exported: remembered from an earlier
/// build that ended with the same image (nothing to fetch); else, when dockerd's overlay2
/// directories can be read here, the layers the store lacks written from them (no `docker
/// save`: it copies every layer, a large base included, and took longer than the build);
/// else saved from dockerd and loaded. The returned work dir pins new blobs until the image
/// is put on them.
async fn exported_layers(
    socket: &Path,
    exported: &DockerdImage,
    store: &ImageStore,
    wants_config: bool,
) -> Result<(ExportedImage, Option<WorkDir>), BuildkitError> {
    let memory = exports::DockerdExports::new(store);
    if let Some((id, image)) = exported.id.as_deref().and_then(|id| Some((id, memory.recall(id)?))) {
        tracing::debug!("dockerd's image {id} was loaded before: its layers are in the store, no save");
        return Ok((image, None));
    }
    // The inline cache is in dockerd's image config, which only a save carries.
    if !wants_config {
        if let Some(dirs) = dockerd::image_layer_dirs(socket, &exported.name).await? {
            tracing::debug!("reading dockerd's image {} from its overlay2 layer directories", exported.name);
            let (image, pins) = layers_from_dirs(store, &dirs)?;
            if let Some(id) = &exported.id {
                let _ = memory.remember(id, &image);
            }
            return Ok((image, Some(pins)));
        }
    }
    tracing::debug!("saving dockerd's image {} ({:?}) to load it", exported.name, exported.id);
    let body = dockerd::save(socket, &exported.name).await?;
    let source = format!("the image saved from dockerd ({})", exported.name);
    let image = load_archive(store, std::io::BufReader::with_capacity(1 << 20, body), &source)?;
    if let Some(id) = &exported.id {
        // Best effort: a map that cannot be written costs the next build a save, nothing else.
        let _ = memory.remember(id, &image);
    }
    Ok((image, None))
}

/// The layers in dockerd's diff directories `dirs` (diff ID, directory; bottom first) as store
/// blobs: a layer the store holds (an uncompressed blob named by its diff ID: an imported or
/// loaded base) is taken as it is, the others are written from their directory as rbuild
/// commits its own RUN layers (uncompressed, like a loaded archive's), so their diff IDs are
/// rbuild's serialisation of the same files.
fn layers_from_dirs(store: &ImageStore, dirs: &[(String, PathBuf)]) -> Result<(ExportedImage, WorkDir), BuildkitError> {
    let work = store.work_dir()?;
    let plain = DiffOptions { compression: Compression::None, ..DiffOptions::default() };
    let mut layers = Vec::new();
    for (diff_id, dir) in dirs {
        let held = diff_id.strip_prefix("sha256:").and_then(|hex| Sha256Digest::from_hex(hex).ok()).filter(|d| {
            // Pinned before it is looked at, so a concurrent gc keeps it.
            work.pin("blob", d).is_ok() && store.has_blob(d)
        });
        if let Some(digest) = held {
            let size = std::fs::metadata(store.blob_path(&digest))?.len();
            let media_type = Compression::None.oci_layer_media_type();
            layers.push(LayerBlob { diff_id: digest.clone(), digest, size, media_type, unpacked_size: None });
            continue;
        }
        let layer = write_layer(dir, work.path(), &plain)?;
        let parse = |d: &str| {
            d.parse::<Sha256Digest>().map_err(|e| BuildkitError::Protocol(format!("layer of {}: {e}", dir.display())))
        };
        let digest = parse(&layer.digest)?;
        work.commit_blob_file(store, &layer.path, &digest)?;
        layers.push(LayerBlob {
            digest,
            diff_id: parse(&layer.diff_id)?,
            size: layer.compressed_size,
            media_type: Compression::None.oci_layer_media_type(),
            unpacked_size: Some(layer.unpacked_size),
        });
    }
    Ok((ExportedImage { layers, inline_cache: None, created: Some(now()) }, work))
}

/// Loads a docker archive of one image and returns its layers and inline cache; the loaded
/// image itself (the exporter's config, not the build's) is removed again, its layers staying
/// for the image the build puts on them.
fn load_archive(store: &ImageStore, archive: impl std::io::Read, source: &str) -> Result<ExportedImage, BuildkitError> {
    let loaded = crate::store::archive::load(store, archive, source, &indicatif::ProgressBar::hidden())?;
    let first = loaded.first().ok_or_else(|| BuildkitError::Protocol("the exported archive holds no image".into()))?;
    let image = store.resolve(&first.id.to_string())?;
    let exported = ExportedImage {
        layers: image.layer_blobs(),
        inline_cache: image.config.extra.get(INLINE_CACHE_KEY).cloned(),
        created: Some(now()),
    };
    let _ = store.remove_image(&image.id.to_string(), true);
    Ok(exported)
}

/// The image config for BuildKit's layers (`exported`'s rootfs): the planned config with the
/// history made to account for exactly those layers, as BuildKit's exporter normalises it
/// (surplus non-empty entries become empty from the bottom; missing ones are appended).
pub fn exported_config(planned: &ImageConfig, diff_ids: Vec<String>, created: &str) -> ImageConfig {
    let mut config = planned.clone();
    config.created = Some(created.to_string());
    config.rootfs = crate::image::RootFs { kind: "layers".to_string(), diff_ids };
    let layers = config.rootfs.diff_ids.len();
    let mut counted = 0;
    for entry in &mut config.history {
        if counted >= layers {
            entry.empty_layer = true;
        }
        if !entry.empty_layer {
            counted += 1;
        }
        if entry.created.is_none() {
            entry.created = Some(created.to_string());
        }
    }
    for _ in counted..layers {
        config.history.push(HistoryEntry {
            created: Some(created.to_string()),
            created_by: Some(String::new()),
            author: None,
            comment: Some("buildkit.exporter.image.v0".to_string()),
            empty_layer: false,
        });
    }
    config
}

/// Now, as image configs date things.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn random_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seed = format!("{}-{}-{:?}", std::process::id(), now.as_nanos(), std::thread::current().id());
    crate::layer::digest::Sha256Digest::of(seed.as_bytes()).hex()[..25].to_string()
}

/// What a failed solve says: BuildKit checks every op's capabilities against its own
/// (`unknown API capability mergeop`); such a failure names the instruction that needs it. A
/// failure in a step's op (`failed_step`, from the status stream) names that step and keeps a
/// RUN's exit status (`... exit code: 3`).
fn solve_error(message: &str, failed_step: Option<(usize, String)>, input: &SolveInput) -> BuildkitError {
    let missing = message.split("unknown API capability ").nth(1).and_then(|rest| rest.split_whitespace().next());
    let requirement = missing.and_then(|cap| input.definition.requirements.iter().find(|r| r.cap == cap));
    if let Some(r) = requirement {
        return BuildkitError::NeedsNewerBuildkit {
            file: input.dockerfile_name.to_string(),
            line: r.line,
            instruction: r.instruction.clone(),
            cap: r.cap.clone(),
        };
    }
    for (marker, flag, action) in
        [("unknown cache exporter: ", "--cache-to", "export"), ("unknown cache importer: ", "--cache-from", "import")]
    {
        if let Some((_, rest)) = message.split_once(marker) {
            let kind = rest.trim_start_matches('"').split('"').next().unwrap_or_default().to_string();
            return BuildkitError::CacheTypeUnsupported { flag, action, kind };
        }
    }
    match failed_step {
        Some((step, instruction)) => {
            BuildkitError::StepFailed { step, instruction, code: exit_code_in(message), message: message.to_string() }
        }
        None => BuildkitError::Solve(message.to_string()),
    }
}

/// The exit status in BuildKit's message for a failed exec (`executor failed running [...]:
/// exit code: 3`, newer BuildKit: `process "..." did not complete successfully: exit code: 3`).
fn exit_code_in(message: &str) -> Option<i32> {
    let (_, rest) = message.rsplit_once("exit code: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The session's shared key: BuildKit reuses what it synced before for the same key.
fn shared_key(root: &Path) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    crate::layer::digest::Sha256Digest::of(root.as_os_str().as_encoded_bytes()).hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exported_config_accounts_for_exactly_the_layers_buildkit_made() {
        let entry = |empty| HistoryEntry { empty_layer: empty, ..Default::default() };
        let mut planned = ImageConfig::scratch("linux", "amd64", None);
        planned.history = vec![entry(false), entry(true), entry(false), entry(false)];
        let mut diff_ids = vec!["sha256:a".to_string(), "sha256:b".to_string()];
        let config = exported_config(&planned, diff_ids.clone(), "2026-01-01T00:00:00Z");
        let flags: Vec<bool> = config.history.iter().map(|h| h.empty_layer).collect();
        assert_eq!(flags, [false, true, false, true], "a surplus layer entry becomes empty");
        diff_ids.push("sha256:c".into());
        diff_ids.push("sha256:d".into());
        let config = exported_config(&planned, diff_ids, "2026-01-01T00:00:00Z");
        assert_eq!(config.history.iter().filter(|h| !h.empty_layer).count(), 4, "a missing one is appended");
        assert_eq!(config.rootfs.diff_ids.len(), 4);
    }

    #[test]
    fn a_failed_runs_exit_status_is_read_from_buildkits_message() {
        assert_eq!(exit_code_in("executor failed running [/bin/sh -c exit 3]: exit code: 3"), Some(3));
        let newer = "process \"/bin/sh -c exit 42\" did not complete successfully: exit code: 42";
        assert_eq!(exit_code_in(newer), Some(42));
        assert_eq!(exit_code_in("failed to compute cache key: \"/x\" not found"), None);
    }

    #[test]
    fn cache_specs_keep_their_type_and_attributes_for_buildkit() {
        let spec = CacheSpec::parse("--cache-to", "type=registry,ref=127.0.0.1:5000/c:x,mode=max").expect("spec");
        assert_eq!(spec.kind, "registry");
        assert_eq!(spec.attrs.get("ref").map(String::as_str), Some("127.0.0.1:5000/c:x"));
        assert_eq!(spec.attrs.get("mode").map(String::as_str), Some("max"));
        let err = |text: &str| CacheSpec::parse("--cache-from", text).expect_err(text).to_string();
        assert!(err("ref=x").contains("type= is missing"));
        assert!(err("type=registry,ref").contains("not key=value"));
        assert!(err("type=registry,ref=a,ref=b").contains("ref is given twice"));
    }
}
