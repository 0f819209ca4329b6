//! Reaching BuildKit's control API and carrying the client's session to it.
//!
//! The control channel: dockerd's upgraded `/grpc` for `docker://`, the unix socket or TCP
//! address (TLS from PEM files) for buildkitd. The session: BuildKit calls the client's
//! services (filesync, secrets, health, file send) over an HTTP/2 connection on which the
//! client is the server. dockerd takes that connection as its `/session` upgrade; buildkitd
//! takes it through the control API's bidirectional `Session` stream, each direction's bytes
//! in `BytesMessage` frames and the session's headers as the call's gRPC metadata (BuildKit's
//! `grpchijack`). [`session_stream`] is that tunnel, as a byte stream the session's server
//! runs on.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::BytesMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint as TonicEndpoint, Identity};

use super::builder_url::{Endpoint, TlsFiles};
use super::BuildkitError;

/// How much of the session's bytes one frame carries at most.
const FRAME: usize = 32 * 1024;

/// A channel on one already-connected stream (dockerd's upgraded `/grpc`).
pub async fn channel_on<S>(stream: S, endpoint: &str) -> Result<Channel, BuildkitError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let slot = Arc::new(Mutex::new(Some(stream)));
    let connector = tower::service_fn(move |_: http::Uri| {
        let stream = slot.lock().ok().and_then(|mut s| s.take());
        async move {
            stream
                .map(hyper_util::rt::TokioIo::new)
                .ok_or_else(|| std::io::Error::other("the control connection was already used"))
        }
    });
    TonicEndpoint::from_static("http://buildkit")
        .connect_with_connector(connector)
        .await
        .map_err(|e| BuildkitError::Connect { endpoint: endpoint.to_string(), error: error_chain(&e) })
}

/// A channel to buildkitd at `endpoint`.
pub async fn connect(endpoint: &Endpoint, tls: Option<&TlsFiles>) -> Result<Channel, BuildkitError> {
    let failed = |name: &str, e: &dyn std::error::Error| BuildkitError::Connect {
        endpoint: name.to_string(),
        error: error_chain(e),
    };
    match endpoint {
        Endpoint::Unix(path) => {
            let path = path.clone();
            let name = format!("unix://{}", path.display());
            let connector = tower::service_fn(move |_: http::Uri| {
                let path = path.clone();
                async move { tokio::net::UnixStream::connect(path).await.map(hyper_util::rt::TokioIo::new) }
            });
            TonicEndpoint::from_static("http://buildkitd")
                .connect_with_connector(connector)
                .await
                .map_err(|e| failed(&name, &e))
        }
        Endpoint::Tcp(address) => {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let name = format!("tcp://{address}");
            let mut endpoint = TonicEndpoint::from_shared(format!("{scheme}://{address}"))
                .map_err(|e| BuildkitError::BadUrl { url: name.clone(), reason: e.to_string() })?;
            if let Some(files) = tls {
                endpoint = endpoint.tls_config(tls_config(files)?).map_err(|e| failed(&name, &e))?;
            }
            endpoint.connect().await.map_err(|e| failed(&name, &e))
        }
    }
}

fn tls_config(files: &TlsFiles) -> Result<ClientTlsConfig, BuildkitError> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| BuildkitError::Tls(format!("reading the {what} {}: {e}", path.display())))
    };
    let mut config = ClientTlsConfig::new();
    match &files.ca {
        Some(ca) => config = config.ca_certificate(Certificate::from_pem(read(ca, "CA certificate (cacert=)")?)),
        None => config = config.with_native_roots(),
    }
    if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
        config = config.identity(Identity::from_pem(read(cert, "certificate (cert=)")?, read(key, "key (key=)")?));
    }
    if let Some(name) = &files.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

/// Opens the control API's `Session` stream with the session's `headers` as metadata and
/// returns the tunnelled connection, on which the session's server then runs.
pub async fn session_stream(channel: Channel, headers: &[(String, String)]) -> Result<DuplexStream, BuildkitError> {
    let (outgoing_tx, outgoing_rx) = mpsc::channel::<BytesMessage>(16);
    let mut request = tonic::Request::new(ReceiverStream::new(outgoing_rx));
    for (key, value) in headers {
        let key = tonic::metadata::MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes())
            .map_err(|e| BuildkitError::Protocol(format!("session header {key}: {e}")))?;
        let value = value.parse().map_err(|e| BuildkitError::Protocol(format!("session header value {value}: {e}")))?;
        request.metadata_mut().append(key, value);
    }
    let (ours, theirs) = tokio::io::duplex(4 * FRAME);
    let (mut from_session, mut to_session) = tokio::io::split(theirs);
    // The session's bytes out: what our server writes, framed.
    tokio::spawn(async move {
        let mut buf = vec![0u8; FRAME];
        while let Ok(n @ 1..) = from_session.read(&mut buf).await {
            if outgoing_tx.send(BytesMessage { data: buf[..n].to_vec() }).await.is_err() {
                break;
            }
        }
    });
    let response = ControlClient::new(channel)
        .session(request)
        .await
        .map_err(|e| BuildkitError::Protocol(format!("opening the session stream: {}", e.message())))?;
    let mut incoming = response.into_inner();
    // The session's bytes in: BuildKit's frames, unwrapped for our server.
    tokio::spawn(async move {
        while let Ok(Some(message)) = incoming.message().await {
            if to_session.write_all(&message.data).await.is_err() {
                break;
            }
        }
        let _ = to_session.shutdown().await;
    });
    Ok(ours)
}

/// An error with its sources (tonic's transport errors say little at the top).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
