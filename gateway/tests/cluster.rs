//! Five real gateways on 127.0.0.1 (port 0 everywhere) in three regions:
//! membership converges, a stopped gateway is marked down and comes back
//! with a higher incarnation, a gateway with a certificate from another CA
//! gets no peer link, and garbage on the gossip port changes nothing.

mod common;

use std::time::Duration;

use common::{TestCa, eventually};
use meshgate_federation::transport::LinkState;
use meshgate_gateway::gateway::Gateway;
use meshgate_protocol::MemberInfo;

fn state_of<'a>(members: &'a [MemberInfo], node: &str) -> Option<&'a MemberInfo> {
    members.iter().find(|m| m.node_id == node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_gateways_converge_detect_a_stopped_one_and_take_it_back() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(root.path());
    let layout = [
        ("use-1", "us-east"),
        ("use-2", "us-east"),
        ("euw-1", "eu-west"),
        ("euw-2", "eu-west"),
        ("aps-1", "ap-south"),
    ];
    let first = Gateway::start(ca.config(root.path(), layout[0].0, layout[0].1, vec![]))
        .await
        .expect("first gateway starts");
    let seed = first.cluster().addresses().gossip.to_string();
    let mut gateways = vec![first];
    for (node, region) in &layout[1..] {
        let config = ca.config(root.path(), node, region, vec![seed.clone()]);
        gateways.push(Gateway::start(config).await.expect("gateway starts"));
    }

    let converged = eventually(Duration::from_secs(10), || async {
        for gateway in &gateways {
            let members = gateway.node().members().await;
            if members.len() != 5 || members.iter().any(|m| m.state != "alive") {
                return false;
            }
        }
        true
    })
    .await;
    assert!(converged, "all five see five alive members");
    let links_up = eventually(Duration::from_secs(10), || async {
        gateways.iter().all(|g| {
            let (links, _) = g.cluster().link_report();
            links.len() == 4
                && links
                    .iter()
                    .all(|(_, _, s)| matches!(s, LinkState::Connected { .. }))
        })
    })
    .await;
    assert!(
        links_up,
        "every gateway has a connected peer link to the four others"
    );
    let metrics = gateways[0].node().render_metrics().await;
    assert!(
        metrics.contains("meshgate_cluster_members{state=\"alive\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshgate_peer_links{state=\"connected\"} 4"),
        "{metrics}"
    );

    // Garbage on a gossip port: counted and dropped, the view unchanged.
    let target = gateways[2].cluster().addresses().gossip;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("binds");
    for garbage in [
        &b""[..],
        b"\x00",
        b"hello",
        &[0xff; 1300],
        &[1, 2, 3, 4, 5, 6, 7, 8],
    ] {
        socket.send_to(garbage, target).expect("sends");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let members = gateways[2].node().members().await;
    assert_eq!(members.iter().filter(|m| m.state == "alive").count(), 5);
    let metrics = gateways[2].node().render_metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("meshgate_gossip_dropped_packets") && !l.ends_with(" 0")),
        "drops are counted: {metrics}"
    );

    // Stop euw-2 without a graceful leave: the others mark it down.
    let victim = gateways.remove(3);
    let victim_incarnation = state_of(&gateways[0].node().members().await, "euw-2")
        .expect("known")
        .incarnation;
    victim.kill().await;
    let down = eventually(Duration::from_secs(10), || async {
        for gateway in &gateways {
            let members = gateway.node().members().await;
            if state_of(&members, "euw-2").is_none_or(|m| m.state != "down") {
                return false;
            }
        }
        true
    })
    .await;
    assert!(down, "the four others mark euw-2 down");

    // Restart it on the same data: alive again with a higher incarnation.
    let config = ca.config(root.path(), "euw-2", "eu-west", vec![seed.clone()]);
    gateways.push(Gateway::start(config).await.expect("restarts"));
    let back = eventually(Duration::from_secs(10), || async {
        for gateway in &gateways {
            // The restarted node may be known under a new gossip address
            // beside its old, down identity: look for the new one.
            let members = gateway.node().members().await;
            let back = members.iter().any(|m| {
                m.node_id == "euw-2" && m.state == "alive" && m.incarnation > victim_incarnation
            });
            if !back {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        back,
        "euw-2 is alive again everywhere with a higher incarnation"
    );

    for gateway in gateways {
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_with_a_certificate_from_another_ca_gets_no_peer_link() {
    let root = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(&root.path().join("honest"));
    let rogue = TestCa::new(&root.path().join("rogue"));
    let honest = Gateway::start(ca.config(root.path(), "node-a", "us-east", vec![]))
        .await
        .expect("starts");
    let seed = honest.cluster().addresses().gossip.to_string();
    let intruder = Gateway::start(rogue.config(root.path(), "node-b", "eu-west", vec![seed]))
        .await
        .expect("starts");
    // Gossip is keyed by the cluster secret, not the CA, so they see each
    // other; the QUIC peer link is what the CA guards.
    let refused = eventually(Duration::from_secs(10), || async {
        let (_, stats) = honest.cluster().link_report();
        let (_, intruder_stats) = intruder.cluster().link_report();
        stats.refused_handshakes + intruder_stats.refused_handshakes >= 2
    })
    .await;
    assert!(
        refused,
        "handshakes between the two CAs are refused and counted"
    );
    for gateway in [&honest, &intruder] {
        let (links, _) = gateway.cluster().link_report();
        assert!(
            links
                .iter()
                .all(|(_, _, s)| !matches!(s, LinkState::Connected { .. })),
            "no link is connected: {links:?}"
        );
    }
    honest.stop().await;
    intruder.stop().await;
}
