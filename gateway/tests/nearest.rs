//! A client given any seed asks for the membership and connects to the
//! nearest healthy gateway (its preferred region first, then the measured
//! round trip); when that gateway dies it moves to the next nearest within
//! a bounded time.

mod common;

use std::time::Duration;

use common::{TestCa, create_topic, eventually};
use meshgate_client::{Client, ClientConfig, Trust};
use meshgate_federation::transport::TransportLimits;
use meshgate_gateway::gateway::Gateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_pick_the_preferred_region_and_move_on_when_its_gateway_dies() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let first = Gateway::start(ca.config(root.path(), "use-1", "us-east", vec![]))
        .await
        .expect("starts");
    let seed = first.cluster().addresses().gossip.to_string();
    let mut gateways = vec![first];
    for (node, region) in [("euw-1", "eu-west"), ("aps-1", "ap-south")] {
        let config = ca.config(root.path(), node, region, vec![seed.clone()]);
        gateways.push(Gateway::start(config).await.expect("starts"));
    }
    let converged = eventually(Duration::from_secs(10), || async {
        for gateway in &gateways {
            if gateway
                .node()
                .members()
                .await
                .iter()
                .filter(|m| m.state == "alive")
                .count()
                != 3
            {
                return false;
            }
        }
        true
    })
    .await;
    assert!(converged);
    create_topic(&gateways[1], "orders", 1).await;

    // Seeded with ap-south only, preferring eu-west.
    let mut config = ClientConfig::new(
        [gateways[2].client_address().to_string()],
        Trust::CaPem(gateways[0].ca_pem().to_string()),
    )
    .prefer_region("eu-west");
    config.transport = TransportLimits {
        idle_timeout_ms: 1_500,
        keep_alive_interval_ms: 300,
        ..TransportLimits::default()
    };
    config.request_timeout = Duration::from_secs(3);
    let client = Client::connect(config).await.expect("connects");
    assert_eq!(
        client.node().expect("connected").region,
        "eu-west",
        "the preferred region wins"
    );
    let ranking = client.ranking();
    assert_eq!(
        ranking.len(),
        3,
        "every live gateway was measured: {ranking:?}"
    );
    assert_eq!(ranking[0].1, "eu-west");
    client
        .describe_topic("orders")
        .await
        .expect("works through eu-west");

    // eu-west dies without a word; the client's next requests go elsewhere.
    let dead = gateways.remove(1);
    dead.kill().await;
    let started = tokio::time::Instant::now();
    let info = client
        .node_info()
        .await
        .expect("answered by another gateway");
    let moved_after = started.elapsed();
    assert_ne!(info.region, "eu-west");
    assert!(
        moved_after < Duration::from_secs(10),
        "moved after {moved_after:?}"
    );
    assert_eq!(client.node().expect("connected").node_id, info.node_id);
    for gateway in gateways {
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_preference_the_lowest_round_trip_wins() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let a = Gateway::start(ca.config(root.path(), "use-1", "us-east", vec![]))
        .await
        .expect("starts");
    let seed = a.cluster().addresses().gossip.to_string();
    let b = Gateway::start(ca.config(root.path(), "euw-1", "eu-west", vec![seed]))
        .await
        .expect("starts");
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.node().members().await.len() == 2
        })
        .await
    );
    let config = ClientConfig::new(
        [b.client_address().to_string()],
        Trust::CaPem(a.ca_pem().to_string()),
    );
    let client = Client::connect(config).await.expect("connects");
    let ranking = client.ranking();
    assert_eq!(ranking.len(), 2);
    assert_eq!(
        client.node().expect("connected").node_id,
        ranking[0].0,
        "connected to the first ranked"
    );
    a.stop().await;
    b.stop().await;
}
