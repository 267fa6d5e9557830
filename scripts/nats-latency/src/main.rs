//! End-to-end latency of NATS JetStream (file store) at a fixed publish
//! rate, measured the way `meshgate bench e2e` measures meshgate: each
//! message carries its send time (microseconds since the start, little
//! endian, in its first 8 bytes); a pull consumer started before the
//! publisher reads in parallel; latency is receive time minus send time.
//! Publishes are acknowledged asynchronously (acks awaited by a separate
//! task), as meshgate's producer does.
//!
//! Usage: nats-latency URL MESSAGES SIZE_BYTES RATE_PER_S
//! Prints one JSON line.
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:4222".into());
    let messages: usize = args.get(2).map_or(Ok(100_000), |s| s.parse())?;
    let size: usize = args.get(3).map_or(Ok(100), |s| s.parse())?.max(8);
    let rate: f64 = args.get(4).map_or(Ok(10_000.0), |s| s.parse())?;

    let client = async_nats::connect(&url).await?;
    let js = jetstream::new(client.clone());
    let _ = js.delete_stream("LATENCY").await;
    let stream = js
        .create_stream(stream::Config {
            name: "LATENCY".into(),
            subjects: vec!["latency.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("latency".into()),
            ack_policy: jetstream::consumer::AckPolicy::All,
            ..Default::default()
        })
        .await?;
    let origin = Instant::now();
    let mut incoming = consumer.stream().max_messages_per_batch(1000).messages().await?;
    let reader = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(messages);
        while latencies.len() < messages {
            match tokio::time::timeout(Duration::from_secs(30), incoming.next()).await {
                Ok(Some(Ok(message))) => {
                    let now = origin.elapsed().as_micros() as u64;
                    let sent = u64::from_le_bytes(message.payload[..8].try_into().unwrap_or_default());
                    latencies.push(now.saturating_sub(sent));
                    if latencies.len() % 1000 == 0 || latencies.len() == messages {
                        let _ = message.ack().await;
                    }
                }
                _ => break,
            }
        }
        latencies
    });

    let (acks, mut pending) = tokio::sync::mpsc::channel::<jetstream::context::PublishAckFuture>(100_000);
    let acker = tokio::spawn(async move {
        while let Some(ack) = pending.recv().await {
            ack.await?;
        }
        Ok::<_, async_nats::jetstream::context::PublishError>(())
    });
    let start = Instant::now();
    let mut sent = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sent < messages {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(messages);
        while sent < due {
            let mut payload = vec![b'x'; size];
            payload[..8].copy_from_slice(&(origin.elapsed().as_micros() as u64).to_le_bytes());
            acks.send(js.publish("latency.a", payload.into()).await?).await?;
            sent += 1;
        }
    }
    drop(acks);
    acker.await??;
    let mut latencies = reader.await?;
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(index).copied().unwrap_or(0) as f64 / 1000.0
    };
    println!(
        "{{\"phase\":\"e2e\",\"messages\":{},\"size\":{size},\"rate\":{rate},\"seconds\":{seconds:.3},\"latency_ms\":{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}}}}",
        latencies.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    let _ = js.delete_stream("LATENCY").await;
    Ok(())
}
