//! Helpers of the Kafka black-box tests: a gateway with its Kafka listener
//! on 127.0.0.1 port 0, a raw Kafka client over TCP (requests encoded with
//! `kafka-protocol`), and the external clients (kcat, confluent-kafka,
//! kafka-python), run with a timeout.
//!
//! External clients: when one is missing the test prints why and passes,
//! unless `MESHGATE_REQUIRE_KAFKA_CLIENTS=1` (set by `.ci/run`), which
//! makes a missing client a failure.
#![allow(dead_code, unreachable_pub)] // each test file uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use meshgate_gateway::gateway::Gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../common/mod.rs"]
mod common;

#[allow(unused_imports)]
pub use common::{TestCa, call, create_topic, eventually, records};

/// A started gateway with its Kafka listener.
pub struct KafkaGateway {
    pub gateway: Gateway,
    pub kafka: SocketAddr,
    _ca: TestCa,
}

impl KafkaGateway {
    pub fn bootstrap(&self) -> String {
        self.kafka.to_string()
    }
}

/// Starts a gateway in `region` with data under `root`, auto-creating
/// topics when `auto_create`.
pub async fn start(root: &Path, region: &str, auto_create: bool) -> KafkaGateway {
    let ca = TestCa::new(root);
    let mut config = ca.config(root, &format!("{region}-1"), region, Vec::new());
    config.kafka_listen = Some("127.0.0.1:0".parse().expect("address"));
    config.topic_defaults.auto_create = auto_create;
    config.topic_defaults.durability = "1ms".into();
    config.groups.initial_rebalance_delay_ms = 100;
    let gateway = Gateway::start(config).await.expect("gateway starts");
    let kafka = gateway.kafka_address().expect("the Kafka listener runs");
    KafkaGateway {
        gateway,
        kafka,
        _ca: ca,
    }
}

/// Whether external clients must be present (CI) or may be skipped.
fn required() -> bool {
    std::env::var("MESHGATE_REQUIRE_KAFKA_CLIENTS").is_ok_and(|v| v == "1")
}

fn missing(what: &str) -> bool {
    assert!(
        !required(),
        "{what} is missing and MESHGATE_REQUIRE_KAFKA_CLIENTS=1 (install it: see .ci/run)"
    );
    eprintln!(
        "SKIPPED: {what} is not installed (CI installs it; set MESHGATE_REQUIRE_KAFKA_CLIENTS=1 to fail instead)"
    );
    true
}

/// `kcat`'s path, or `None` (after printing why) when the test should skip.
pub fn kcat() -> Option<PathBuf> {
    for name in ["kcat", "kafkacat"] {
        if let Ok(output) = std::process::Command::new(name).arg("-V").output()
            && output.status.success()
        {
            return Some(PathBuf::from(name));
        }
    }
    missing("kcat");
    None
}

/// The Python interpreter, if it can import `modules`; else `None` after
/// printing why.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let python = std::env::var("MESHGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let imports = modules
        .iter()
        .map(|m| format!("import {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    match std::process::Command::new(&python)
        .args(["-c", &imports])
        .output()
    {
        Ok(output) if output.status.success() => Some(PathBuf::from(python)),
        _ => {
            missing(&format!("{python} with {}", modules.join(", ")));
            None
        }
    }
}

/// The scenario script next to the tests.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/clients.py")
}

/// Runs `program` with `args` (and `stdin`), killing it after `limit`;
/// returns stdout, or panics with stderr when it fails.
pub async fn run(program: &Path, args: &[&str], stdin: Option<&[u8]>, limit: Duration) -> String {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped");
        pipe.write_all(input).await.expect("writes stdin");
        drop(pipe);
    }
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} {args:?} did not finish within {limit:?}",
                program.display()
            )
        })
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        program.display(),
        output.status
    );
    stdout
}

/// Runs a scenario of `clients.py`; returns its JSON result.
pub async fn scenario(
    python: &Path,
    name: &str,
    bootstrap: &str,
    topic: &str,
    extra: &[&str],
) -> serde_json::Value {
    let script = script();
    let mut args = vec![
        script.to_str().expect("utf-8 path"),
        name,
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
    ];
    args.extend_from_slice(extra);
    let stdout = run(python, &args, None, Duration::from_secs(60)).await;
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{name}: bad result {last:?}: {e}"))
}

/// A Kafka client speaking raw frames.
pub struct RawClient {
    pub stream: TcpStream,
    correlation_id: i32,
    pub client_id: String,
}

impl RawClient {
    pub async fn connect(address: SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(address).await.expect("connects"),
            correlation_id: 0,
            client_id: "raw".into(),
        }
    }

    /// Sends bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("writes");
    }

    /// Reads one response frame (without its length), or `None` when the
    /// connection closed; panics after 10 s.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let length = self.stream.read_i32().await.ok()?;
            let mut frame = vec![0; usize::try_from(length).ok()?];
            self.stream.read_exact(&mut frame).await.ok()?;
            Some(Bytes::from(frame))
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a response or a close within 10 s")
    }

    /// Sends a request frame of `api` `version` with `body` bytes; returns
    /// the correlation id used.
    pub async fn send_raw(&mut self, api: i16, version: i16, body: &[u8]) -> i32 {
        self.correlation_id += 1;
        let mut frame = BytesMut::new();
        frame.put_i16(api);
        frame.put_i16(version);
        frame.put_i32(self.correlation_id);
        if let Ok(key) = ApiKey::try_from(api)
            && key.request_header_version(version) >= 1
        {
            frame.put_i16(self.client_id.len() as i16);
            frame.put_slice(self.client_id.as_bytes());
            if key.request_header_version(version) >= 2 {
                frame.put_u8(0);
            }
        }
        frame.put_slice(body);
        let mut out = BytesMut::new();
        out.put_i32(frame.len() as i32);
        out.put_slice(&frame);
        self.send_bytes(&out).await;
        self.correlation_id
    }

    /// Sends a typed request and decodes the typed response.
    pub async fn request<Q, R>(&mut self, api: ApiKey, version: i16, request: &Q) -> R
    where
        Q: Encodable,
        R: Decodable + HeaderVersion,
    {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, api.request_header_version(version))
            .expect("encodes header");
        request
            .encode(&mut frame, version)
            .expect("encodes request");
        let mut out = BytesMut::new();
        out.put_i32(frame.len() as i32);
        out.put_slice(&frame);
        self.send_bytes(&out).await;
        let mut response = self.read_frame().await.expect("a response");
        let header = ResponseHeader::decode(&mut response, R::header_version(version))
            .expect("response header");
        assert_eq!(header.correlation_id, self.correlation_id);
        R::decode(&mut response, version).expect("decodes response")
    }
}

/// The correlation id and error code of an error-only response frame.
pub fn error_only(mut frame: Bytes) -> (i32, i16) {
    assert!(frame.len() >= 6, "frame of {} bytes", frame.len());
    (frame.get_i32(), frame.get_i16())
}
