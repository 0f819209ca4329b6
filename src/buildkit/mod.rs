//! Solving a lowered build ([`crate::llb::LlbDefinition`]) on a BuildKit daemon and bringing
//! the image back: `docker://[SOCKET]` reaches the BuildKit embedded in dockerd through the
//! upgraded `/grpc` (control API) and `/session` (this client's session: the build context
//! over filesync, health) endpoints, as buildx's docker driver does. dockerd's BuildKit exports
//! with its `moby` exporter into dockerd's image store (it has no docker/oci tarball exporter),
//! so the image is exported under a temporary name, saved from dockerd as a docker archive,
//! loaded into rbuild's store and the temporary name removed.
//!
//! Progress comes from BuildKit's status stream, per op digest, and is reported as rbuild's
//! [`BuildEvent`]s for the plan step each op belongs to (so `Using cache` shows for ops
//! BuildKit had cached).
//!
//! `bollard`'s BuildKit support is not used: its solve always runs the Dockerfile frontend
//! (`definition: None`) with the context uploaded as a tarball, and its session has no
//! FileSync server; the protos are bollard's (`bollard-buildkit-proto`).

mod dockerd;
mod exports;
mod progress;
mod session;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::{SolveRequest, StatusRequest};

use crate::context::ContextEntry;
use crate::events::BuildEvent;
use crate::image::{HistoryEntry, ImageConfig};
use crate::llb::{LlbDefinition, IMAGE_CONFIG_KEY};

/// Where `--builder` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuilderUrl {
    /// `docker://[SOCKET]`: dockerd's embedded BuildKit.
    Docker { socket: PathBuf },
}

impl BuilderUrl {
    /// Reads `docker://`, `docker:///path/to/docker.sock`.
    pub fn parse(text: &str) -> Result<BuilderUrl, BuildkitError> {
        if let Some(rest) = text.strip_prefix("docker://") {
            return Ok(BuilderUrl::Docker { socket: dockerd::socket_path(rest) });
        }
        let reason = if text.starts_with("unix://") || text.starts_with("tcp://") {
            "buildkitd's own endpoints (unix://, tcp://) are not supported yet: its session runs inside the control API's Session stream, which rbuild does not tunnel yet; use docker:// (dockerd's embedded BuildKit)"
        } else {
            "expected docker://[SOCKET]"
        };
        Err(BuildkitError::BadUrl { url: text.to_string(), reason: reason.to_string() })
    }
}

/// Why a solve on BuildKit failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildkitError {
    #[error("--builder {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the builder at {endpoint}: {error}")]
    Connect { endpoint: String, error: String },
    #[error("BuildKit: {0}")]
    Protocol(String),
    /// The builder's BuildKit lacks an LLB capability an instruction's op needs.
    #[error(
        "{file}:{line}: {instruction}: needs a newer BuildKit than this builder's (it lacks the LLB capability {cap})"
    )]
    NeedsNewerBuildkit { file: String, line: usize, instruction: String, cap: String },
    /// The solve itself failed (a RUN exited non-zero, a source was missing, ...).
    #[error("BuildKit failed to solve the build: {0}")]
    Solve(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
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
    pub secrets: std::collections::BTreeMap<String, Vec<u8>>,
}

/// Solves the definition on the builder and loads the image into `store`; returns its ID.
pub fn solve(input: SolveInput, store: &crate::store::ImageStore) -> Result<String, BuildkitError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let BuilderUrl::Docker { socket } = input.builder;
    let exported = runtime.block_on(solve_on_dockerd(socket, &input))?;
    let loaded = runtime.block_on(exported_layers(socket, &exported, store));
    let removed = runtime.block_on(dockerd::remove_image(socket, &exported.name));
    let layers = loaded?;
    removed?;
    // dockerd's `moby` exporter takes the image config only from a frontend's result, never
    // from the exporter attributes a definition solve can pass: its image has BuildKit's layers
    // under a default config. The config is put back here, as BuildKit's image exporter would.
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = exported_config(&input.definition.image_config, diff_ids, &created);
    let image = store.put_image(&config, &layers, &[])?;
    Ok(image.id.to_string())
}

/// The store's blobs for the layers of the image dockerd exported: remembered from an earlier
/// build that ended with the same image (nothing to fetch), else saved from dockerd and loaded.
async fn exported_layers(
    socket: &Path,
    exported: &DockerdImage,
    store: &crate::store::ImageStore,
) -> Result<Vec<crate::store::LayerBlob>, BuildkitError> {
    let memory = exports::DockerdExports::new(store);
    if let Some((id, layers)) = exported.id.as_deref().and_then(|id| Some((id, memory.layers(id)?))) {
        tracing::debug!("dockerd's image {id} was loaded before: its layers are in the store, no save");
        return Ok(layers);
    }
    tracing::debug!("saving dockerd's image {} ({:?}) to load it", exported.name, exported.id);
    let work = store.work_dir()?;
    let archive = work.path().join("image.tar");
    let mut out = tokio::fs::File::create(&archive).await?;
    dockerd::save(socket, &exported.name, &mut out).await?;
    drop(out);
    let file = std::fs::File::open(&archive)?;
    let loaded =
        crate::store::archive::load(store, file, &archive.display().to_string(), &indicatif::ProgressBar::hidden())?;
    let first = loaded.first().ok_or_else(|| BuildkitError::Protocol("dockerd saved no image".into()))?;
    let image = store.resolve(&first.id.to_string())?;
    let layers = image.layer_blobs();
    // The loaded image (dockerd's default config) is not what the build made; its layers stay
    // (the built image holds them), and are remembered for the next build ending the same way.
    let _ = store.remove_image(&image.id.to_string(), true);
    if let Some(id) = &exported.id {
        // Best effort: a map that cannot be written costs the next build a save, nothing else.
        let _ = memory.remember(id, &layers);
    }
    Ok(layers)
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

fn random_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seed = format!("{}-{}-{:?}", std::process::id(), now.as_nanos(), std::thread::current().id());
    crate::layer::digest::Sha256Digest::of(seed.as_bytes()).hex()[..25].to_string()
}

/// The image a solve left in dockerd: its temporary name and, as the exporter reports it, ID.
struct DockerdImage {
    name: String,
    id: Option<String>,
}

async fn solve_on_dockerd(socket: &Path, input: &SolveInput<'_>) -> Result<DockerdImage, BuildkitError> {
    let session_id = random_id();
    let mut headers = vec![
        ("X-Docker-Expose-Session-Uuid".to_string(), session_id.clone()),
        ("X-Docker-Expose-Session-Name".to_string(), "rbuild".to_string()),
        ("X-Docker-Expose-Session-Sharedkey".to_string(), shared_key(input.context_root)),
    ];
    for method in session::METHODS {
        headers.push(("X-Docker-Expose-Session-Grpc-Method".to_string(), method.to_string()));
    }
    let session_stream = dockerd::upgrade(socket, "/session", &headers).await?;
    let context = session::ContextSync {
        root: input.context_root.to_path_buf(),
        entries: Arc::new(input.context_entries.clone()),
    };
    let secrets = session::BuildSecrets(input.secrets.clone());
    let session = tokio::spawn(session::serve(session_stream, context, secrets));
    let control_stream = dockerd::upgrade(socket, "/grpc", &[]).await?;
    let slot = Arc::new(Mutex::new(Some(control_stream)));
    let connector = tower::service_fn(move |_: http::Uri| {
        let stream = slot.lock().ok().and_then(|mut s| s.take());
        async move {
            stream
                .map(hyper_util::rt::TokioIo::new)
                .ok_or_else(|| std::io::Error::other("the control connection was already used"))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://docker")
        .connect_with_connector(connector)
        .await
        .map_err(|e| BuildkitError::Connect { endpoint: format!("{}/grpc", socket.display()), error: e.to_string() })?;
    let build_ref = random_id();
    let name = format!("rbuild-buildkit-{build_ref}");
    let mut attrs = HashMap::new();
    attrs.insert("name".to_string(), name.clone());
    let config = serde_json::to_string(&input.definition.image_config)
        .map_err(|e| BuildkitError::Protocol(format!("encoding the image config: {e}")))?;
    attrs.insert(IMAGE_CONFIG_KEY.to_string(), config);
    let request = SolveRequest {
        r#ref: build_ref.clone(),
        definition: Some(input.definition.definition.clone()),
        exporter_deprecated: "moby".to_string(),
        exporter_attrs_deprecated: attrs,
        session: session_id,
        entitlements: input.definition.entitlements(),
        ..Default::default()
    };
    let status_client = ControlClient::new(channel.clone());
    let reporter = progress::Reporter::new(input);
    let status = tokio::spawn(progress::follow(status_client, StatusRequest { r#ref: build_ref }, reporter));
    let solved = ControlClient::new(channel).max_decoding_message_size(16 << 20).solve(request).await;
    if let Ok(mut reporter) = status.await {
        reporter.advance(solved.is_ok());
    }
    session.abort();
    let response = solved.map_err(|e| solve_error(e.message(), input))?.into_inner();
    let id = response.exporter_response.get("containerimage.digest").cloned();
    Ok(DockerdImage { name, id })
}

/// What a failed solve says: BuildKit checks every op's capabilities against its own
/// (`unknown API capability mergeop`); such a failure names the instruction that needs it.
fn solve_error(message: &str, input: &SolveInput) -> BuildkitError {
    let missing = message.split("unknown API capability ").nth(1).and_then(|rest| rest.split_whitespace().next());
    let requirement = missing.and_then(|cap| input.definition.requirements.iter().find(|r| r.cap == cap));
    match requirement {
        Some(r) => BuildkitError::NeedsNewerBuildkit {
            file: input.dockerfile_name.to_string(),
            line: r.line,
            instruction: r.instruction.clone(),
            cap: r.cap.clone(),
        },
        None => BuildkitError::Solve(message.to_string()),
    }
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
    fn builder_urls_name_dockerd_or_say_what_is_missing() {
        assert_eq!(
            BuilderUrl::parse("docker://").expect("docker"),
            BuilderUrl::Docker { socket: PathBuf::from("/var/run/docker.sock") }
        );
        assert_eq!(
            BuilderUrl::parse("docker:///run/d.sock").expect("docker"),
            BuilderUrl::Docker { socket: PathBuf::from("/run/d.sock") }
        );
        let err = BuilderUrl::parse("tcp://127.0.0.1:1234").expect_err("tcp").to_string();
        assert!(err.contains("not supported yet"), "{err}");
        assert!(BuilderUrl::parse("ftp://x").is_err());
    }
}
