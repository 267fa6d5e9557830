//! The `meshgate` binary end to end: a node started as a child process
//! (`meshgate serve` on port 0, its address read from stderr), the client
//! subcommands against it, their exit codes and error messages, and
//! `meshgate serve` refusing bad configuration.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const MESHGATE: &str = env!("CARGO_BIN_EXE_meshgate");

/// `meshgate serve` with every listener on a free loopback port.
const FREE_PORTS: [&str; 11] = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--http-listen",
    "127.0.0.1:0",
    "--gossip-listen",
    "127.0.0.1:0",
    "--peer-listen",
    "127.0.0.1:0",
    "--kafka-listen",
    "127.0.0.1:0",
];

/// A `meshgate serve` child, killed when dropped.
struct Node {
    child: Child,
    address: String,
    ca_cert: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts a node with data in `dir` and waits (bounded) for its address.
    fn start(dir: &Path) -> Node {
        let mut child = Command::new(MESHGATE)
            .args(FREE_PORTS)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("meshgate serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (found, address) = mpsc::channel();
        // Keeps draining stderr so the node never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Shown when a test fails.
                eprintln!("serve: {line}");
                if let Some(rest) = line.split("serving clients on ").nth(1) {
                    let address = rest.split_whitespace().next().unwrap_or_default();
                    let _ = found.send(address.to_string());
                }
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(20))
            .expect("the node prints its address");
        Node {
            child,
            address,
            ca_cert: dir.join("data/tls/ca.pem"),
        }
    }

    /// Runs `meshgate ARGS` against this node, with `stdin` as input.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(MESHGATE)
            .arg("--server")
            .arg(&self.address)
            .arg("--ca-cert")
            .arg(&self.ca_cert)
            .args(args)
            .env_remove("MESHGATE_SERVER")
            .env_remove("MESHGATE_CA_CERT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("meshgate runs");
        let mut input = child.stdin.take().expect("piped stdin");
        input.write_all(stdin.as_bytes()).expect("stdin written");
        drop(input);
        wait_bounded(child, Duration::from_secs(30))
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "meshgate {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// Runs a command that must fail with exit code 1; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args, "");
        assert_eq!(output.status.code(), Some(1), "meshgate {args:?} must fail");
        String::from_utf8(output.stderr).expect("utf-8 stderr")
    }
}

/// Waits for a child with a bound, killing it past the bound.
fn wait_bounded(child: Child, bound: Duration) -> Output {
    let id = child.id();
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(bound) {
        Ok(output) => output.expect("output collected"),
        Err(_) => {
            let _ = Command::new("kill").arg(id.to_string()).status();
            panic!("meshgate (pid {id}) did not finish within {bound:?}");
        }
    }
}

#[test]
fn cli_round_trip_creates_produces_consumes_describes_and_deletes_a_topic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path());

    let created = node.ok(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "2",
            "--durability",
            "every-batch",
        ],
        "",
    );
    assert!(
        created.contains("created topic orders (2 partitions"),
        "{created}"
    );

    let quiet = node.ok(
        &[
            "produce",
            "orders",
            "--key",
            "customer-1",
            "--header",
            "kind=created",
        ],
        "first\nsecond\nthird\n",
    );
    assert_eq!(quiet, "", "produce prints nothing on success");
    let verbose = node.ok(
        &[
            "produce",
            "orders",
            "--value",
            "fourth",
            "--partition",
            "0",
            "--verbose",
        ],
        "",
    );
    assert_eq!(verbose.trim(), "partition 0 offset 0");

    let consumed = node.ok(
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--count",
            "4",
            "--format",
            "json",
        ],
        "",
    );
    let lines: Vec<serde_json::Value> = consumed
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 4, "{consumed}");
    let keyed: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["key"] == "customer-1").collect();
    let values: Vec<&str> = keyed
        .iter()
        .map(|l| l["value"].as_str().expect("a value"))
        .collect();
    assert_eq!(values, ["first", "second", "third"], "stdin lines in order");
    for (index, line) in keyed.iter().enumerate() {
        assert_eq!(line["offset"], index as u64);
        assert_eq!(line["headers"][0]["key"], "kind");
        assert_eq!(line["headers"][0]["value"], "created");
        assert_eq!(line["origin"]["region"], "local");
        assert_eq!(line["origin"]["seq"], index as u64);
        assert_eq!(line["topic"], "orders");
        assert!(line["timestamp_ms"].as_u64().expect("a timestamp") > 0);
    }
    let text = node.ok(
        &["consume", "orders", "--partition", "0", "--from-beginning"],
        "",
    );
    assert_eq!(text, "fourth\n", "stops at the end without --follow");
    let base64 = node.ok(
        &[
            "consume",
            "orders",
            "-p",
            "0",
            "--from-beginning",
            "--format",
            "json",
            "--base64",
        ],
        "",
    );
    assert!(base64.contains("\"value\":\"Zm91cnRo\""), "{base64}");

    let described = node.ok(&["topic", "describe", "orders"], "");
    assert!(
        described.contains("durability     every-batch"),
        "{described}"
    );
    let listed = node.ok(&["topic", "list"], "");
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("orders") && line.trim_end().ends_with('4')),
        "{listed}"
    );

    // In a group: prints what exists, commits it; a second run finds nothing new.
    let grouped = node.ok(
        &[
            "consume",
            "orders",
            "--group",
            "printers",
            "--from-beginning",
        ],
        "",
    );
    assert_eq!(grouped.lines().count(), 4, "{grouped}");
    let again = node.ok(
        &[
            "consume",
            "orders",
            "--group",
            "printers",
            "--from-beginning",
        ],
        "",
    );
    assert_eq!(again, "", "committed positions are where the group resumes");
    // --count stops inside a fetched batch: the group commits only what
    // was printed, and the next run starts right after it.
    let counted = |count: &str| {
        node.ok(
            &[
                "consume",
                "orders",
                "--group",
                "counters",
                "--from-beginning",
                "--count",
                count,
            ],
            "",
        )
    };
    let first = counted("1");
    let rest = counted("10");
    assert_eq!(first.lines().count(), 1, "{first}");
    assert_eq!(rest.lines().count(), 3, "the three others, once: {rest}");
    assert!(!rest.contains(first.trim()), "{first} again in {rest}");
    let groups = node.ok(&["group", "list"], "");
    assert!(
        groups.lines().any(|line| line.starts_with("printers")),
        "{groups}"
    );
    let group = node.ok(&["group", "describe", "printers"], "");
    assert!(group.contains("group       printers"), "{group}");
    assert!(
        group
            .lines()
            .any(|line| line.starts_with("orders") && line.contains(" 3 ")),
        "{group}"
    );

    assert!(
        node.ok(&["topic", "delete", "orders"], "")
            .contains("deleted topic orders")
    );
    let gone = node.fails(&["topic", "describe", "orders"]);
    assert!(gone.contains("UnknownTopic"), "{gone}");
}

#[test]
fn cli_errors_exit_1_with_the_servers_code_and_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path());
    let invalid = node.fails(&["topic", "create", "bad name!"]);
    assert!(invalid.contains("server error 5: InvalidName"), "{invalid}");
    let unknown = node.fails(&["produce", "missing", "--value", "v"]);
    assert!(unknown.contains("UnknownTopic"), "{unknown}");
    let bad_flag = node.run(&["topic", "create", "t", "--durability", "sometimes"], "");
    assert_eq!(
        bad_flag.status.code(),
        Some(2),
        "clap refuses bad flags with 2"
    );
    // Nothing was created by any of it.
    assert_eq!(
        node.ok(&["topic", "list"], "").lines().count(),
        1,
        "only the header line"
    );
}

#[test]
fn serve_with_a_bad_config_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = |config: &str, env: Option<(&str, &str)>| {
        let path = dir.path().join("node.toml");
        std::fs::write(&path, config).expect("config written");
        let mut command = Command::new(MESHGATE);
        command
            .args(FREE_PORTS)
            .arg("--config")
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = wait_bounded(command.spawn().expect("starts"), Duration::from_secs(20));
        assert!(!output.status.success(), "{config} must be refused");
        String::from_utf8(output.stderr).expect("utf-8")
    };
    let value = serve("[limits]\nframe_bytes_max = 10\n", None);
    assert!(value.contains("limits.frame_bytes_max"), "{value}");
    let typo = serve("regoin = \"us-east\"\n", None);
    assert!(typo.contains("regoin"), "{typo}");
    let env = serve("", Some(("MESHGATE_RETENTION_CHECK_MS", "soon")));
    assert!(env.contains("retention_check_ms"), "{env}");
}

#[test]
fn cli_queue_commands_create_consume_nack_redrive_describe_and_delete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(dir.path());
    node.ok(&["topic", "create", "orders", "--partitions", "1"], "");
    let created = node.ok(
        &[
            "queue",
            "create",
            "orders.inventory",
            "--topic",
            "orders",
            "--tags",
            "created || paid",
            "--max-attempts",
            "1",
        ],
        "",
    );
    assert!(created.contains("orders.inventory"), "{created}");
    let refused = node.fails(&["queue", "create", "q", "--topic", "orders", "--tags", "a |"]);
    assert!(refused.contains("InvalidFilter"), "{refused}");
    node.ok(
        &["produce", "orders", "--header", "tags=created"],
        "one\ntwo\n",
    );
    node.ok(
        &[
            "produce",
            "orders",
            "--header",
            "tags=shipped",
            "--value",
            "skip",
        ],
        "",
    );
    let first = node.ok(
        &["queue", "consume", "orders.inventory", "--count", "1"],
        "",
    );
    assert_eq!(first.trim(), "one");
    // One attempt only: a nack dead-letters it.
    let second = node.ok(
        &[
            "queue",
            "consume",
            "orders.inventory",
            "--count",
            "1",
            "--nack",
        ],
        "",
    );
    assert_eq!(second.trim(), "two");
    let dead = node.ok(
        &[
            "queue",
            "consume",
            "orders.inventory.dlq",
            "--count",
            "5",
            "--nack",
            "--wait-ms",
            "300",
            "--json",
        ],
        "",
    );
    assert!(dead.contains("\"value\":\"two\""), "{dead}");
    let described = node.ok(&["queue", "describe", "orders.inventory"], "");
    assert!(described.contains("dead-lettered      1"), "{described}");
    let redriven = node.ok(&["queue", "redrive", "orders.inventory"], "");
    assert!(redriven.contains("moved 1 "), "{redriven}");
    node.ok(&["queue", "list"], "");
    let deleted = node.ok(&["queue", "delete", "orders.inventory"], "");
    assert!(!deleted.contains("orders.inventory"), "{deleted}");
    let unknown = node.fails(&["queue", "describe", "orders.inventory"]);
    assert!(unknown.contains("UnknownQueue"), "{unknown}");
}

/// A copy of `meshgate` in a directory of its own, optionally with a
/// `meshgate-sim` beside it.
fn lone_meshgate(sim_script: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let meshgate = dir.path().join("meshgate");
    std::fs::copy(MESHGATE, &meshgate).expect("copy meshgate");
    if let Some(script) = sim_script {
        let sim = dir.path().join("meshgate-sim");
        std::fs::write(&sim, script).expect("write meshgate-sim");
        std::fs::set_permissions(&sim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    (dir, meshgate)
}

#[test]
fn sim_hands_its_arguments_to_meshgate_sim_and_exits_as_it_does() {
    let script = "#!/bin/sh\necho \"sim got: $*\"\nexit 3\n";
    let (_dir, meshgate) = lone_meshgate(Some(script));
    let out = Command::new(&meshgate)
        .args([
            "sim",
            "run",
            "--scenario",
            "chaos",
            "--seed",
            "7",
            "--trace",
        ])
        .env("PATH", "")
        .output()
        .expect("meshgate runs");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sim got: run --scenario chaos --seed 7 --trace"
    );
}

#[test]
fn sim_without_meshgate_sim_says_how_to_build_it() {
    let (_dir, meshgate) = lone_meshgate(None);
    let out = Command::new(&meshgate)
        .args(["sim", "list"])
        .env("PATH", "")
        .output()
        .expect("meshgate runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cargo build --release -p meshgate-sim"),
        "{stderr}"
    );
}
