//! The client listener: QUIC connections, one task per request stream, the
//! version handshake, limits, and a graceful stop.
//!
//! Each request has its own bidirectional stream (see
//! `meshgate_protocol`); QUIC's stream limit (`limits.streams_per_connection_max`)
//! bounds the requests in flight per connection, and a semaphore bounds the
//! connections. A frame that does not decode, is truncated or too large is
//! answered with a typed error on its stream and changes nothing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use meshgate_protocol::{
    ErrorCode, Hello, HelloOk, PROTOCOL_VERSION, Reply, Request, Response, WireError, frame,
};
use quinn::{Connection, Endpoint, Incoming, RecvStream, SendStream, VarInt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::node::Node;

/// QUIC application close code of a graceful shutdown.
pub const CLOSE_SHUTDOWN: u32 = 0;
/// QUIC application close code when the node refuses a connection (limit).
pub const CLOSE_REFUSED: u32 = 1;
/// Stream stop code when a frame was too large to read.
const STOP_FRAME_TOO_LARGE: u32 = ErrorCode::FrameTooLarge as u32;

/// What a connection knows about itself.
#[derive(Debug, Default)]
struct ConnectionState {
    /// Set by the handshake: the client's name.
    client_id: OnceLock<String>,
}

/// Accepts client connections on `endpoint` until `shutdown` fires, then
/// stops accepting, lets in-flight requests finish (up to the grace period)
/// and closes the endpoint.
pub async fn serve(node: Arc<Node>, endpoint: Endpoint, shutdown: CancellationToken) {
    let limits = node.config().limits.clone();
    let connections = Arc::new(Semaphore::new(limits.connections_max as usize));
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                match connections.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (node, shutdown, streams) = (node.clone(), shutdown.clone(), tracker.clone());
                        tracker.spawn(async move {
                            serve_connection(node, incoming, shutdown, streams).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(target: "meshgate::server", remote = %incoming.remote_address(), "connection limit reached; refusing");
                        incoming.refuse();
                    }
                }
            }
        }
    }
    endpoint.set_server_config(None);
    tracker.close();
    let grace = Duration::from_millis(node.config().shutdown_grace_ms);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(target: "meshgate::server", "requests still running after the grace period are cut off");
    }
    endpoint.close(VarInt::from_u32(CLOSE_SHUTDOWN), b"shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

async fn serve_connection(
    node: Arc<Node>,
    incoming: Incoming,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let remote = incoming.remote_address();
    let connection: Connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::debug!(target: "meshgate::server", %remote, %error, "handshake failed");
            return;
        }
    };
    let span = tracing::debug_span!(target: "meshgate::server", "connection", %remote);
    let _enter = span.enter();
    let state = Arc::new(ConnectionState::default());
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            stream = connection.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let (node, state) = (node.clone(), state.clone());
                    tracker.spawn(serve_stream(node, state, send, recv));
                }
                Err(error) => {
                    tracing::debug!(target: "meshgate::server", %remote, %error, "connection closed");
                    break;
                }
            }
        }
    }
}

async fn serve_stream(
    node: Arc<Node>,
    state: Arc<ConnectionState>,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let frame_bytes_max = node.config().limits.frame_bytes_max as usize;
    let response: Response = match frame::read::<_, Request>(&mut recv, frame_bytes_max).await {
        Ok(Some(Request::Hello(hello))) => handshake(&node, &state, hello),
        Ok(Some(request)) => match state.client_id.get() {
            Some(_) => node.handle(request).await,
            None => Err(WireError::new(
                ErrorCode::HandshakeRequired,
                format!("send hello before {}", request.kind()),
            )),
        },
        Ok(None) => return,
        Err(error) => {
            if matches!(
                error,
                meshgate_protocol::ProtocolError::FrameTooLarge { .. }
            ) {
                let _ = recv.stop(VarInt::from_u32(STOP_FRAME_TOO_LARGE));
            }
            tracing::debug!(target: "meshgate::server", %error, "bad frame");
            Err(error.to_wire())
        }
    };
    if let Err(error) = frame::write(&mut send, &response).await {
        tracing::debug!(target: "meshgate::server", %error, "could not answer");
        return;
    }
    let _ = send.finish();
}

fn handshake(node: &Node, state: &ConnectionState, hello: Hello) -> Response {
    if hello.version != PROTOCOL_VERSION {
        return Err(WireError::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this node speaks {PROTOCOL_VERSION}",
                hello.version
            ),
        ));
    }
    if state.client_id.set(hello.client_id.clone()).is_err() {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            "hello was sent twice on this connection",
        ));
    }
    tracing::debug!(target: "meshgate::server", client_id = %hello.client_id, "client said hello");
    Ok(Reply::Hello(HelloOk {
        version: PROTOCOL_VERSION,
        node_id: node.node_id().to_string(),
        region: node.region().to_string(),
        frame_bytes_max: node.config().limits.frame_bytes_max,
    }))
}
