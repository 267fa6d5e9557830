//! Runs every example, shortened, so none rots: each must exit 0 and
//! print its closing check.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshgate_gateway::config::GatewayConfig;
use meshgate_gateway::gateway::Gateway;

/// Runs `program` with `args`, killing it after `limit`; returns its
/// stdout, or panics with everything it printed.
fn run(program: &Path, args: &[&str], limit: Duration) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
    #[allow(
        clippy::disallowed_methods,
        reason = "a test bounds a child process in wall time"
    )]
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(status) if status.success() => stdout,
        Some(status) => panic!(
            "{} {args:?} exited with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            program.display()
        ),
        None => panic!(
            "{} {args:?} still ran after {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            program.display()
        ),
    }
}

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn quickstart_produces_consumes_and_commits() {
    let out = run(Path::new(env!("CARGO_BIN_EXE_quickstart")), &[], LIMIT);
    assert!(out.contains("committed"), "unexpected output:\n{out}");
}

#[test]
fn region_failover_delivers_every_order_exactly_once() {
    let out = run(
        Path::new(env!("CARGO_BIN_EXE_region_failover")),
        &["--records", "40"],
        LIMIT,
    );
    assert!(
        out.contains("failover check: 40 orders, each delivered exactly once"),
        "unexpected output:\n{out}"
    );
}

#[test]
fn order_flow_feeds_each_domain_exactly_its_events_and_redrives_the_poison_message() {
    let out = run(
        Path::new(env!("CARGO_BIN_EXE_order_flow")),
        &["--orders", "30"],
        LIMIT,
    );
    assert!(
        out.contains("redrove 1 message from orders.payment.dlq")
            && out.contains(
                "every domain processed exactly the events its filter selects, each once"
            ),
        "unexpected output:\n{out}"
    );
}

#[test]
fn nearest_node_connects_to_the_nearest_region_and_fails_over() {
    let out = run(Path::new(env!("CARGO_BIN_EXE_nearest_node")), &[], LIMIT);
    assert!(out.contains("connected to"), "unexpected output:\n{out}");
    assert!(out.contains("was answered by"), "unexpected output:\n{out}");
}

/// The Python interpreter with confluent-kafka, or `None` (skipped with a
/// reason; a failure under `MESHGATE_REQUIRE_KAFKA_CLIENTS=1`, as in CI).
fn python_with_confluent_kafka() -> Option<String> {
    let python = std::env::var("MESHGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(&python)
        .args(["-c", "import confluent_kafka"])
        .output()
        .is_ok_and(|output| output.status.success());
    if found {
        return Some(python);
    }
    let reason = format!("{python} with confluent_kafka is not installed");
    if std::env::var_os("MESHGATE_REQUIRE_KAFKA_CLIENTS").is_some_and(|v| v == "1") {
        panic!("{reason}, and MESHGATE_REQUIRE_KAFKA_CLIENTS=1 requires it");
    }
    eprintln!("skipped: {reason}");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_kafka_example_runs_against_a_gateway() {
    let Some(python) = python_with_confluent_kafka() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = GatewayConfig {
        data_dir: dir.path().to_path_buf(),
        kafka_listen: Some("127.0.0.1:0".parse().expect("address")),
        ..GatewayConfig::default()
    };
    config.use_ephemeral_ports();
    let gateway = Gateway::start(config).await.expect("gateway starts");
    let bootstrap = gateway.kafka_address().expect("kafka listener").to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/kafka_orders.py");
    let out = tokio::task::spawn_blocking(move || {
        let script = script.to_string_lossy().into_owned();
        run(
            Path::new(&python),
            &[&script, "--bootstrap", &bootstrap, "--orders", "100"],
            LIMIT,
        )
    })
    .await
    .expect("runs");
    assert!(
        out.contains("300 events consumed") && out.contains("every order's events arrived once"),
        "unexpected output:\n{out}"
    );
    gateway.stop().await;
}
