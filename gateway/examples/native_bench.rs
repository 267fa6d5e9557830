//! Produce and consume throughput over the native protocol (QUIC), the
//! baseline `scripts/bench-kafka.sh` puts beside the Kafka listener.
//!
//! `native_bench <client addr> <topic> <messages> <value bytes> <batch>`:
//! produces `messages` records of `value bytes` in requests of `batch`
//! records (16 in flight, acknowledged after local durability) to
//! partition 0, then fetches them all back. Prints one JSON line per phase.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use meshgate_federation::transport::{TransportLimits, insecure_client_config};
use meshgate_protocol::{
    Acks, Fetch, Hello, PROTOCOL_VERSION, Produce, ProduceRecord, Reply, Request, Response, frame,
};
use meshgate_storage::{LocalOffset, ReadChunk};

const IN_FLIGHT: usize = 16;

async fn call(connection: &quinn::Connection, request: &Request) -> anyhow::Result<Reply> {
    let (mut send, mut recv) = connection.open_bi().await?;
    frame::write(&mut send, request).await?;
    send.finish()?;
    let response: Response = frame::read(&mut recv, 64 << 20)
        .await?
        .context("no response")?;
    response.map_err(|error| anyhow::anyhow!("{error}"))
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        bail!("usage: native_bench <client addr> <topic> <messages> <value bytes> <batch>");
    }
    let address: SocketAddr = args[1].parse()?;
    let topic = args[2].clone();
    let messages: usize = args[3].parse()?;
    let value_bytes: usize = args[4].parse()?;
    let batch: usize = args[5].parse()?;

    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(insecure_client_config(&TransportLimits::default())?);
    let connection = endpoint.connect(address, "meshgate")?.await?;
    call(
        &connection,
        &Request::Hello(Hello {
            version: PROTOCOL_VERSION,
            client_id: "native-bench".into(),
        }),
    )
    .await?;

    let value = Bytes::from(vec![b'x'; value_bytes]);
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0;
    while sent < messages {
        let count = batch.min(messages - sent);
        sent += count;
        let request = Request::Produce(Produce {
            topic: topic.clone(),
            partition: 0,
            records: (0..count)
                .map(|_| ProduceRecord {
                    key: None,
                    value: value.clone(),
                    headers: Vec::new(),
                })
                .collect(),
            acks: Acks::Local,
            producer: None,
        });
        let permit = semaphore.clone().acquire_owned().await?;
        let connection = connection.clone();
        tasks.spawn(async move {
            let result = call(&connection, &request).await;
            drop(permit);
            result
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    report(
        "produce",
        messages,
        value_bytes,
        started.elapsed().as_secs_f64(),
    );

    let started = Instant::now();
    let mut offset = 0u64;
    let mut received = 0usize;
    while received < messages {
        let Reply::Fetched(fetched) = call(
            &connection,
            &Request::Fetch(Fetch {
                topic: topic.clone(),
                partition: 0,
                offset,
                max_bytes: 4 << 20,
                max_wait_ms: 1000,
            }),
        )
        .await?
        else {
            bail!("not a fetch reply");
        };
        let chunk = ReadChunk {
            bytes: fetched.batches,
            first_offset: LocalOffset(offset),
            next_offset: LocalOffset(fetched.next_offset),
        };
        received += chunk.records_from(LocalOffset(offset))?.len();
        offset = fetched.next_offset;
    }
    report(
        "consume",
        received,
        value_bytes,
        started.elapsed().as_secs_f64(),
    );
    connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(())
}

fn report(phase: &str, messages: usize, value_bytes: usize, seconds: f64) {
    println!(
        "{{\"protocol\": \"native\", \"phase\": \"{phase}\", \"messages\": {messages}, \"seconds\": {seconds:.3}, \"messages_per_s\": {:.0}, \"mb_per_s\": {:.1}}}",
        messages as f64 / seconds,
        (messages * value_bytes) as f64 / seconds / 1e6
    );
}
