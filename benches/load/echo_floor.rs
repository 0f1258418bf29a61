//! The HTTP floor for load benchmarks: a bare axum 0.8 server on the same tokio multi-thread
//! runtime infera uses, with no model behind it. `POST /models/{name}/predict` parses the body as
//! JSON (`axum::Json<serde_json::Value>`) and answers the same JSON back; `POST /parse/{name}`
//! only parses it and answers `{"instances": n}` (the floor for large bodies, where echoing the
//! body back would cost as much again); `GET /health` is 200.
//! Whatever infera adds on top of this (validation, batching, inference, metrics) is the
//! difference between the two under the same load.
//!
//! Built as a cargo bench target (`harness = false`) so `cargo bench --no-run` builds it, but it
//! is a plain CLI program:
//!
//! ```text
//! echo_floor --port P [--workers N]
//! ```
//!
//! Binds 127.0.0.1:P (0 picks a free port), prints `listening on 127.0.0.1:PORT` on stdout and
//! serves until killed. `--workers` overrides the runtime's worker count (default: one per core,
//! like infera). Run with no arguments, or with only the `--bench` flag that `cargo bench` passes,
//! it prints usage and exits 0 so a whole-crate `cargo bench` does not hang on it.

use std::io::Write;
use std::process::ExitCode;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

const USAGE: &str = "usage: echo_floor --port P [--workers N]\n\
    bare axum echo server: POST /models/{name}/predict echoes the JSON body, GET /health -> 200";

struct Args {
    port: u16,
    workers: Option<usize>,
}

/// `Ok(None)`: nothing to do (no real arguments, or `--help`).
fn parse_args() -> Result<Option<Args>, String> {
    let mut port = None;
    let mut workers = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            // Passed by `cargo bench`; not an argument of ours.
            "--bench" => {}
            "-h" | "--help" => return Ok(None),
            "--port" | "-p" => {
                let v = value("--port")?;
                port = Some(v.parse::<u16>().map_err(|e| format!("--port {v}: {e}"))?);
            }
            "--workers" => {
                let v = value("--workers")?;
                let n = v
                    .parse::<usize>()
                    .map_err(|e| format!("--workers {v}: {e}"))?;
                if n == 0 {
                    return Err("--workers must be at least 1".into());
                }
                workers = Some(n);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(port.map(|port| Args { port, workers }))
}

async fn echo(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(body)
}

async fn parse_only(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    let n = body["instances"].as_array().map_or(0, Vec::len);
    Json(serde_json::json!({ "instances": n }))
}

fn app() -> Router {
    Router::new()
        .route("/models/{name}/predict", post(echo))
        .route("/parse/{name}", post(parse_only))
        .route("/health", get(|| async { StatusCode::OK }))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("echo_floor: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.workers {
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo_floor: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: std::io::Result<()> = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
        let addr = listener.local_addr()?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
        drop(stdout);
        axum::serve(listener, app()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_floor: {e}");
            ExitCode::FAILURE
        }
    }
}
