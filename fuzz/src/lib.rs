//! The harness shared by every fuzz target: infera's real router over the shipped model
//! repository (loaded once per process), driven in-process on a current-thread runtime. No seam
//! into the crate is needed: a target builds an HTTP request from the fuzzer's bytes and sends it
//! through the same middleware, extractors, decoders and predictor as a socket would.
//!
//! Input layout, for every target: the first byte picks the model (iris, digits, diabetes,
//! breast-cancer, or one that does not exist); if the rest holds a `0x00 0x00` pair, the bytes
//! before it are sent as the `x-request-id` header (when they form a valid header value) and the
//! bytes after it are the body; otherwise the rest is the body.
//!
//! A target fails when the process aborts or panics (libFuzzer catches both) and when infera
//! answers with a server fault for a client's bytes: any 5xx other than 503 (a deadline or a
//! loading model, both documented).

use std::path::PathBuf;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::Router;
use clap::Parser;
use http_body_util::BodyExt;
use infera::config::Cli;
use infera::server::Infera;
use tower::ServiceExt;

/// The models a fuzz input can address; the last one does not exist.
pub const MODELS: [&str; 5] = ["iris", "digits", "diabetes", "breast-cancer", "no-such-model"];

/// Header giving the JSON part's length in a V2 binary-extension body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

struct Harness {
    // Kept alive: it owns the worker pool the router's predictor sends jobs to.
    _infera: Infera,
    router: Router,
    runtime: tokio::runtime::Runtime,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
        let argv = [
            "infera",
            "--model-repository",
            repo.to_str().expect("utf-8 path"),
            "--port",
            "0",
            // A small limit keeps each input cheap; the limit checks are what is being fuzzed.
            "--max-body-bytes",
            "1048576",
            "--log",
            "off",
        ];
        let args = Cli::try_parse_from(argv).expect("valid flags").serve;
        let infera = Infera::new(&args).expect("server builds");
        let failures = infera.load_models();
        assert!(failures.is_empty(), "shipped models load: {failures:?}");
        let router = infera.router();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Harness {
            _infera: infera,
            router,
            runtime,
        }
    })
}

/// One fuzz input, split into its parts (see the crate docs).
pub struct Input<'a> {
    pub model: &'static str,
    pub request_id: Option<&'a [u8]>,
    pub body: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (&pick, rest) = data.split_first()?;
        let model = MODELS[usize::from(pick) % MODELS.len()];
        let split = rest.windows(2).position(|w| w == [0, 0]);
        let (request_id, body) = match split {
            Some(at) => (Some(&rest[..at]), &rest[at + 2..]),
            None => (None, rest),
        };
        Some(Input {
            model,
            request_id,
            body,
        })
    }
}

/// Sends `POST uri` with `body` and the given headers through the router and checks the answer.
pub fn post(uri: &str, input: &Input<'_>, headers: &[(&str, &[u8])]) {
    let mut builder = Request::builder().method("POST").uri(uri);
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            builder = builder.header(*name, value);
        }
    }
    if let Some(id) = input.request_id {
        if let Ok(value) = HeaderValue::from_bytes(id) {
            builder = builder.header("x-request-id", value);
        }
    }
    let request = builder
        .body(Body::from(input.body.to_vec()))
        .expect("request builds");
    let h = harness();
    h.runtime.block_on(async {
        let response = h.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        check(status, &bytes);
    });
}

fn check(status: StatusCode, body: &[u8]) {
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "server error {status} for a client's bytes: {}",
        String::from_utf8_lossy(body)
    );
}
