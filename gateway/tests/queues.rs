//! Dispatch queues end to end: real gateways on 127.0.0.1 port 0, rules
//! created through the client, records produced to a hot topic, messages
//! received with leases.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use meshgate_client::{Client, ErrorCode, Header, QueueOptions, QueueSpec};
use meshgate_protocol::{Acks, Produce, ProduceRecord, QueueMessage, SettleAction};
use support::{bounded, client, config, start, topic};

fn spec(name: &str, tags: &str) -> QueueSpec {
    QueueSpec {
        name: name.into(),
        topic: "orders".into(),
        tags: tags.into(),
        filter_header: None,
        filter_key_prefix: None,
        options: QueueOptions::default(),
    }
}

fn record(key: Option<&str>, value: &str, headers: &[(&str, &str)]) -> ProduceRecord {
    ProduceRecord {
        key: key.map(|key| Bytes::copy_from_slice(key.as_bytes())),
        value: Bytes::copy_from_slice(value.as_bytes()),
        headers: headers
            .iter()
            .map(|(key, value)| Header {
                key: key.to_string(),
                value: Bytes::copy_from_slice(value.as_bytes()),
            })
            .collect(),
    }
}

async fn produce(client: &Client, partition: u32, records: Vec<ProduceRecord>) {
    client
        .produce(Produce {
            topic: "orders".into(),
            partition,
            records,
            acks: Acks::Local,
            producer: None,
        })
        .await
        .expect("produced");
}

/// Receives until `count` messages came or a receive waited `wait` in vain.
async fn receive_all(
    client: &Client,
    queue: &str,
    count: usize,
    wait: Duration,
) -> Vec<QueueMessage> {
    let mut all = Vec::new();
    while all.len() < count {
        let batch = client
            .receive(queue, 1_000, wait, None)
            .await
            .expect("receives");
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    all
}

async fn ack_all(client: &Client, queue: &str, messages: &[QueueMessage]) {
    let leases = messages.iter().map(|message| message.lease).collect();
    let outcomes = client
        .settle(queue, leases, SettleAction::Ack)
        .await
        .expect("settles");
    assert!(outcomes.iter().all(Option::is_none), "{outcomes:?}");
}

fn code(error: meshgate_client::ClientError) -> Option<ErrorCode> {
    error.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_100_queues_routes_every_record_to_exactly_the_matching_queues() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(60, async {
        client
            .create_topic("orders", topic(2))
            .await
            .expect("topic");
        // Queue i: tags t{i % 10} (every fourth also t{(i+1) % 10}); every
        // seventh also wants region=eu; every eleventh keys starting "vip".
        let mut specs = Vec::new();
        for index in 0..100usize {
            let mut tags = format!("t{}", index % 10);
            if index % 4 == 0 {
                tags = format!("{tags} || t{}", (index + 1) % 10);
            }
            let mut queue = spec(&format!("orders.domain-{index:03}"), &tags);
            if index % 7 == 0 {
                queue.filter_header = Some(("region".into(), "eu".into()));
            }
            if index % 11 == 0 {
                queue.filter_key_prefix = Some("vip".into());
            }
            if index == 99 {
                queue.tags = "*".into();
            }
            client.create_queue(queue.clone()).await.expect("queue");
            specs.push(queue);
        }
        // 300 records over two partitions.
        let mut produced = Vec::new();
        for partition in 0..2u32 {
            let mut batch = Vec::new();
            for index in 0..150usize {
                let tag = format!("t{}", (index * 7 + partition as usize) % 10);
                let region = if index % 3 == 0 { "eu" } else { "us" };
                let key = if index % 5 == 0 { "vip-1" } else { "std-1" };
                batch.push(record(
                    Some(key),
                    &format!("{partition}-{index}"),
                    &[("tags", &tag), ("region", region)],
                ));
                produced.push((format!("{partition}-{index}"), tag, region, key));
            }
            produce(&client, partition, batch).await;
        }
        for queue in &specs {
            let tags: BTreeSet<String> = queue
                .tags
                .split("||")
                .map(|tag| tag.trim().to_string())
                .collect();
            let expected: BTreeSet<String> = produced
                .iter()
                .filter(|(_, tag, region, key)| {
                    (queue.tags == "*" || tags.contains(tag))
                        && queue
                            .filter_header
                            .as_ref()
                            .is_none_or(|(_, value)| value == region)
                        && queue
                            .filter_key_prefix
                            .as_ref()
                            .is_none_or(|prefix| key.starts_with(prefix.as_str()))
                })
                .map(|(value, ..)| value.clone())
                .collect();
            let messages = receive_all(
                &client,
                &queue.name,
                expected.len() + 1,
                Duration::from_millis(300),
            )
            .await;
            let got: Vec<String> = messages
                .iter()
                .map(|message| String::from_utf8_lossy(&message.value).to_string())
                .collect();
            let unique: BTreeSet<String> = got.iter().cloned().collect();
            assert_eq!(unique.len(), got.len(), "{}: a record twice", queue.name);
            assert_eq!(unique, expected, "{}", queue.name);
            ack_all(&client, &queue.name, &messages).await;
        }
        let reads = gateway.node().queues().expect("queues").read_counts();
        assert_eq!(reads.dispatch, 300, "each record read once for 100 queues");
        assert_eq!(reads.delivery, 0, "deliveries served from the cache");
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_message_is_delivered_again_after_the_visibility_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        client
            .create_topic("orders", topic(1))
            .await
            .expect("topic");
        let mut queue = spec("orders.payment", "*");
        queue.options.visibility_timeout_ms = 300;
        client.create_queue(queue).await.expect("queue");
        produce(&client, 0, vec![record(None, "order-1", &[])]).await;
        let first = receive_all(&client, "orders.payment", 1, Duration::from_secs(2)).await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].attempt, 1);
        // Invisible to a competing consumer while leased.
        let none = client
            .receive("orders.payment", 10, Duration::from_millis(100), None)
            .await
            .expect("receives");
        assert!(none.is_empty());
        let again = client
            .receive("orders.payment", 10, Duration::from_secs(3), None)
            .await
            .expect("receives");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].offset, first[0].offset);
        assert_eq!(again[0].attempt, 2);
        let late = client.ack("orders.payment", first[0].lease).await;
        assert_eq!(late.err().and_then(code), Some(ErrorCode::LeaseExpired));
        client
            .ack("orders.payment", again[0].lease)
            .await
            .expect("acked");
        let description = client
            .describe_queue("orders.payment")
            .await
            .expect("describe");
        assert_eq!(description.redeliveries, 1);
        assert_eq!((description.depth, description.in_flight), (0, 0));
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_max_attempts_a_message_is_dead_lettered_and_redrive_brings_it_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        client
            .create_topic("orders", topic(1))
            .await
            .expect("topic");
        let mut queue = spec("orders.risk", "*");
        queue.options.max_attempts = 2;
        client.create_queue(queue).await.expect("queue");
        produce(&client, 0, vec![record(None, "poison", &[])]).await;
        for attempt in 1..=2 {
            let messages = receive_all(&client, "orders.risk", 1, Duration::from_secs(2)).await;
            assert_eq!(messages[0].attempt, attempt);
            client
                .nack("orders.risk", messages[0].lease, None)
                .await
                .expect("nacked");
        }
        let none = client
            .receive("orders.risk", 10, Duration::from_millis(200), None)
            .await
            .expect("receives");
        assert!(none.is_empty(), "dead-lettered, not delivered again");
        let description = client
            .describe_queue("orders.risk")
            .await
            .expect("describe");
        assert_eq!(description.dead_lettered, 1);
        assert_eq!(description.dead_letter_depth, 1);
        // The dead-letter queue can be read like any queue.
        let dead = receive_all(&client, "orders.risk.dlq", 1, Duration::from_secs(1)).await;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].value, "poison");
        client
            .nack("orders.risk.dlq", dead[0].lease, None)
            .await
            .expect("back in the dead-letter queue");
        assert_eq!(
            client.redrive("orders.risk", None).await.expect("redrive"),
            1
        );
        let back = receive_all(&client, "orders.risk", 1, Duration::from_secs(2)).await;
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].value, "poison");
        assert_eq!(back[0].attempt, 1, "a redrive gives fresh attempts");
        client
            .ack("orders.risk", back[0].lease)
            .await
            .expect("acked");
        let description = client
            .describe_queue("orders.risk")
            .await
            .expect("describe");
        assert_eq!(description.dead_letter_depth, 0);
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_are_not_delivered_before_their_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        client
            .create_topic("orders", topic(1))
            .await
            .expect("topic");
        client
            .create_queue(spec("orders.reminders", "*"))
            .await
            .expect("queue");
        let mut delayed = spec("orders.delayed", "*");
        delayed.options.delivery_delay_ms = 600;
        client.create_queue(delayed).await.expect("queue");
        let now_ms = gateway.node().clock().now_ms();
        let at = (now_ms + 800).to_string();
        produce(
            &client,
            0,
            vec![record(None, "later", &[("deliver-at", &at)])],
        )
        .await;
        let started = tokio::time::Instant::now();
        let early = client
            .receive("orders.reminders", 10, Duration::from_millis(300), None)
            .await
            .expect("receives");
        assert!(early.is_empty(), "not before deliver-at");
        let on_time = receive_all(&client, "orders.reminders", 1, Duration::from_secs(3)).await;
        assert_eq!(on_time.len(), 1);
        assert!(gateway.node().clock().now_ms() >= now_ms + 800);
        // The queue's own delay: the later of the two wins here too.
        let queued = receive_all(&client, "orders.delayed", 1, Duration::from_secs(3)).await;
        assert_eq!(queued.len(), 1);
        assert!(started.elapsed() >= Duration::from_millis(500));
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_fifo_keeps_one_message_per_key_in_flight_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        client
            .create_topic("orders", topic(1))
            .await
            .expect("topic");
        let mut queue = spec("orders.logistics", "*");
        queue.options.fifo_by_key = true;
        client.create_queue(queue).await.expect("queue");
        produce(
            &client,
            0,
            vec![
                record(Some("a"), "a1", &[]),
                record(Some("a"), "a2", &[]),
                record(Some("b"), "b1", &[]),
                record(Some("a"), "a3", &[]),
                record(Some("b"), "b2", &[]),
            ],
        )
        .await;
        let values = |messages: &[QueueMessage]| -> Vec<String> {
            messages
                .iter()
                .map(|message| String::from_utf8_lossy(&message.value).to_string())
                .collect()
        };
        let first = receive_all(&client, "orders.logistics", 2, Duration::from_secs(2)).await;
        assert_eq!(values(&first), vec!["a1", "b1"]);
        let blocked = client
            .receive("orders.logistics", 10, Duration::from_millis(200), None)
            .await
            .expect("receives");
        assert!(blocked.is_empty(), "one in flight per key");
        client
            .ack("orders.logistics", first[0].lease)
            .await
            .expect("ack");
        let next = receive_all(&client, "orders.logistics", 1, Duration::from_secs(2)).await;
        assert_eq!(values(&next), vec!["a2"]);
        client
            .ack("orders.logistics", first[1].lease)
            .await
            .expect("ack");
        client
            .ack("orders.logistics", next[0].lease)
            .await
            .expect("ack");
        let rest = receive_all(&client, "orders.logistics", 2, Duration::from_secs(2)).await;
        let mut rest = values(&rest);
        rest.sort();
        assert_eq!(rest, vec!["a3", "b2"]);
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_redelivers_nothing_acked_and_loses_nothing_unacked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let first_client = client(&gateway).await;
    let acked: BTreeSet<u64> = bounded(30, async {
        first_client
            .create_topic("orders", topic(1))
            .await
            .expect("topic");
        first_client
            .create_queue(spec("orders.billing", "*"))
            .await
            .expect("queue");
        let batch = (0..20)
            .map(|index| record(None, &format!("m{index}"), &[]))
            .collect();
        produce(&first_client, 0, batch).await;
        let mut received =
            receive_all(&first_client, "orders.billing", 10, Duration::from_secs(2)).await;
        received.truncate(10);
        // Ack every other one; the rest stay in flight across the restart.
        let to_ack: Vec<QueueMessage> = received.iter().step_by(2).cloned().collect();
        ack_all(&first_client, "orders.billing", &to_ack).await;
        to_ack.iter().map(|message| message.offset).collect()
    })
    .await;
    // A crash: the node is killed without a graceful stop of its listeners.
    gateway.kill().await;
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        assert!(
            support_eventually(|| async { client.describe_queue("orders.billing").await.is_ok() })
                .await
        );
        let messages = receive_all(&client, "orders.billing", 21, Duration::from_secs(1)).await;
        let offsets: BTreeSet<u64> = messages.iter().map(|message| message.offset).collect();
        assert_eq!(offsets.len(), messages.len(), "no duplicates");
        let expected: BTreeSet<u64> = (0..20).filter(|offset| !acked.contains(offset)).collect();
        assert_eq!(offsets, expected, "unacked all back, acked none");
    })
    .await;
    gateway.stop().await;
}

async fn support_eventually<F, Fut>(mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_domain_does_not_slow_delivery_to_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(60, async {
        client
            .create_topic("orders", topic(1))
            .await
            .expect("topic");
        client
            .create_queue(spec("orders.fast", "*"))
            .await
            .expect("queue");
        client
            .create_queue(spec("orders.slow", "*"))
            .await
            .expect("queue");
        let per_round = 2_000;
        let mut rates = Vec::new();
        for round in 0..2 {
            for chunk in 0..(per_round / 500) {
                let batch = (0..500)
                    .map(|index| record(None, &format!("{round}-{chunk}-{index}"), &[]))
                    .collect();
                produce(&client, 0, batch).await;
            }
            let started = tokio::time::Instant::now();
            let fast = receive_all(&client, "orders.fast", per_round, Duration::from_secs(2));
            // Round 0: the other domain consumes too. Round 1: it stopped.
            let fast = if round == 0 {
                let slow = receive_all(&client, "orders.slow", per_round, Duration::from_secs(2));
                let (fast, slow) = tokio::join!(fast, slow);
                ack_all(&client, "orders.slow", &slow).await;
                fast
            } else {
                fast.await
            };
            let elapsed = started.elapsed().as_secs_f64();
            assert_eq!(fast.len(), per_round);
            ack_all(&client, "orders.fast", &fast).await;
            rates.push(per_round as f64 / elapsed);
        }
        let slow = client
            .describe_queue("orders.slow")
            .await
            .expect("describe");
        assert_eq!(
            slow.depth, per_round as u64,
            "the stopped domain holds its backlog"
        );
        assert!(
            rates[1] / rates[0] > 0.5,
            "delivery rate with the other domain stopped {:.0}/s vs {:.0}/s",
            rates[1],
            rates[0]
        );
    })
    .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_typed_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = start(dir.path()).await;
    let client = client(&gateway).await;
    bounded(30, async {
        client
            .create_topic("orders", topic(1))
            .await
            .expect("topic");
        let unknown = client
            .receive("orders.nothing", 1, Duration::ZERO, None)
            .await;
        assert_eq!(unknown.err().and_then(code), Some(ErrorCode::UnknownQueue));
        let invalid = client.create_queue(spec("orders.bad", "created |")).await;
        assert_eq!(invalid.err().and_then(code), Some(ErrorCode::InvalidFilter));
        let invalid = client.create_queue(spec("orders.bad", "")).await;
        assert_eq!(invalid.err().and_then(code), Some(ErrorCode::InvalidFilter));
        let dlq_name = client.create_queue(spec("orders.x.dlq", "*")).await;
        assert_eq!(
            dlq_name.err().and_then(code),
            Some(ErrorCode::InvalidArgument)
        );
        client
            .create_queue(spec("orders.ok", "*"))
            .await
            .expect("queue");
        let lease = client.ack("orders.ok", 424_242).await;
        assert_eq!(lease.err().and_then(code), Some(ErrorCode::UnknownLease));
        let delete = client.delete_queue("orders.nothing").await;
        assert_eq!(delete.err().and_then(code), Some(ErrorCode::UnknownQueue));
        let describe = client.describe_queue("orders.nothing.dlq").await;
        assert_eq!(describe.err().and_then(code), Some(ErrorCode::UnknownQueue));
        let redrive = client.redrive("orders.ok.dlq", None).await;
        assert_eq!(
            redrive.err().and_then(code),
            Some(ErrorCode::InvalidArgument)
        );
        let count = client.receive("orders.ok", 0, Duration::ZERO, None).await;
        assert_eq!(count.err().and_then(code), Some(ErrorCode::InvalidArgument));
    })
    .await;
    gateway.stop().await;
}

/// One HTTP/1.1 exchange with `Connection: close`; returns status and body.
async fn http(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    let status = response[9..12].parse().expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_figures_over_admin_http_and_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = config(dir.path());
    // A rule from the configuration file.
    settings.queues.rules.push(spec("orders.config", "created"));
    let gateway = meshgate_gateway::gateway::Gateway::start(settings)
        .await
        .expect("starts");
    let client = client(&gateway).await;
    let address = gateway.http_address().expect("http");
    bounded(30, async {
        client.create_topic("orders", topic(1)).await.expect("topic");
        let body = r#"{"name":"orders.http","topic":"orders","tags":"created || paid","options":{"max_attempts":3}}"#;
        let (status, answer) = http(address, "POST", "/queues", body).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("orders.config") && answer.contains("orders.http"), "{answer}");
        let (status, answer) = http(address, "POST", "/queues", r#"{"name":"q","topic":"orders","tags":"a |"}"#).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains("InvalidFilter"), "{answer}");
        assert!(
            support_eventually(|| async { client.describe_queue("orders.config").await.is_ok() }).await
        );
        produce(&client, 0, vec![record(None, "x", &[("tags", "created")])]).await;
        assert!(
            support_eventually(|| async {
                client.describe_queue("orders.http").await.is_ok_and(|description| description.depth == 1)
            })
            .await
        );
        let (status, answer) = http(address, "GET", "/queues/orders.http", "").await;
        assert_eq!(status, 200);
        assert!(answer.contains("\"depth\":1"), "{answer}");
        let metrics = gateway.node().render_metrics().await;
        assert!(metrics.contains("meshgate_queue_depth{queue=\"orders.http\"} 1"), "{metrics}");
        assert!(metrics.contains("meshgate_queue_depth{queue=\"orders.config\"} 1"), "{metrics}");
        let (status, _) = http(address, "DELETE", "/queues/orders.http", "").await;
        assert_eq!(status, 200);
        let (status, _) = http(address, "GET", "/queues/orders.http", "").await;
        assert_eq!(status, 404);
        let listed = client.list_queues().await.expect("list");
        assert_eq!(listed.len(), 1);
    })
    .await;
    gateway.stop().await;
}
