//! Peer and client connections over real UDP sockets on 127.0.0.1, port 0:
//! mutual TLS works between nodes of one CA and refuses everything else,
//! with the typed error each side should see.

use std::net::SocketAddr;
use std::time::Duration;

use meshgate_federation::transport::{
    CLUSTER_SERVER_NAME, CaCertificate, ClusterCa, NodeCert, NodeName, RefusedBy, TransportError,
    TransportLimits, accept_peer, bind_endpoint, client_config, client_facing_server_config,
    connect_peer, insecure_client_config, peer_client_config, peer_server_config,
};
use quinn::Endpoint;

const TIMEOUT: Duration = Duration::from_secs(5);

fn node(name: &str) -> NodeName {
    NodeName::parse(name).unwrap()
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A peer endpoint for `cert`, trusting `ca`, on a free local port.
fn peer_endpoint(ca: &CaCertificate, cert: &NodeCert) -> Endpoint {
    let limits = TransportLimits::default();
    let server = peer_server_config(ca, cert, &limits).unwrap();
    bind_endpoint(localhost(), quinn::EndpointConfig::default(), Some(server)).unwrap()
}

fn dialer(ca: &CaCertificate, cert: &NodeCert) -> (Endpoint, quinn::ClientConfig) {
    let config = peer_client_config(ca, cert, &TransportLimits::default()).unwrap();
    let endpoint = bind_endpoint(localhost(), quinn::EndpointConfig::default(), None).unwrap();
    (endpoint, config)
}

/// Accepts one incoming connection on `server` as node `local`.
async fn accept_one(
    server: &Endpoint,
    local: &NodeName,
) -> Result<meshgate_federation::transport::AuthenticatedPeer, TransportError> {
    let incoming = server.accept().await.expect("endpoint open");
    accept_peer(incoming, local, TIMEOUT).await
}

#[tokio::test]
async fn peers_of_one_ca_connect_with_mutual_tls_and_echo_on_a_stream() {
    let ca = ClusterCa::generate().unwrap();
    let a = ca.issue_node_cert(&node("a"), &[]).unwrap();
    let b = ca.issue_node_cert(&node("b"), &[]).unwrap();
    let server = peer_endpoint(ca.certificate(), &b);
    let server_addr = server.local_addr().unwrap();

    let accepting = tokio::spawn({
        let server = server.clone();
        async move {
            let peer = accept_one(&server, &node("b")).await.unwrap();
            assert_eq!(peer.node(), &node("a"), "the dialer is known by its cert");
            let (mut send, mut receive) = peer.connection().accept_bi().await.unwrap();
            let request = receive.read_to_end(1024).await.unwrap();
            send.write_all(&request).await.unwrap();
            send.finish().unwrap();
            // Keep the connection until the dialer has read the echo.
            peer.connection().closed().await;
        }
    });

    let (client, config) = dialer(ca.certificate(), &a);
    let peer = connect_peer(&client, config, server_addr, &node("b"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(peer.node(), &node("b"));
    let (mut send, mut receive) = peer.connection().open_bi().await.unwrap();
    send.write_all(b"ping over mutual TLS").await.unwrap();
    send.finish().unwrap();
    let echo = receive.read_to_end(1024).await.unwrap();
    assert_eq!(echo, b"ping over mutual TLS");
    peer.connection().close(0u32.into(), b"done");
    accepting.await.unwrap();
}

#[tokio::test]
async fn server_refuses_a_client_certificate_from_another_ca() {
    let ca = ClusterCa::generate().unwrap();
    let stranger_ca = ClusterCa::generate().unwrap();
    let b = ca.issue_node_cert(&node("b"), &[]).unwrap();
    let intruder = stranger_ca.issue_node_cert(&node("a"), &[]).unwrap();
    let server = peer_endpoint(ca.certificate(), &b);
    let server_addr = server.local_addr().unwrap();

    // The intruder trusts the cluster CA (it verifies the server fine) but
    // presents a certificate the cluster never issued.
    let (client, config) = dialer(ca.certificate(), &intruder);
    let b_name = node("b");
    let (dialed, accepted) = tokio::join!(
        connect_peer(&client, config, server_addr, &b_name, TIMEOUT),
        accept_one(&server, &b_name),
    );

    let accepted = accepted.unwrap_err();
    assert!(
        matches!(
            accepted,
            TransportError::HandshakeRefused {
                by: RefusedBy::Local,
                ..
            }
        ),
        "server side: {accepted:?}"
    );
    let dialed = dialed.unwrap_err();
    assert!(
        matches!(
            dialed,
            TransportError::HandshakeRefused {
                by: RefusedBy::Remote,
                ..
            }
        ),
        "client side: {dialed:?}"
    );
    assert!(dialed.is_refusal() && accepted.is_refusal());
}

#[tokio::test]
async fn client_refuses_a_server_certificate_from_another_ca() {
    let ca = ClusterCa::generate().unwrap();
    let stranger_ca = ClusterCa::generate().unwrap();
    let a = ca.issue_node_cert(&node("a"), &[]).unwrap();
    let impostor = stranger_ca.issue_node_cert(&node("b"), &[]).unwrap();
    // The impostor would accept our certificate (it trusts our CA), but its
    // own comes from elsewhere.
    let server = peer_endpoint(ca.certificate(), &impostor);
    let server_addr = server.local_addr().unwrap();

    let (client, config) = dialer(ca.certificate(), &a);
    let b_name = node("b");
    let (dialed, accepted) = tokio::join!(
        connect_peer(&client, config, server_addr, &b_name, TIMEOUT),
        accept_one(&server, &b_name),
    );

    let dialed = dialed.unwrap_err();
    assert!(
        matches!(
            dialed,
            TransportError::HandshakeRefused {
                by: RefusedBy::Local,
                ..
            }
        ),
        "client side: {dialed:?}"
    );
    let accepted = accepted.unwrap_err();
    assert!(
        matches!(
            accepted,
            TransportError::HandshakeRefused {
                by: RefusedBy::Remote,
                ..
            }
        ),
        "server side: {accepted:?}"
    );
}

#[tokio::test]
async fn dialer_refuses_a_cluster_node_that_is_not_the_one_it_dialed() {
    let ca = ClusterCa::generate().unwrap();
    let a = ca.issue_node_cert(&node("a"), &[]).unwrap();
    let c = ca.issue_node_cert(&node("c"), &[]).unwrap();
    let server = peer_endpoint(ca.certificate(), &c);
    let server_addr = server.local_addr().unwrap();

    let (client, config) = dialer(ca.certificate(), &a);
    let (b_name, c_name) = (node("b"), node("c"));
    let (dialed, _accepted) = tokio::join!(
        connect_peer(&client, config, server_addr, &b_name, TIMEOUT),
        accept_one(&server, &c_name),
    );
    let dialed = dialed.unwrap_err();
    assert!(
        matches!(
            dialed,
            TransportError::HandshakeRefused {
                by: RefusedBy::Local,
                ..
            }
        ),
        "{dialed:?}"
    );
}

#[tokio::test]
async fn end_user_clients_reach_the_client_facing_side_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = ClusterCa::load_or_generate(dir.path()).unwrap();
    let a = ca.issue_node_cert(&node("a"), &[]).unwrap();
    let limits = TransportLimits::default();
    let server = bind_endpoint(
        localhost(),
        quinn::EndpointConfig::default(),
        Some(client_facing_server_config(&a, &limits).unwrap()),
    )
    .unwrap();
    let server_addr = server.local_addr().unwrap();
    tokio::spawn({
        let server = server.clone();
        async move {
            while let Some(incoming) = server.accept().await {
                if let Ok(connection) = incoming.await {
                    tokio::spawn(async move { connection.closed().await });
                }
            }
        }
    });
    let client = bind_endpoint(localhost(), quinn::EndpointConfig::default(), None).unwrap();

    // A client trusting the CA file connects with the cluster name.
    let trusted = CaCertificate::from_pem_file(&dir.path().join("ca.pem")).unwrap();
    let config = client_config(&trusted, &limits).unwrap();
    let connection = client
        .connect_with(config, server_addr, CLUSTER_SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    connection.close(0u32.into(), b"done");

    // The dev-only insecure client connects without any CA.
    let connection = client
        .connect_with(
            insecure_client_config(&limits).unwrap(),
            server_addr,
            "anything",
        )
        .unwrap()
        .await
        .unwrap();
    connection.close(0u32.into(), b"done");

    // A client trusting another CA is refused by its own verifier.
    let other = ClusterCa::generate().unwrap();
    let error = client
        .connect_with(
            client_config(other.certificate(), &limits).unwrap(),
            server_addr,
            CLUSTER_SERVER_NAME,
        )
        .unwrap()
        .await
        .unwrap_err();
    let error = TransportError::from_connection_error(server_addr, error);
    assert!(
        matches!(
            error,
            TransportError::HandshakeRefused {
                by: RefusedBy::Local,
                ..
            }
        ),
        "{error:?}"
    );

    // A peer-protocol dialer does not get in either: ALPN differs.
    let (peer_client, peer_config) = dialer(ca.certificate(), &a);
    let error = connect_peer(&peer_client, peer_config, server_addr, &node("a"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(error.is_refusal(), "{error:?}");
}
