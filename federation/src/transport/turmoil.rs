//! [`TurmoilUdpSocket`]: quinn's socket seam over turmoil's simulated UDP.
//!
//! Use it with [`quinn::TokioRuntime`], whose `now()` and timers read
//! tokio's clock, which turmoil pauses and advances; then the real quinn
//! endpoint runs on simulated time and a seed replays the same packet
//! schedule (DESIGN.md, "The QUIC seam").
//!
//! turmoil's socket offers `readable().await` and `try_recv_from`, no poll
//! methods, so receiving keeps one boxed `readable()` future between polls.
//! That future holds the socket's receive lock while pending, and
//! `try_recv_from` returns `WouldBlock` as long as it does: so we only try to
//! receive when no readable future is pending. Sending never blocks in
//! turmoil (there is no backpressure on simulated UDP), so the socket always
//! reports itself writable.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// A boxed `readable()` future of the turmoil socket; it owns an `Arc` of
/// the socket so it can be stored between polls.
type ReadableFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// How many times one `poll_recv` may find the socket readable and still
/// receive nothing before it yields. turmoil buffers the datagram when
/// `readable()` completes, so the second try succeeds; the bound only keeps a
/// surprise from becoming a busy loop.
const RECV_ATTEMPTS_MAX: usize = 4;

/// A [`quinn::AsyncUdpSocket`] over [`turmoil::net::UdpSocket`].
///
/// One datagram per send and per receive: generic segmentation and receive
/// offload are off (`max_transmit_segments` and `max_receive_segments` are
/// 1), and ECN is not simulated.
pub struct TurmoilUdpSocket {
    socket: Arc<::turmoil::net::UdpSocket>,
    /// The one pending `readable()` future, if any. Locked only inside
    /// `poll_recv`, never across an await.
    readable: Mutex<Option<ReadableFuture>>,
}

impl TurmoilUdpSocket {
    /// Binds a simulated UDP socket on `addr`; must be called from a turmoil
    /// host.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = ::turmoil::net::UdpSocket::bind(addr).await?;
        Ok(Self::new(socket))
    }

    /// Wraps a bound turmoil socket.
    pub fn new(socket: ::turmoil::net::UdpSocket) -> Self {
        Self {
            socket: Arc::new(socket),
            readable: Mutex::new(None),
        }
    }
}

impl fmt::Debug for TurmoilUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurmoilUdpSocket")
            .field("local_addr", &self.socket.local_addr().ok())
            .finish()
    }
}

/// Always writable: turmoil's simulated UDP never pushes back.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for TurmoilUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // `max_transmit_segments` is 1, so quinn never batches datagrams.
        assert!(
            transmit.segment_size.is_none()
                || transmit.segment_size == Some(transmit.contents.len()),
            "quinn sent a GSO batch to a socket that does not support it"
        );
        match self
            .socket
            .try_send_to(transmit.contents, transmit.destination)
        {
            Ok(_sent) => Ok(()),
            // quinn ends a connection's driver on any error but WouldBlock,
            // and a real socket (quinn-udp) drops a datagram it cannot send
            // (unreachable network, unknown host) and reports success; do
            // the same, and let QUIC's loss recovery and timeouts decide.
            Err(error) => {
                tracing::trace!(
                    target: "meshgate::federation::transport",
                    destination = %transmit.destination,
                    %error,
                    "simulated datagram dropped"
                );
                Ok(())
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        assert!(
            !bufs.is_empty() && !meta.is_empty(),
            "quinn polls with at least one buffer"
        );
        // The mutex is only taken here and in no other place, and quinn
        // polls a socket from its one endpoint driver task, so a poisoned
        // lock means a panic in this very function: propagate it.
        let mut readable = self.readable.lock().expect("readable slot poisoned");
        for _ in 0..RECV_ATTEMPTS_MAX {
            if let Some(future) = readable.as_mut() {
                match future.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => {
                        // Drop the finished future first: it releases the
                        // receive lock that `try_recv_from` needs.
                        *readable = None;
                        result?;
                    }
                }
            }
            match self.socket.try_recv_from(&mut bufs[0]) {
                Ok((len, addr)) => {
                    meta[0] = RecvMeta {
                        addr,
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let socket = Arc::clone(&self.socket);
                    *readable = Some(Box::pin(async move { socket.readable().await }));
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        // Readable kept firing without a datagram: yield instead of spinning,
        // and come back on the next poll of the task.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    fn may_fragment(&self) -> bool {
        false
    }
}
