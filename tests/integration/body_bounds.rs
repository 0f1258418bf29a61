//! Request bodies are refused by their size before they are read: a declared `Content-Length`
//! over the route's limit gets 413 at once, on every route that takes a body, without the
//! server reading or waiting for a byte of it (and without `100 Continue`); a chunked body is cut
//! off at the limit while it streams. A raw TCP client sends the headers only, so a server that
//! waited for the body would never answer (each exchange fails after 10 s instead).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{loaded, repo_with, TestServer};

/// Ten gigabytes: more than any limit, and more than the machine has.
const HUGE: u64 = 10_000_000_000;
/// Longest a refused request may take to be answered (a server waiting for the body never is).
const PATIENCE: Duration = Duration::from_secs(10);
const ALL_SCOPES_KEY: &str = "every-scope-key-0123456789";

/// Every route that takes a body: (path, content type, extra header).
const BODY_ROUTES: &[(&str, &str, &str)] = &[
    ("/predict", "application/json", ""),
    ("/models/iris/predict", "application/json", ""),
    ("/models/iris/versions/1/predict", "application/json", ""),
    ("/v1/models/iris:predict", "application/json", ""),
    ("/v1/models/iris:explain", "application/json", ""),
    ("/v2/models/iris/infer", "application/json", ""),
    ("/v2/models/iris/versions/1/infer", "application/json", ""),
    (
        "/v2/models/iris/infer",
        "application/octet-stream",
        "inference-header-content-length: 100\r\n",
    ),
    ("/models/iris/feedback", "application/json", ""),
    ("/models/iris/explain", "application/json", ""),
    ("/models/iris/versions/1/explain", "application/json", ""),
];

/// The admin API's routes (a server with an admin key): bodies or not, a declared one is held
/// to the limit too.
const ADMIN_ROUTES: &[&str] = &[
    "/admin/models/iris/shadow",
    "/admin/models/iris/canary",
    "/admin/models/iris/canary/promote",
    "/admin/models/iris/canary/rollback",
    "/admin/models/iris/load",
    "/admin/models/iris/unload",
];

fn keys_file(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "[[keys]]\nname = \"all\"\nsha256 = \"{}\"\nscopes = [\"predict\", \"feedback\", \"read\", \"admin\"]\n",
        infera::auth::hash_key(ALL_SCOPES_KEY),
    );
    let path = dir.join("keys.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One answer read off a raw connection.
struct Answer {
    status_line: String,
    head: String,
    body: String,
}

/// Reads one response (head, then a body of its Content-Length) from `stream`.
async fn read_answer(stream: &mut TcpStream, what: &str) -> Answer {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(n > 0, "{what}: the connection closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{what}: the answer's body did not arrive"))
            .unwrap();
        assert!(n > 0, "{what}: the connection closed inside the answer");
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Answer {
        status_line: head.lines().next().unwrap_or("").to_string(),
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends a request head declaring `length` body bytes, and no body.
async fn headers_only(addr: SocketAddr, path: &str, extra: &str, length: u64) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head =
        format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {length}\r\n{extra}\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Asserts a 413 `payload_too_large` naming the declared size, then that the server closes the
/// connection rather than reading the body it refused.
async fn assert_refused_unread(mut stream: TcpStream, what: &str) {
    let answer = read_answer(&mut stream, what).await;
    assert!(
        answer.status_line.starts_with("HTTP/1.1 413"),
        "{what}: {}\n{}",
        answer.head,
        answer.body
    );
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error_type"], "payload_too_large", "{what}: {body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("the request body is {HUGE} bytes; the limit is ")),
        "{what}: {message}"
    );
    let mut rest = [0u8; 1];
    let closed = tokio::time::timeout(PATIENCE, stream.read(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{what}: the connection stays open, waiting for the body"));
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "{what}: more bytes after the answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_refused_before_any_byte_of_body() {
    let repo = repo_with(&["iris"]);
    let open = TestServer::start(loaded(repo.path(), &[])).await;
    let keys = keys_file(repo.path());
    let keyed = TestServer::start(loaded(
        repo.path(),
        &["--api-keys-file", keys.to_str().unwrap()],
    ))
    .await;
    let bearer = format!("authorization: Bearer {ALL_SCOPES_KEY}\r\n");
    for (path, content_type, extra) in BODY_ROUTES {
        for (server, auth) in [(&open, ""), (&keyed, bearer.as_str())] {
            let extra = format!("content-type: {content_type}\r\n{extra}{auth}");
            let stream = headers_only(server.addr, path, &extra, HUGE).await;
            assert_refused_unread(stream, &format!("{path} ({content_type}, {auth:?})")).await;
        }
    }
    for path in ADMIN_ROUTES {
        let extra = format!("content-type: application/json\r\n{bearer}");
        let stream = headers_only(keyed.addr, path, &extra, HUGE).await;
        assert_refused_unread(stream, path).await;
    }
    open.stop().await;
    keyed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_gets_413_instead_of_100_when_too_large() {
    let repo = repo_with(&["iris"]);
    let server = TestServer::start(loaded(repo.path(), &[])).await;
    let expect = "content-type: application/json\r\nexpect: 100-continue\r\n";
    for path in ["/predict", "/v2/models/iris/infer", "/models/iris/explain"] {
        let stream = headers_only(server.addr, path, expect, HUGE).await;
        assert_refused_unread(stream, path).await;
    }
    // The control: a body within the limit is invited with 100 Continue, then served.
    let body = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;
    let mut stream = headers_only(server.addr, "/predict", expect, body.len() as u64).await;
    let first = read_answer(&mut stream, "100-continue control").await;
    assert_eq!(first.status_line, "HTTP/1.1 100 Continue", "{}", first.head);
    stream.write_all(body.as_bytes()).await.unwrap();
    let answer = read_answer(&mut stream, "100-continue control").await;
    assert!(
        answer.status_line.starts_with("HTTP/1.1 200"),
        "{}",
        answer.body
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_is_cut_off_at_the_limit_while_it_streams() {
    let repo = repo_with(&["iris"]);
    let server = TestServer::start(loaded(repo.path(), &["--max-body-bytes", "4096"])).await;
    let chunked = "content-type: application/json\r\ntransfer-encoding: chunked\r\n";
    for path in ["/predict", "/v2/models/iris/infer", "/models/iris/feedback"] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\n{chunked}\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        // 5 KB in chunks of 1000 bytes, and no last chunk: the body never ends.
        let part = "[5.1, 3.5, 1.4, 0.2], ".repeat(50);
        let part = &part[..1000];
        stream
            .write_all(b"f\r\n{\"instances\": [\r\n")
            .await
            .unwrap();
        for _ in 0..5 {
            let chunk = format!("{:x}\r\n{part}\r\n", part.len());
            stream.write_all(chunk.as_bytes()).await.unwrap();
        }
        let answer = read_answer(&mut stream, path).await;
        assert!(
            answer.status_line.starts_with("HTTP/1.1 413"),
            "{path}: {}\n{}",
            answer.head,
            answer.body
        );
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["error_type"], "payload_too_large", "{path}: {body}");
        assert_eq!(
            body["error"], "the request body exceeds the limit of 4096 bytes",
            "{path}"
        );
    }
    server.stop().await;
}
