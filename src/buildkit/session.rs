//! The client side of a BuildKit session: the gRPC services BuildKit calls back while it
//! solves. `FileSync.DiffCopy` sends the build context (already walked with `.dockerignore`
//! applied) in fsutil's packet protocol: one STAT per entry in walk order, an empty STAT, then
//! the bytes of each file BuildKit asks for (REQ id -> DATA chunks, an empty DATA), until FIN.
//! `Health.Check` keeps the session alive; `Secrets.GetSecret` answers secret mounts;
//! `SSH.CheckAgent`/`SSH.ForwardAgent` serve `RUN --mount=type=ssh` from the `--ssh` agents
//! (BuildKit names the id in the call's metadata; each forwarded connection is one stream of
//! bytes copied to and from a fresh connection to the agent's socket);
//! `FileSend.DiffCopy` receives what an exporter streams to the client (the image tarball of
//! buildkitd's `docker` exporter, the `tar` exporter's archive) into a file.

use std::path::PathBuf;
use std::sync::Arc;

use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::{Packet, Stat};
use bollard_buildkit_proto::health::health_check_response::ServingStatus;
use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard_buildkit_proto::moby::filesync::packet::file_sync_server::{FileSync, FileSyncServer};
use bollard_buildkit_proto::moby::filesync::v1::file_send_server::{FileSend, FileSendServer};
use bollard_buildkit_proto::moby::filesync::v1::BytesMessage;
use bollard_buildkit_proto::moby::sshforward::v1 as sshforward;
use bollard_buildkit_proto::moby::sshforward::v1::ssh_server::{Ssh, SshServer};
use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::context::{ContextEntry, EntryKind};
use crate::plan::instruction::DEFAULT_SSH_ID;

/// Go's `os.FileMode` bits, which fsutil's Stat carries instead of unix modes.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_STICKY: u32 = 1 << 20;

/// How much of a file one DATA packet carries.
const CHUNK: usize = 32 * 1024;

/// The gRPC methods every session offers, as the session's headers list them.
const METHODS: &[&str] = &[
    "/moby.filesync.v1.FileSync/DiffCopy",
    "/moby.filesync.v1.FileSync/TarStream",
    "/grpc.health.v1.Health/Check",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
];

/// The method a session offers when it takes an exporter's output.
const FILE_SEND: &str = "/moby.filesync.v1.FileSend/DiffCopy";

/// The methods a session offers when it forwards ssh agents (`--ssh`).
const SSH_METHODS: &[&str] = &["/moby.sshforward.v1.SSH/CheckAgent", "/moby.sshforward.v1.SSH/ForwardAgent"];

/// The gRPC metadata key BuildKit names the agent's id in on `SSH.ForwardAgent` (sshforward's
/// `KeySSHID`); without it, the id is `default`.
const SSH_ID_KEY: &str = "buildkit.ssh.id";

/// How much one BytesMessage from the agent carries at most.
const AGENT_CHUNK: usize = 32 * 1024;

/// What a session offers besides the methods every session has.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offers {
    /// It takes an exporter's output (`FileSend`).
    pub export: bool,
    /// It forwards ssh agents (`SSH`).
    pub ssh: bool,
}

/// The session's headers (`X-Docker-Expose-Session-*`: its ID, name, shared key and methods),
/// as dockerd's `/session` upgrade and the control API's `Session` stream both take them.
pub fn headers(id: &str, shared_key: &str, offers: Offers) -> Vec<(String, String)> {
    let mut headers = vec![
        ("X-Docker-Expose-Session-Uuid".to_string(), id.to_string()),
        ("X-Docker-Expose-Session-Name".to_string(), "rbuild".to_string()),
        ("X-Docker-Expose-Session-Sharedkey".to_string(), shared_key.to_string()),
    ];
    let ssh = if offers.ssh { SSH_METHODS } else { &[] };
    let methods = METHODS.iter().chain(offers.export.then_some(&FILE_SEND)).chain(ssh);
    for method in methods {
        headers.push(("X-Docker-Expose-Session-Grpc-Method".to_string(), method.to_string()));
    }
    headers
}

/// Serves the build context.
pub struct ContextSync {
    pub root: PathBuf,
    pub entries: Arc<Vec<ContextEntry>>,
}

/// fsutil's Stat of one context entry (mode in Go's bits, mtime in nanoseconds).
fn stat_of(root: &std::path::Path, entry: &ContextEntry) -> Stat {
    let meta = std::fs::symlink_metadata(root.join(&entry.path)).ok();
    let mod_time = meta
        .as_ref()
        .map(|m| {
            std::os::unix::fs::MetadataExt::mtime(m) * 1_000_000_000 + std::os::unix::fs::MetadataExt::mtime_nsec(m)
        })
        .unwrap_or(0);
    let mut mode = entry.mode & 0o777;
    for (unix, go) in [(0o4000, GO_MODE_SETUID), (0o2000, GO_MODE_SETGID), (0o1000, GO_MODE_STICKY)] {
        if entry.mode & unix != 0 {
            mode |= go;
        }
    }
    let mut linkname = String::new();
    match &entry.kind {
        EntryKind::Dir => mode |= GO_MODE_DIR,
        EntryKind::Symlink { target } => {
            mode |= GO_MODE_SYMLINK;
            linkname = target.clone();
        }
        EntryKind::File | EntryKind::Other => {}
    }
    Stat {
        path: entry.path.clone(),
        mode,
        uid: entry.uid,
        gid: entry.gid,
        size: i64::try_from(entry.size).unwrap_or(i64::MAX),
        mod_time,
        linkname,
        ..Default::default()
    }
}

fn packet(kind: PacketType) -> Packet {
    Packet { r#type: kind as i32, ..Default::default() }
}

type Sender = mpsc::Sender<Result<Packet, Status>>;

/// Sends the stats, then answers requests until FIN.
async fn send_context(root: PathBuf, entries: Arc<Vec<ContextEntry>>, mut incoming: Streaming<Packet>, tx: Sender) {
    for entry in entries.iter() {
        let stat = Packet { stat: Some(stat_of(&root, entry)), ..packet(PacketType::PacketStat) };
        if tx.send(Ok(stat)).await.is_err() {
            return;
        }
    }
    if tx.send(Ok(packet(PacketType::PacketStat))).await.is_err() {
        return;
    }
    while let Ok(Some(message)) = incoming.message().await {
        match PacketType::try_from(message.r#type) {
            Ok(PacketType::PacketReq) => {
                let Some(entry) = entries.get(message.id as usize) else {
                    let _ = tx.send(Err(Status::not_found(format!("no context entry {}", message.id)))).await;
                    return;
                };
                if let Err(e) = send_file(&root, entry, message.id, &tx).await {
                    let _ = tx.send(Err(Status::internal(format!("reading {}: {e}", entry.path)))).await;
                    return;
                }
            }
            Ok(PacketType::PacketFin) => {
                let _ = tx.send(Ok(packet(PacketType::PacketFin))).await;
                return;
            }
            _ => {}
        }
    }
}

/// DATA packets with the file's bytes, then an empty one.
async fn send_file(root: &std::path::Path, entry: &ContextEntry, id: u32, tx: &Sender) -> std::io::Result<()> {
    let mut file = tokio::fs::File::open(root.join(&entry.path)).await?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).await?;
        let data = buf[..n].to_vec();
        let done = n == 0;
        if tx.send(Ok(Packet { id, data, ..packet(PacketType::PacketData) })).await.is_err() || done {
            return Ok(());
        }
    }
}

#[tonic::async_trait]
impl FileSync for ContextSync {
    type DiffCopyStream = ReceiverStream<Result<Packet, Status>>;
    type TarStreamStream = ReceiverStream<Result<Packet, Status>>;

    async fn diff_copy(&self, request: Request<Streaming<Packet>>) -> Result<Response<Self::DiffCopyStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(send_context(self.root.clone(), Arc::clone(&self.entries), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn tar_stream(&self, _: Request<Streaming<Packet>>) -> Result<Response<Self::TarStreamStream>, Status> {
        Err(Status::unimplemented("rbuild sends the context with diffcopy"))
    }
}

/// Answers BuildKit's session health checks.
pub struct Alive;

#[tonic::async_trait]
impl Health for Alive {
    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn check(&self, _: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse { status: ServingStatus::Serving as i32 }))
    }

    async fn list(&self, _: Request<HealthListRequest>) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("list"))
    }

    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

/// Answers `RUN --mount=type=secret` with the `--secret` values (held in memory only).
pub struct BuildSecrets(pub std::collections::BTreeMap<String, Vec<u8>>);

#[tonic::async_trait]
impl Secrets for BuildSecrets {
    async fn get_secret(&self, request: Request<GetSecretRequest>) -> Result<Response<GetSecretResponse>, Status> {
        let id = request.into_inner().id;
        match self.0.get(&id) {
            Some(data) => Ok(Response::new(GetSecretResponse { data: data.clone() })),
            None => Err(Status::not_found(format!("secret {id} not found: pass it with --secret id={id},src=FILE"))),
        }
    }
}

/// Forwards `RUN --mount=type=ssh` to the `--ssh` agents.
pub struct SshAgents {
    /// Agent socket paths by id, each checked to be a socket before the build started.
    pub sockets: BTreeMap<String, PathBuf>,
    /// Becomes true (or its sender goes away) when rbuild ends the session: every forwarded
    /// connection is then closed (tonic serves each connection on a task of its own, which
    /// aborting the session's task does not end).
    pub ended: watch::Receiver<bool>,
}

impl SshAgents {
    fn socket(&self, id: &str) -> Result<&PathBuf, Status> {
        self.sockets.get(id).ok_or_else(|| {
            Status::not_found(format!(
                "ssh agent {id} not found: pass it with --ssh {id}=SOCKET (or --ssh {id} for $SSH_AUTH_SOCK)"
            ))
        })
    }
}

#[tonic::async_trait]
impl Ssh for SshAgents {
    type ForwardAgentStream = ReceiverStream<Result<sshforward::BytesMessage, Status>>;

    async fn check_agent(
        &self,
        request: Request<sshforward::CheckAgentRequest>,
    ) -> Result<Response<sshforward::CheckAgentResponse>, Status> {
        let id = request.into_inner().id;
        self.socket(if id.is_empty() { DEFAULT_SSH_ID } else { &id })?;
        Ok(Response::new(sshforward::CheckAgentResponse {}))
    }

    async fn forward_agent(
        &self,
        request: Request<Streaming<sshforward::BytesMessage>>,
    ) -> Result<Response<Self::ForwardAgentStream>, Status> {
        let id = request.metadata().get(SSH_ID_KEY).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let socket = self.socket(if id.is_empty() { DEFAULT_SSH_ID } else { id })?;
        let agent = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| Status::unavailable(format!("connecting to the ssh agent at {}: {e}", socket.display())))?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(relay_agent(agent, request.into_inner(), tx, self.ended.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Copies BuildKit's messages to the agent and the agent's bytes back, until the conversation
/// is over: the end of BuildKit's stream shuts the agent connection's writing half (the agent
/// still answers what it was asked, then closes); the agent's end closes our stream (BuildKit
/// then closes the step's connection); a broken stream, a failed write or BuildKit dropping the
/// call, or rbuild ending the session, drops both at once. Nothing outlives the function.
async fn relay_agent(
    agent: tokio::net::UnixStream,
    mut incoming: Streaming<sshforward::BytesMessage>,
    tx: mpsc::Sender<Result<sshforward::BytesMessage, Status>>,
    mut ended: watch::Receiver<bool>,
) {
    let (mut from_agent, mut to_agent) = agent.into_split();
    let mut buf = vec![0u8; AGENT_CHUNK];
    let mut buildkit_done = false;
    loop {
        tokio::select! {
            message = incoming.message(), if !buildkit_done => match message {
                Ok(Some(message)) => {
                    if to_agent.write_all(&message.data).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    buildkit_done = true;
                    if to_agent.shutdown().await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            read = from_agent.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(Ok(sshforward::BytesMessage { data: buf[..n].to_vec() })).await.is_err() {
                        return;
                    }
                }
            },
            () = tx.closed() => return,
            // The guard `wait_for` returns is not Send: dropped inside the block.
            () = async { drop(ended.wait_for(|ended| *ended).await) } => return,
        }
    }
}

/// Writes what an exporter sends into a file (created on the first call).
pub struct ExportReceiver(pub PathBuf);

#[tonic::async_trait]
impl FileSend for ExportReceiver {
    type DiffCopyStream = ReceiverStream<Result<BytesMessage, Status>>;

    async fn diff_copy(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let mut incoming = request.into_inner();
        let failed = |e: std::io::Error| Status::internal(format!("writing {}: {e}", self.0.display()));
        // Buffered: the exporter's messages are small, each unbuffered write a blocking-pool trip.
        let file = tokio::fs::File::create(&self.0).await.map_err(failed)?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        while let Some(message) = incoming.message().await? {
            file.write_all(&message.data).await.map_err(failed)?;
        }
        file.flush().await.map_err(failed)?;
        // An empty reply stream: the exporter waits for its end to know the file is written.
        let (_, rx) = mpsc::channel(1);
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// What a session serves.
pub struct Services {
    pub context: ContextSync,
    pub secrets: BuildSecrets,
    /// The `--ssh` agents, when any were given (the session offers `SSH` only then).
    pub ssh: Option<SshAgents>,
    /// Where an exporter's output goes, when the solve streams one to the client.
    pub export: Option<ExportReceiver>,
}

/// Serves the session's services on `stream` (dockerd's upgraded `/session`, or the control
/// API's `Session` stream) until it closes.
pub async fn serve<S>(stream: S, services: Services) -> Result<(), tonic::transport::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + tonic::transport::server::Connected + Unpin + Send + 'static,
{
    tonic::transport::Server::builder()
        .add_service(FileSyncServer::new(services.context))
        .add_service(HealthServer::new(Alive))
        .add_service(SecretsServer::new(services.secrets))
        .add_optional_service(services.export.map(FileSendServer::new))
        .add_optional_service(services.ssh.map(SshServer::new))
        .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(stream)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::moby::filesync::v1::file_send_client::FileSendClient;

    /// An exporter's side of `FileSend.DiffCopy`, as BuildKit's `CopyFileWriter` drives it:
    /// chunks, the end of its stream, then it waits for the end of ours before it is done.
    #[test]
    fn an_exporters_stream_lands_in_the_file_whole() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("image.tar");
        let chunks: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 50_000]).collect();
        runtime.block_on(async {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            let services = Services {
                context: ContextSync { root: dir.path().to_path_buf(), entries: Arc::new(Vec::new()) },
                secrets: BuildSecrets(Default::default()),
                ssh: None,
                export: Some(ExportReceiver(target.clone())),
            };
            tokio::spawn(serve(ours, services));
            let channel = super::super::control::channel_on(theirs, "test").await.expect("channel");
            let messages: Vec<BytesMessage> = chunks.iter().map(|c| BytesMessage { data: c.clone() }).collect();
            let response = FileSendClient::new(channel).diff_copy(tokio_stream::iter(messages)).await.expect("call");
            let mut replies = response.into_inner();
            assert!(replies.message().await.expect("end").is_none(), "the receiver ends its stream, empty");
        });
        assert_eq!(std::fs::read(&target).expect("written"), chunks.concat());
    }

    #[test]
    fn the_session_offers_file_send_and_ssh_only_when_it_serves_them() {
        let methods = |export, ssh| -> Vec<String> {
            headers("id", "key", Offers { export, ssh })
                .into_iter()
                .filter(|(k, _)| k == "X-Docker-Expose-Session-Grpc-Method")
                .map(|(_, v)| v)
                .collect()
        };
        assert!(!methods(false, false).iter().any(|m| m == FILE_SEND));
        assert!(methods(true, false).iter().any(|m| m == FILE_SEND));
        assert!(methods(false, false).iter().any(|m| m == "/moby.filesync.v1.FileSync/DiffCopy"));
        assert!(!methods(true, false).iter().any(|m| m.contains("sshforward")));
        let with_ssh = methods(false, true);
        for method in SSH_METHODS {
            assert!(with_ssh.iter().any(|m| m == method), "{method} in {with_ssh:?}");
        }
    }

    use bollard_buildkit_proto::moby::sshforward::v1::ssh_client::SshClient;
    use tokio::net::UnixListener;

    /// A session serving `agents` (only SSH in use), a client of its SSH service, and the
    /// session's task.
    async fn ssh_session(
        agents: BTreeMap<String, PathBuf>,
    ) -> (SshClient<tonic::transport::Channel>, watch::Sender<bool>) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (session, ended) = watch::channel(false);
        let services = Services {
            context: ContextSync { root: PathBuf::from("/nonexistent"), entries: Arc::new(Vec::new()) },
            secrets: BuildSecrets(Default::default()),
            ssh: Some(SshAgents { sockets: agents, ended }),
            export: None,
        };
        tokio::spawn(serve(ours, services));
        (SshClient::new(super::super::control::channel_on(theirs, "test").await.expect("channel")), session)
    }

    /// `ForwardAgent` for `id` as BuildKit calls it: the id in the call's metadata.
    fn forward_request<S>(id: &str, messages: S) -> Request<S> {
        let mut request = Request::new(messages);
        request.metadata_mut().insert(SSH_ID_KEY, id.parse().expect("ascii id"));
        request
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    /// A listening stand-in agent socket in `dir` and a session forwarding `id` to it.
    async fn agent_and_session(
        dir: &std::path::Path,
        id: &str,
    ) -> (UnixListener, SshClient<tonic::transport::Channel>, watch::Sender<bool>) {
        let socket = dir.join("agent.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let (client, session) = ssh_session(BTreeMap::from([(id.to_string(), socket)])).await;
        (listener, client, session)
    }

    /// The client's end of its stream reaches the agent as the end of its input; the agent's
    /// answer comes back and its close ends the reply stream.
    #[test]
    fn forwarding_copies_both_ways_and_ends_with_the_agent() {
        let dir = tempfile::tempdir().expect("tempdir");
        runtime().block_on(async {
            let (listener, mut client, _session) = agent_and_session(dir.path(), "deploy").await;
            // The stand-in agent reads to the end of its input, answers it reversed, closes.
            let agent = tokio::spawn(async move {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut asked = Vec::new();
                conn.read_to_end(&mut asked).await.expect("read");
                asked.reverse();
                conn.write_all(&asked).await.expect("write");
            });
            let asked = ["hel", "lo"].map(|p| sshforward::BytesMessage { data: p.as_bytes().to_vec() });
            let reply = client.forward_agent(forward_request("deploy", tokio_stream::iter(asked))).await;
            let mut replies = reply.expect("forwarded").into_inner();
            let mut answer = Vec::new();
            while let Some(message) = replies.message().await.expect("message") {
                answer.extend(message.data);
            }
            assert_eq!(answer, b"olleh");
            agent.await.expect("the agent saw the end of its input");
        });
    }

    /// The agent closing first ends the reply stream while BuildKit's is still open; the session
    /// ending mid-conversation (the solve is over, rbuild ends it) closes the agent connection.
    #[test]
    fn either_side_closing_shuts_the_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        runtime().block_on(async {
            let (listener, mut client, session) = agent_and_session(dir.path(), "default").await;
            let wait = std::time::Duration::from_secs(5);
            // 1. The agent closes first: the reply stream ends though BuildKit's stays open.
            let (_open, rx) = mpsc::channel::<sshforward::BytesMessage>(1);
            let reply = client.forward_agent(forward_request("default", ReceiverStream::new(rx))).await;
            let (conn, _) = listener.accept().await.expect("accept");
            drop(conn);
            let mut replies = reply.expect("forwarded").into_inner();
            let end = tokio::time::timeout(wait, replies.message()).await;
            assert!(matches!(end, Ok(Ok(None))), "the reply stream ends: {end:?}");
            // 2. The session ends mid-conversation: the agent sees its connection end.
            let (tx, rx) = mpsc::channel(1);
            let reply = client.forward_agent(forward_request("default", ReceiverStream::new(rx))).await;
            let (mut conn, _) = listener.accept().await.expect("accept");
            tx.send(sshforward::BytesMessage { data: b"ping".to_vec() }).await.expect("send");
            let mut got = [0u8; 4];
            conn.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"ping");
            let _ = session.send(true);
            let mut rest = Vec::new();
            let ended = tokio::time::timeout(wait, conn.read_to_end(&mut rest)).await;
            assert!(matches!(ended, Ok(Ok(0))), "the agent connection is closed: {ended:?}");
            drop((tx, reply));
        });
    }

    #[test]
    fn unknown_ids_and_unreachable_agents_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("gone.sock");
        runtime().block_on(async {
            let (mut client, _session) = ssh_session(BTreeMap::from([("default".to_string(), gone.clone())])).await;
            let known = client.check_agent(sshforward::CheckAgentRequest { id: "default".into() }).await;
            assert!(known.is_ok(), "{known:?}");
            let empty = client.check_agent(sshforward::CheckAgentRequest { id: String::new() }).await;
            assert!(empty.is_ok(), "an empty id is the default: {empty:?}");
            let unknown = client.check_agent(sshforward::CheckAgentRequest { id: "deploy".into() }).await;
            let status = unknown.expect_err("unknown id");
            assert_eq!(status.code(), tonic::Code::NotFound);
            assert!(
                status.message().contains("ssh agent deploy not found") && status.message().contains("--ssh deploy")
            );
            let none = tokio_stream::empty::<sshforward::BytesMessage>();
            let status = client.forward_agent(forward_request("deploy", none)).await.expect_err("unknown id");
            assert_eq!(status.code(), tonic::Code::NotFound);
            // Without the metadata key the id is `default`, whose socket is gone.
            let status = client.forward_agent(tokio_stream::empty()).await.expect_err("socket gone");
            assert!(status.message().contains(&gone.display().to_string()), "{}", status.message());
        });
    }
}
