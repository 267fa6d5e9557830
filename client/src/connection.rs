//! One QUIC connection to one node: dial, the `Hello` handshake, and
//! request/response exchanges, one bidirectional stream each.

use std::net::SocketAddr;

use meshgate_federation::transport::{CLUSTER_SERVER_NAME, bind_endpoint};
use meshgate_protocol::{
    Hello, HelloOk, PROTOCOL_VERSION, ProtocolError, Reply, Request, Response, frame,
};

use crate::error::ClientError;

/// Encodes a request as a frame, like `frame::encode`, but sized up front
/// from the records it carries: a produce request of a large batch is then
/// written once instead of being copied each time its buffer grows.
fn encode(request: &Request) -> Result<bytes::Bytes, ClientError> {
    let hint = match request {
        Request::Produce(produce) => produce
            .records
            .iter()
            .map(|record| {
                // Field names and length prefixes: a few dozen bytes a record.
                let headers: usize = record
                    .headers
                    .iter()
                    .map(|h| h.key.len() + h.value.len() + 24)
                    .sum();
                record.key.as_ref().map_or(0, |key| key.len()) + record.value.len() + headers + 40
            })
            .sum::<usize>(),
        _ => 0,
    };
    let mut out = Vec::with_capacity(frame::LENGTH_PREFIX_BYTES + 256 + hint);
    out.extend_from_slice(&[0; frame::LENGTH_PREFIX_BYTES]);
    rmp_serde::encode::write_named(&mut out, request)
        .map_err(|error| ClientError::Malformed(ProtocolError::Encode(error)))?;
    let body = out.len() - frame::LENGTH_PREFIX_BYTES;
    let length = u32::try_from(body).map_err(|_| {
        ClientError::TooLarge(format!("a {} request of {body} bytes", request.kind()))
    })?;
    out[..frame::LENGTH_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(bytes::Bytes::from(out))
}

/// A connected, greeted node.
#[derive(Debug)]
pub(crate) struct Session {
    connection: quinn::Connection,
    /// Kept so the socket lives as long as the session.
    _endpoint: quinn::Endpoint,
    hello: HelloOk,
    address: SocketAddr,
    /// Distinguishes this session from the ones before and after it, so a
    /// request that saw it fail only replaces this one.
    pub(crate) number: u64,
    response_bytes_max: usize,
}

impl Session {
    /// Dials `address`, checks the certificate and says hello.
    pub(crate) async fn open(
        address: SocketAddr,
        quinn_config: quinn::ClientConfig,
        client_id: &str,
        response_bytes_max: usize,
        number: u64,
    ) -> Result<Session, ClientError> {
        let local: SocketAddr = if address.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let endpoint = bind_endpoint(local, quinn::EndpointConfig::default(), None)
            .map_err(ClientError::Tls)?;
        let connecting = endpoint
            .connect_with(quinn_config, address, CLUSTER_SERVER_NAME)
            .map_err(|error| ClientError::Connect {
                seeds: address.to_string(),
                reason: error.to_string(),
            })?;
        let connection = connecting.await.map_err(|error| ClientError::Connect {
            seeds: address.to_string(),
            reason: error.to_string(),
        })?;
        let mut session = Session {
            connection,
            _endpoint: endpoint,
            hello: HelloOk {
                version: PROTOCOL_VERSION,
                node_id: String::new(),
                region: String::new(),
                // Until the node says otherwise, assume the protocol's default.
                frame_bytes_max: meshgate_protocol::frame::FRAME_BYTES_MAX_DEFAULT as u32,
            },
            address,
            number,
            response_bytes_max,
        };
        let hello = Request::Hello(Hello {
            version: PROTOCOL_VERSION,
            client_id: client_id.to_string(),
        });
        match session.call(&hello).await? {
            Reply::Hello(ok) => session.hello = ok,
            other => {
                return Err(ClientError::Protocol(format!(
                    "hello answered with {other:?}"
                )));
            }
        }
        tracing::debug!(target: "meshgate::client", %address, node = %session.hello.node_id, "connected");
        Ok(session)
    }

    /// The node's half of the handshake.
    pub(crate) fn hello(&self) -> &HelloOk {
        &self.hello
    }

    /// The node's address.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// True once the connection is closed, for whatever reason.
    pub(crate) fn is_closed(&self) -> bool {
        self.connection.close_reason().is_some()
    }

    /// Closes the connection.
    pub(crate) fn close(&self) {
        self.connection
            .close(quinn::VarInt::from_u32(0), b"client closed");
    }

    /// Sends one request on a new stream and reads its response.
    pub(crate) async fn call(&self, request: &Request) -> Result<Reply, ClientError> {
        let encoded = encode(request)?;
        let body_bytes = encoded.len() - frame::LENGTH_PREFIX_BYTES;
        if body_bytes > self.hello.frame_bytes_max as usize {
            return Err(ClientError::TooLarge(format!(
                "{} request of {body_bytes} bytes exceeds the node's frame limit of {}",
                request.kind(),
                self.hello.frame_bytes_max
            )));
        }
        let (mut send, mut recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|error| ClientError::ConnectionLost(error.to_string()))?;
        if let Err(error) = send.write_all(&encoded).await {
            return Err(self.stream_failure(error.to_string()));
        }
        // Finishing only fails when the stream is already closed; the read
        // below then reports why.
        let _ = send.finish();
        let limit = self.response_bytes_max + frame::LENGTH_PREFIX_BYTES;
        let bytes = match recv.read_to_end(limit).await {
            Ok(bytes) => bytes,
            Err(quinn::ReadToEndError::TooLong) => {
                return Err(ClientError::Malformed(ProtocolError::FrameTooLarge {
                    bytes: limit as u64,
                    bytes_max: self.response_bytes_max as u64,
                }));
            }
            Err(error) => return Err(self.stream_failure(error.to_string())),
        };
        let total = frame::check(&bytes, self.response_bytes_max)
            .map_err(ClientError::Malformed)?
            .ok_or_else(|| {
                ClientError::Malformed(ProtocolError::Truncated {
                    missing: frame::LENGTH_PREFIX_BYTES.saturating_sub(bytes.len()) as u64,
                })
            })?;
        if total != bytes.len() {
            return Err(ClientError::Protocol(format!(
                "{} bytes after the response frame",
                bytes.len() - total
            )));
        }
        let response: Response = frame::decode(&bytes).map_err(ClientError::Malformed)?;
        response.map_err(ClientError::Server)
    }

    /// A stream failed: the connection is gone, or only this stream.
    fn stream_failure(&self, reason: String) -> ClientError {
        match self.connection.close_reason() {
            Some(why) => ClientError::ConnectionLost(why.to_string()),
            None => ClientError::Protocol(format!("stream failed: {reason}")),
        }
    }
}
