//! [`Client`]: one connection to a gateway chosen among the seeds, requests
//! with timeouts and bounded retries, reconnection, and the admin calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshgate_federation::transport::{
    CaCertificate, TransportError, client_config, insecure_client_config,
};
use meshgate_protocol::{
    CommitOffsets, CommittedOffset, CreateTopic, Fetch, FetchOffsets, FetchOk, GroupDescription,
    GroupName, GroupSummary, HelloOk, ListOffsets, MemberInfo, MirrorFollowerStatus,
    MirrorLinkStatus, MirrorRuleSpec, NodeInfo, OffsetSpec, PartitionOffset, Produce, ProduceOk,
    Reply, Request, RuleName, TopicDescription, TopicName, TopicPartitions, TopicSettings,
    TopicSummary,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::{ClientConfig, DEFAULT_PORT, Trust};
use crate::connection::Session;
use crate::error::ClientError;
use crate::nearest::{self, Candidate};

/// Picks the expected reply variant, or reports a protocol violation.
macro_rules! expect_reply {
    ($reply:expr, $pattern:pat => $value:expr) => {
        match $reply {
            $pattern => Ok($value),
            other => Err($crate::error::ClientError::Protocol(format!(
                "unexpected reply {other:?}"
            ))),
        }
    };
}
pub(crate) use expect_reply;

/// A handle on a connection to a meshgate gateway. Cheap to clone; clones
/// share the connection. Requests run concurrently, each on its own QUIC
/// stream.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    quinn_config: quinn::ClientConfig,
    current: parking_lot::Mutex<Option<Arc<Session>>>,
    /// Held while connecting, so concurrent requests that lost the
    /// connection reconnect once.
    connecting: tokio::sync::Mutex<()>,
    sessions_opened: AtomicU64,
    rng: parking_lot::Mutex<SmallRng>,
    /// Gateways nearest first, from the last discovery; tried before the
    /// seeds when the current gateway is lost.
    ranking: parking_lot::Mutex<Vec<Candidate>>,
    /// The gateway whose connection was lost last; tried last next time.
    lost: parking_lot::Mutex<Option<SocketAddr>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.inner.current.lock();
        f.debug_struct("Client")
            .field("seeds", &self.inner.config.seeds)
            .field("connected_to", &current.as_ref().map(|s| s.address()))
            .finish()
    }
}

/// Adds the default port to a seed that has none.
fn with_port(seed: &str) -> String {
    let has_port = match seed.rsplit_once(':') {
        // `[::1]:7420` or `host:7420`; a bare IPv6 address has several colons.
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (host.starts_with('[') || !host.contains(':'))
        }
        None => false,
    };
    if has_port {
        seed.to_string()
    } else if seed.contains(':') && !seed.starts_with('[') {
        format!("[{seed}]:{DEFAULT_PORT}")
    } else {
        format!("{seed}:{DEFAULT_PORT}")
    }
}

impl Client {
    /// Connects to the first seed that answers and says hello. Fails if
    /// none does (after the retry policy's attempts).
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate().map_err(ClientError::Config)?;
        let quinn_config = match &config.trust {
            Trust::CaFile(path) => {
                let ca = CaCertificate::from_pem_file(path).map_err(ClientError::Tls)?;
                client_config(&ca, &config.transport)
            }
            Trust::CaPem(pem) => {
                let ca = CaCertificate::from_pem(pem).map_err(ClientError::Tls)?;
                client_config(&ca, &config.transport)
            }
            Trust::Insecure => insecure_client_config(&config.transport),
        }
        .map_err(ClientError::Tls)?;
        let rng = match config.rng_seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        let client = Client {
            inner: Arc::new(Inner {
                config,
                quinn_config,
                current: parking_lot::Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                sessions_opened: AtomicU64::new(0),
                rng: parking_lot::Mutex::new(rng),
                ranking: parking_lot::Mutex::new(Vec::new()),
                lost: parking_lot::Mutex::new(None),
            }),
        };
        let mut retry = 0;
        loop {
            match client.session().await {
                Ok(_) => return Ok(client),
                Err(error)
                    if matches!(error, ClientError::Connect { .. })
                        && retry + 1 < client.inner.config.retry.attempts_max =>
                {
                    client.pause(retry).await;
                    retry += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The connected node's handshake (id, region, frame limit), if connected.
    pub fn node(&self) -> Option<HelloOk> {
        self.inner
            .current
            .lock()
            .as_ref()
            .map(|s| s.hello().clone())
    }

    /// A random number from the client's RNG (seeded by the configuration).
    pub(crate) fn random_u64(&self) -> u64 {
        self.inner.rng.lock().random()
    }

    /// Closes the connection. Requests made afterwards reconnect.
    pub fn close(&self) {
        if let Some(session) = self.inner.current.lock().take() {
            session.close();
        }
    }

    /// The current session, connecting if there is none.
    async fn session(&self) -> Result<Arc<Session>, ClientError> {
        if let Some(session) = self.live_session() {
            return Ok(session);
        }
        let _connecting = self.inner.connecting.lock().await;
        if let Some(session) = self.live_session() {
            return Ok(session);
        }
        let session = Arc::new(self.connect_any().await?);
        *self.inner.current.lock() = Some(session.clone());
        Ok(session)
    }

    fn live_session(&self) -> Option<Arc<Session>> {
        let current = self.inner.current.lock();
        current.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// Forgets `session` if it is still the current one.
    fn drop_session(&self, session: &Session) {
        let mut current = self.inner.current.lock();
        if current.as_ref().is_some_and(|s| s.number == session.number) {
            session.close();
            *current = None;
            *self.inner.lost.lock() = Some(session.address());
        }
    }

    /// The gateways this client ranks, nearest first (empty before a
    /// discovery or with `discover` off).
    pub fn ranking(&self) -> Vec<(String, String, SocketAddr)> {
        self.inner
            .ranking
            .lock()
            .iter()
            .map(|c| (c.node_id.clone(), c.region.clone(), c.address))
            .collect()
    }

    /// Resolves the seeds, in order. The place where nearest-node selection
    /// (measured round trips, configured preference) will reorder them.
    async fn candidates(&self) -> (Vec<SocketAddr>, Option<String>) {
        let mut addresses = Vec::new();
        let mut failure = None;
        for seed in &self.inner.config.seeds {
            match tokio::net::lookup_host(with_port(seed)).await {
                Ok(found) => {
                    for address in found {
                        if !addresses.contains(&address) {
                            addresses.push(address);
                        }
                    }
                }
                Err(error) => failure = Some(format!("{seed}: {error}")),
            }
        }
        (addresses, failure)
    }

    /// Dials one address with the connect timeout.
    async fn open(&self, address: SocketAddr) -> Result<Session, ClientError> {
        let config = &self.inner.config;
        let number = self.inner.sessions_opened.fetch_add(1, Ordering::Relaxed);
        let open = Session::open(
            address,
            self.inner.quinn_config.clone(),
            &config.client_id,
            config.response_bytes_max,
            number,
        );
        match tokio::time::timeout(config.connect_timeout, open).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Connect {
                seeds: address.to_string(),
                reason: format!("no answer within {:?}", config.connect_timeout),
            }),
        }
    }

    /// Connects to the nearest gateway that answers: the ranked ones first
    /// (after a loss, the one lost last goes to the end), else a seed, then
    /// discovers and moves to the nearest.
    async fn connect_any(&self) -> Result<Session, ClientError> {
        let ranked: Vec<Candidate> = {
            let lost = *self.inner.lost.lock();
            let mut ranked = self.inner.ranking.lock().clone();
            if let Some(lost) = lost {
                ranked.sort_by_key(|c| c.address == lost);
            }
            ranked
        };
        let lost = *self.inner.lost.lock();
        for candidate in &ranked {
            if Some(candidate.address) == lost && ranked.len() > 1 {
                continue;
            }
            if let Ok(session) = self.open(candidate.address).await {
                if let Some(lost) = lost {
                    tracing::info!(target: "meshgate::client", from = %lost, to = %candidate.address, node = %candidate.node_id, region = %candidate.region, "gateway lost; moved to the next nearest");
                }
                return Ok(session);
            }
        }
        let seed = self.connect_seed().await?;
        if !self.inner.config.discover {
            return Ok(seed);
        }
        Ok(self.discover(seed).await)
    }

    /// Asks `seed` for the membership, measures the round trip to each live
    /// gateway, keeps the ranking and returns a session to the nearest.
    async fn discover(&self, seed: Session) -> Session {
        let members = match seed.call(&Request::Members).await {
            Ok(Reply::Members(members)) => members,
            _ => return seed,
        };
        let found = nearest::candidates(&members);
        let probes: Vec<Candidate> = found
            .iter()
            .filter(|c| c.address != seed.address())
            .take(self.inner.config.probes_max.saturating_sub(1))
            .cloned()
            .collect();
        // Dial every candidate at once; each is bounded by the connect timeout.
        let mut dials = tokio::task::JoinSet::new();
        for (index, candidate) in probes.iter().enumerate() {
            let (client, address) = (self.clone(), candidate.address);
            dials.spawn(async move { (index, client.open(address).await) });
        }
        let mut opened: Vec<Option<Session>> = probes.iter().map(|_| None).collect();
        while let Some(joined) = dials.join_next().await {
            if let Ok((index, Ok(session))) = joined {
                opened[index] = Some(session);
            }
        }
        let mut sessions: Vec<(Candidate, Session)> = probes
            .into_iter()
            .zip(opened)
            .filter_map(|(candidate, session)| Some((candidate, session?)))
            .collect();
        let seed_candidate = found
            .iter()
            .find(|c| c.address == seed.address())
            .cloned()
            .unwrap_or_else(|| Candidate {
                address: seed.address(),
                node_id: seed.hello().node_id.clone(),
                region: seed.hello().region.clone(),
            });
        sessions.push((seed_candidate, seed));
        let measured: Vec<(Candidate, std::time::Duration)> =
            sessions.iter().map(|(c, s)| (c.clone(), s.rtt())).collect();
        let ranked = nearest::rank(measured, self.inner.config.preferred_region.as_deref());
        let Some((best, rtt)) = ranked.first().cloned() else {
            unreachable!("the seed session is always measured");
        };
        *self.inner.ranking.lock() = ranked.into_iter().map(|(c, _)| c).collect();
        let mut chosen = None;
        for (candidate, session) in sessions {
            if candidate == best {
                chosen = Some(session);
            } else {
                session.close();
            }
        }
        tracing::info!(target: "meshgate::client", node = %best.node_id, region = %best.region, address = %best.address, rtt_us = rtt.as_micros() as u64, "connected to the nearest gateway");
        // The chosen session is among `sessions` by construction.
        chosen.expect("the best candidate was measured from an open session")
    }

    /// Connects to the first seed that answers.
    async fn connect_seed(&self) -> Result<Session, ClientError> {
        let config = &self.inner.config;
        let (addresses, mut failure) = self.candidates().await;
        for address in addresses {
            let number = self.inner.sessions_opened.fetch_add(1, Ordering::Relaxed);
            let open = Session::open(
                address,
                self.inner.quinn_config.clone(),
                &config.client_id,
                config.response_bytes_max,
                number,
            );
            match tokio::time::timeout(config.connect_timeout, open).await {
                Ok(Ok(session)) => return Ok(session),
                // A node that answers with a typed refusal (wrong version)
                // or a broken TLS setup will not improve by retrying.
                Ok(Err(error @ (ClientError::Server(_) | ClientError::Tls(_)))) => {
                    return Err(error);
                }
                Ok(Err(error)) => failure = Some(format!("{address}: {error}")),
                Err(_) => {
                    failure = Some(format!(
                        "{address}: no answer within {:?}",
                        config.connect_timeout
                    ))
                }
            }
        }
        Err(ClientError::Connect {
            seeds: config.seeds.join(", "),
            reason: failure.unwrap_or_else(|| "no address".into()),
        })
    }

    async fn pause(&self, retry: u32) {
        let backoff = self.inner.config.retry.backoff(retry);
        let jitter_max = backoff.as_micros() as u64 / 2;
        let jitter = if jitter_max == 0 {
            0
        } else {
            self.inner.rng.lock().random_range(0..jitter_max)
        };
        tokio::time::sleep(backoff - Duration::from_micros(jitter)).await;
    }

    /// Sends `request`, retrying per the retry policy on retriable errors
    /// and lost connections (reconnecting first). A retried request is sent
    /// unchanged, so an idempotent produce keeps its sequence number.
    pub async fn request(&self, request: Request) -> Result<Reply, ClientError> {
        self.request_waiting(request, Duration::ZERO, RetryOn::Retriable)
            .await
    }

    /// Sends `request`, allowing `extra_wait` beyond the request timeout
    /// (long polls, group joins), retrying on the errors `retry_on` names.
    pub(crate) async fn request_waiting(
        &self,
        request: Request,
        extra_wait: Duration,
        retry_on: RetryOn,
    ) -> Result<Reply, ClientError> {
        let attempts_max = self.inner.config.retry.attempts_max;
        let timeout = self.inner.config.request_timeout + extra_wait;
        let mut retry = 0;
        loop {
            let result = match self.session().await {
                Ok(session) => match tokio::time::timeout(timeout, session.call(&request)).await {
                    Ok(Err(error @ ClientError::ConnectionLost(_))) => {
                        self.drop_session(&session);
                        Err(error)
                    }
                    Ok(result) => result,
                    Err(_) => Err(ClientError::Timeout {
                        what: request.kind(),
                        millis: timeout.as_millis() as u64,
                    }),
                },
                Err(error) => Err(error),
            };
            match result {
                Err(error) if retry_on.covers(&error) && retry + 1 < attempts_max => {
                    tracing::debug!(target: "meshgate::client", kind = request.kind(), %error, retry, "retrying");
                    self.pause(retry).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }

    /// Creates a topic.
    pub async fn create_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<TopicDescription, ClientError> {
        let request = Request::CreateTopic(CreateTopic {
            name: name.to_string(),
            settings,
        });
        expect_reply!(self.request(request).await?, Reply::Topic(topic) => topic)
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let request = Request::DeleteTopic(TopicName {
            name: name.to_string(),
        });
        expect_reply!(self.request(request).await?, Reply::TopicDeleted => ())
    }

    /// Lists topics.
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>, ClientError> {
        expect_reply!(self.request(Request::ListTopics).await?, Reply::Topics(topics) => topics)
    }

    /// Describes a topic and its partitions.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        let request = Request::DescribeTopic(TopicName {
            name: name.to_string(),
        });
        expect_reply!(self.request(request).await?, Reply::Topic(topic) => topic)
    }

    /// Lists consumer groups.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>, ClientError> {
        expect_reply!(self.request(Request::ListGroups).await?, Reply::Groups(groups) => groups)
    }

    /// Describes a consumer group: members, assignments, committed offsets.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        let request = Request::DescribeGroup(GroupName {
            group: group.to_string(),
        });
        expect_reply!(self.request(request).await?, Reply::Group(group) => group)
    }

    /// Finds the earliest or latest offset of a partition, or the first at
    /// a timestamp (`None` when no record is that recent).
    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: u32,
        at: OffsetSpec,
    ) -> Result<Option<u64>, ClientError> {
        let request = Request::ListOffsets(ListOffsets {
            topic: topic.to_string(),
            partition,
            at,
        });
        expect_reply!(self.request(request).await?, Reply::Offset(offset) => offset)
    }

    /// Who the connected node is.
    pub async fn node_info(&self) -> Result<NodeInfo, ClientError> {
        expect_reply!(self.request(Request::NodeInfo).await?, Reply::Node(info) => info)
    }

    /// The cluster's membership as the connected node sees it.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, ClientError> {
        expect_reply!(self.request(Request::Members).await?, Reply::Members(members) => members)
    }

    /// Adds or replaces a mirroring rule; returns every rule.
    pub async fn add_mirror_rule(
        &self,
        rule: MirrorRuleSpec,
    ) -> Result<Vec<MirrorRuleSpec>, ClientError> {
        expect_reply!(self.request(Request::AddMirrorRule(rule)).await?, Reply::MirrorRules(rules) => rules)
    }

    /// Removes a mirroring rule; returns the remaining rules.
    pub async fn remove_mirror_rule(&self, name: &str) -> Result<Vec<MirrorRuleSpec>, ClientError> {
        let request = Request::RemoveMirrorRule(RuleName {
            name: name.to_string(),
        });
        expect_reply!(self.request(request).await?, Reply::MirrorRules(rules) => rules)
    }

    /// Lists mirroring rules.
    pub async fn list_mirror_rules(&self) -> Result<Vec<MirrorRuleSpec>, ClientError> {
        expect_reply!(self.request(Request::ListMirrorRules).await?, Reply::MirrorRules(rules) => rules)
    }

    /// The connected node's pull links: state, vectors and lag.
    pub async fn mirror_status(&self) -> Result<Vec<MirrorLinkStatus>, ClientError> {
        expect_reply!(self.request(Request::MirrorStatus).await?, Reply::MirrorStatus(links) => links)
    }

    /// The regions that pull partitions from the connected node, and how
    /// far behind each is.
    pub async fn mirror_followers(&self) -> Result<Vec<MirrorFollowerStatus>, ClientError> {
        expect_reply!(self.request(Request::MirrorFollowers).await?, Reply::MirrorFollowers(followers) => followers)
    }

    /// Appends one batch (low level: [`crate::Producer`] batches for you).
    pub async fn produce(&self, produce: Produce) -> Result<ProduceOk, ClientError> {
        expect_reply!(self.request(Request::Produce(produce)).await?, Reply::Produced(ok) => ok)
    }

    /// Reads batches from a partition, waiting up to `fetch.max_wait_ms`
    /// (low level: [`crate::Consumer`] decodes and tracks positions).
    pub async fn fetch(&self, fetch: Fetch) -> Result<FetchOk, ClientError> {
        let wait = Duration::from_millis(fetch.max_wait_ms.into());
        let reply = self
            .request_waiting(Request::Fetch(fetch), wait, RetryOn::Retriable)
            .await?;
        expect_reply!(reply, Reply::Fetched(ok) => ok)
    }

    /// Commits positions of `group`; `member` is the group generation and
    /// member id when committing as a group member.
    pub async fn commit_offsets(
        &self,
        group: &str,
        member: Option<(u32, String)>,
        offsets: Vec<PartitionOffset>,
    ) -> Result<(), ClientError> {
        // A member's commit refused for a rebalance must not be retried as
        // is: the member rejoins first.
        let retry_on = match member {
            Some(_) => RetryOn::TransportOnly,
            None => RetryOn::Retriable,
        };
        let request = Request::CommitOffsets(CommitOffsets {
            group: group.to_string(),
            member,
            offsets,
        });
        let reply = self
            .request_waiting(request, Duration::ZERO, retry_on)
            .await?;
        expect_reply!(reply, Reply::Committed => ())
    }

    /// Reads the committed positions of `group` (given partitions, or all).
    pub async fn committed_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<TopicPartitions>>,
    ) -> Result<Vec<CommittedOffset>, ClientError> {
        let request = Request::FetchOffsets(FetchOffsets {
            group: group.to_string(),
            partitions,
        });
        expect_reply!(self.request(request).await?, Reply::CommittedOffsets(offsets) => offsets)
    }
}

/// Which failures a request is retried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryOn {
    /// Every retriable failure ([`ClientError::is_retriable`]).
    Retriable,
    /// Lost connections, timeouts and a busy or stopping node, but not
    /// group state (`RebalanceInProgress`), which the caller handles.
    TransportOnly,
}

impl RetryOn {
    fn covers(self, error: &ClientError) -> bool {
        match self {
            Self::Retriable => error.is_retriable(),
            Self::TransportOnly => {
                error.is_retriable()
                    && error.code() != Some(meshgate_protocol::ErrorCode::RebalanceInProgress)
            }
        }
    }
}

impl From<TransportError> for ClientError {
    fn from(error: TransportError) -> Self {
        ClientError::Tls(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_without_a_port_get_the_default_one() {
        assert_eq!(with_port("localhost"), "localhost:7420");
        assert_eq!(with_port("10.0.0.1:9000"), "10.0.0.1:9000");
        assert_eq!(with_port("[::1]:9000"), "[::1]:9000");
        assert_eq!(with_port("::1"), "[::1]:7420");
    }
}
