//! One client connection: length-prefixed frames in, responses out, one
//! request at a time and in order (as a Kafka broker does: a client that
//! pipelines requests waits in TCP's buffers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::KafkaState;
use super::dispatch::{self, HEADER_FIXED_BYTES, Outcome};

/// What the node knows about a client connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to (what Metadata advertises
    /// unless `advertise_host` is set).
    pub local: SocketAddr,
    /// The client id of the latest request.
    pub client_id: String,
}

/// How long the rest of a frame may take to arrive once its length has.
const FRAME_READ_MS_MAX: u64 = 30_000;
/// Buffer sizes of a connection's reader and writer, in bytes.
const SOCKET_BUFFER_BYTES: usize = 64 * 1024;
/// Request bytes in flight are counted in units of this many bytes.
pub const PERMIT_BYTES: usize = 1024;

/// Serves one connection until the client closes it, it sends something
/// that cannot be framed, it stays idle too long, or `shutdown` fires.
pub async fn serve(state: Arc<KafkaState>, stream: TcpStream, shutdown: CancellationToken) {
    let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let span = tracing::debug_span!(target: "meshgate::kafka", "kafka connection", %peer);
    let _enter = span.enter();
    let mut connection = Connection {
        peer,
        local,
        client_id: String::new(),
    };
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(SOCKET_BUFFER_BYTES, reader);
    let mut writer = BufWriter::with_capacity(SOCKET_BUFFER_BYTES, writer);
    let idle = Duration::from_millis(state.config.connection_idle_ms);
    let frame_bytes_max = state.node.config().limits.frame_bytes_max as usize;
    loop {
        let length = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            length = tokio::time::timeout(idle, reader.read_i32()) => match length {
                Ok(Ok(length)) => length,
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::debug!(target: "meshgate::kafka", "idle connection closed");
                    break;
                }
            },
        };
        // Checked before anything is allocated for the frame.
        let length = match usize::try_from(length) {
            Ok(length) if (HEADER_FIXED_BYTES..=frame_bytes_max).contains(&length) => length,
            _ => {
                tracing::debug!(target: "meshgate::kafka", length, frame_bytes_max, "frame length refused; closing");
                refuse_frame(&mut reader, &mut writer).await;
                break;
            }
        };
        let permits = (length / PERMIT_BYTES + 1) as u32;
        let Ok(_permit) = state
            .request_bytes
            .clone()
            .acquire_many_owned(permits)
            .await
        else {
            break;
        };
        let mut frame = vec![0; length];
        let read = tokio::time::timeout(
            Duration::from_millis(FRAME_READ_MS_MAX),
            reader.read_exact(&mut frame),
        )
        .await;
        if !matches!(read, Ok(Ok(_))) {
            break;
        }
        let outcome = dispatch::handle_frame(&state, &mut connection, Bytes::from(frame)).await;
        if let Outcome::Respond(response) = outcome
            && (writer.write_all(&response).await.is_err() || writer.flush().await.is_err())
        {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

/// Answers a frame whose length was refused with INVALID_REQUEST (42),
/// naming its correlation id when the header's first bytes arrive within a
/// second; the connection is closed after, since the rest of the frame
/// cannot be skipped safely.
async fn refuse_frame(
    reader: &mut (impl AsyncReadExt + Unpin),
    writer: &mut (impl AsyncWriteExt + Unpin),
) {
    let mut header = [0u8; HEADER_FIXED_BYTES];
    let read = tokio::time::timeout(Duration::from_secs(1), reader.read_exact(&mut header)).await;
    let correlation_id = match read {
        Ok(Ok(_)) => dispatch::fixed_header(&header).2,
        _ => 0,
    };
    let frame = dispatch::error_frame(correlation_id, ResponseError::InvalidRequest.code());
    let _ = writer.write_all(&frame).await;
    let _ = writer.flush().await;
}
