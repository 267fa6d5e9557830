//! `meshgate health`: exits 0 when a gateway's admin HTTP answers healthy.
//! Made for container health checks (the image has no shell or curl).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `meshgate health`.
#[derive(Debug, clap::Args)]
pub(crate) struct HealthArgs {
    /// The gateway's admin HTTP address.
    #[arg(long = "http", default_value = "127.0.0.1:7421", value_name = "ADDR")]
    http: SocketAddr,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// Longest health answer read, in bytes.
const ANSWER_BYTES_MAX: u64 = 64 << 10;

pub(crate) fn run(args: HealthArgs) -> ExitCode {
    match check(&args) {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("meshgate: unhealthy: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: &HealthArgs) -> Result<String, String> {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let mut stream = TcpStream::connect_timeout(&args.http, timeout)
        .map_err(|e| format!("{}: {e}", args.http))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        args.http
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .take(ANSWER_BYTES_MAX)
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let status = answer.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!("answered {status:?}"));
    }
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    if !body.contains("\"ok\"") {
        return Err(format!("answered {body:?}"));
    }
    Ok(body.trim().to_string())
}
