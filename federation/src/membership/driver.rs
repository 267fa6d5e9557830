//! The async shell around [`Membership`]: one task owns the gossip socket
//! and the timers, and the rest of the node talks to it through a cloneable
//! [`MembershipHandle`].
//!
//! Time is read from `tokio::time` only, so under turmoil the simulated
//! clock drives it; `select!` is `biased` (commands, then timers, then the
//! socket) so a flood of datagrams cannot starve timers.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::cluster_config::ConfigChange;
use super::error::MembershipError;
use super::machine::Membership;
use super::metadata::MemberMetadata;
use super::view::{MemberView, MembershipEvent, MembershipStats, MembershipTimer};

/// A UDP socket as the driver needs it. Implemented for tokio's socket
/// (production) and turmoil's (simulation).
pub trait GossipSocket: Send + Sync + 'static {
    /// The address the socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Receives one datagram into `buffer`; a datagram longer than the
    /// buffer is truncated. Must be cancel safe: nothing is lost if the
    /// future is dropped before it completes.
    fn recv_from(
        &self,
        buffer: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;

    /// Sends one datagram.
    fn send_to(
        &self,
        payload: &[u8],
        destination: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send;
}

impl GossipSocket for tokio::net::UdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }

    fn recv_from(
        &self,
        buffer: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        tokio::net::UdpSocket::recv_from(self, buffer)
    }

    fn send_to(
        &self,
        payload: &[u8],
        destination: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        tokio::net::UdpSocket::send_to(self, payload, destination)
    }
}

impl GossipSocket for turmoil::net::UdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        turmoil::net::UdpSocket::local_addr(self)
    }

    /// turmoil's `recv_from` takes the receive lock, waits until readable,
    /// then takes the datagram: dropping it while waiting loses nothing.
    fn recv_from(
        &self,
        buffer: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        turmoil::net::UdpSocket::recv_from(self, buffer)
    }

    fn send_to(
        &self,
        payload: &[u8],
        destination: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        turmoil::net::UdpSocket::send_to(self, payload, destination)
    }
}

enum Command {
    Members(oneshot::Sender<Vec<MemberView>>),
    Stats(oneshot::Sender<MembershipStats>),
    ConfigEntries(oneshot::Sender<Vec<ConfigChange>>),
    Join {
        seeds: Vec<SocketAddr>,
        reply: oneshot::Sender<Result<(), MembershipError>>,
    },
    PublishConfig {
        key: String,
        value: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<ConfigChange, MembershipError>>,
    },
    SetMetadata {
        metadata: MemberMetadata,
        reply: oneshot::Sender<Result<u64, MembershipError>>,
    },
    Leave(oneshot::Sender<Result<(), MembershipError>>),
}

/// The task that runs a [`Membership`] over a [`GossipSocket`]. Build it
/// with [`MembershipDriver::new`], spawn [`MembershipDriver::run`], keep the
/// handle.
pub struct MembershipDriver<S> {
    core: Membership,
    socket: S,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<MembershipEvent>,
    /// Armed timers by deadline, ties broken by arming order. foca keeps a
    /// bounded number armed (a few per member it knows), the core two more.
    timers: BTreeMap<(Instant, u64), MembershipTimer>,
    timers_armed: u64,
}

impl<S: GossipSocket> MembershipDriver<S> {
    /// Wraps `core` and `socket`; channel sizes come from the core's
    /// configuration.
    pub fn new(core: Membership, socket: S) -> (Self, MembershipHandle) {
        let (command_sender, commands) = mpsc::channel(core.config().command_channel_capacity);
        let (events, _) = broadcast::channel(core.config().event_channel_capacity);
        let handle = MembershipHandle {
            commands: command_sender,
            events: events.clone(),
        };
        let driver = Self {
            core,
            socket,
            commands,
            events,
            timers: BTreeMap::new(),
            timers_armed: 0,
        };
        (driver, handle)
    }

    /// Runs until [`MembershipHandle::leave`] (or every handle is dropped,
    /// which leaves too), or until the socket fails to receive.
    pub async fn run(self) -> Result<(), MembershipError> {
        let identity = self.core.identity();
        let span = tracing::info_span!(
            target: "meshgate::federation::membership",
            "membership",
            node = %identity.node(),
            region = %identity.region().as_str(),
            gossip = %identity.addresses().gossip,
        );
        self.run_loop().instrument(span).await
    }

    async fn run_loop(mut self) -> Result<(), MembershipError> {
        let mut buffer = vec![0; self.core.config().packet_bytes_max() + 1];
        loop {
            self.flush().await;
            let deadline = self
                .timers
                .first_key_value()
                .map(|((deadline, _), _)| *deadline);
            tokio::select! {
                biased;
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        // Every handle is gone: nobody can stop this node
                        // any more, so it leaves now rather than linger.
                        let _ = self.leave().await;
                        return Ok(());
                    };
                    if self.handle_command(command).await.is_break() {
                        return Ok(());
                    }
                }
                () = sleep_until(deadline) => self.fire_due_timers(),
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((length, from)) => {
                        let now = Instant::now().into_std();
                        // Drops are counted by the core.
                        let _ = self.core.handle_packet(now, from, &buffer[..length]);
                    }
                    // ICMP errors of earlier sends surface here on some
                    // systems; they say nothing about this socket.
                    Err(error) if matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
                    ) => self.core.note_send_failure(),
                    Err(error) => return Err(MembershipError::Socket(error)),
                },
            }
        }
    }

    /// Serves one request; breaks after a leave.
    async fn handle_command(&mut self, command: Command) -> ControlFlow<()> {
        // A requester that went away does not care about the answer.
        match command {
            Command::Members(reply) => {
                let _ = reply.send(self.core.members());
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.core.stats());
            }
            Command::ConfigEntries(reply) => {
                let _ = reply.send(self.core.config_entries());
            }
            Command::Join { seeds, reply } => {
                let _ = reply.send(self.core.join(&seeds));
            }
            Command::PublishConfig { key, value, reply } => {
                let _ = reply.send(self.core.publish_config(&key, value));
            }
            Command::SetMetadata { metadata, reply } => {
                let _ = reply.send(self.core.set_metadata(metadata));
            }
            Command::Leave(reply) => {
                let _ = reply.send(self.leave().await);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    async fn leave(&mut self) -> Result<(), MembershipError> {
        let result = self.core.leave();
        self.flush().await;
        result
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            self.core.handle_timer(timer);
        }
    }

    /// Arms new timers, publishes events and sends datagrams.
    async fn flush(&mut self) {
        let now = Instant::now();
        while let Some((delay, timer)) = self.core.poll_timer() {
            self.timers_armed += 1;
            self.timers.insert((now + delay, self.timers_armed), timer);
        }
        while let Some(event) = self.core.poll_event() {
            // No subscriber is fine; a slow one sees `Lagged`.
            let _ = self.events.send(event);
        }
        while let Some(transmit) = self.core.poll_transmit() {
            if let Err(error) = self
                .socket
                .send_to(&transmit.payload, transmit.destination)
                .await
            {
                self.core.note_send_failure();
                tracing::debug!(
                    target: "meshgate::federation::membership",
                    destination = %transmit.destination,
                    %error,
                    "gossip send failed"
                );
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The rest of the node's way to the membership driver. Cheap to clone.
#[derive(Clone)]
pub struct MembershipHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<MembershipEvent>,
}

impl MembershipHandle {
    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MembershipError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| MembershipError::Stopped)?;
        answer.await.map_err(|_| MembershipError::Stopped)
    }

    /// A snapshot of the membership view (see [`Membership::members`]).
    pub async fn members(&self) -> Result<Vec<MemberView>, MembershipError> {
        self.request(Command::Members).await
    }

    /// Counters, with members counted by state.
    pub async fn stats(&self) -> Result<MembershipStats, MembershipError> {
        self.request(Command::Stats).await
    }

    /// Live cluster configuration entries, by key.
    pub async fn config_entries(&self) -> Result<Vec<ConfigChange>, MembershipError> {
        self.request(Command::ConfigEntries).await
    }

    /// Announces to `seeds` and keeps re-announcing while isolated (see
    /// [`Membership::join`]).
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<(), MembershipError> {
        self.request(|reply| Command::Join { seeds, reply }).await?
    }

    /// Publishes a configuration change (see [`Membership::publish_config`]).
    pub async fn publish_config(
        &self,
        key: impl Into<String>,
        value: Option<Vec<u8>>,
    ) -> Result<ConfigChange, MembershipError> {
        let key = key.into();
        self.request(|reply| Command::PublishConfig { key, value, reply })
            .await?
    }

    /// Replaces this node's metadata (see [`Membership::set_metadata`]).
    pub async fn set_metadata(&self, metadata: MemberMetadata) -> Result<u64, MembershipError> {
        self.request(|reply| Command::SetMetadata { metadata, reply })
            .await?
    }

    /// Leaves gracefully: the driver announces it, sends the datagrams, then
    /// stops. Returns once they were sent.
    pub async fn leave(&self) -> Result<(), MembershipError> {
        self.request(Command::Leave).await?
    }

    /// Subscribes to events from now on. The channel is bounded
    /// (`event_channel_capacity`): a subscriber that falls behind gets
    /// `RecvError::Lagged` and misses the oldest events, and should re-read
    /// [`MembershipHandle::members`].
    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }
}
