//! Shutdown under load loses nothing: keep-alive clients posting continuously across SIGTERM get
//! an answer to every request they sent on an open connection (served, or 503 shutting_down),
//! and are told `Connection: close`; a refused new connection is not a lost request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{repo_with, TestServer};

#[derive(Default)]
struct Tally {
    answered: AtomicUsize,
    lost: AtomicUsize,
    closes: AtomicUsize,
}

const BODY: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;

/// Reads one HTTP/1.1 response; Some(close?) when complete, None when the connection ended first.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<bool> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = response.parse(buf) {
            let header = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
            };
            let length: usize = header("content-length")?.parse().ok()?;
            let close = header("connection").is_some_and(|v| v == "close");
            if buf.len() >= head + length {
                return Some(close);
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Posts on one keep-alive connection after another until a connection is refused.
async fn client(addr: SocketAddr, tally: Arc<Tally>) {
    let request = format!(
        "POST /predict HTTP/1.1\r\nHost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut buf = Vec::new();
    loop {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            return;
        };
        loop {
            if stream.write_all(request.as_bytes()).await.is_err() {
                // Nothing of this request reached a server that had closed: it was never
                // sent on an open connection. Reconnect.
                break;
            }
            match read_response(&mut stream, &mut buf).await {
                Some(close) => {
                    tally.answered.fetch_add(1, Ordering::Relaxed);
                    if close {
                        tally.closes.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                None => {
                    tally.lost.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_keep_alive_load_loses_no_request() {
    let repo = repo_with(&["iris"]);
    for round in 0..3 {
        let infera = crate::common::loaded(
            repo.path(),
            &[
                "--shutdown-idle-close-ms",
                "300",
                "--shutdown-grace-secs",
                "5",
            ],
        );
        let mut server = TestServer::start(infera).await;
        let tally = Arc::new(Tally::default());
        let clients: Vec<_> = (0..16)
            .map(|_| tokio::spawn(client(server.addr, tally.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let before = tally.answered.load(Ordering::Relaxed);
        server.begin_stop();
        server.join().await;
        for c in clients {
            tokio::time::timeout(Duration::from_secs(10), c)
                .await
                .expect("clients stop once connections are refused")
                .unwrap();
        }
        let answered = tally.answered.load(Ordering::Relaxed);
        let lost = tally.lost.load(Ordering::Relaxed);
        assert!(
            before > 50,
            "round {round}: only {before} answers before SIGTERM"
        );
        assert!(
            tally.closes.load(Ordering::Relaxed) >= 1,
            "round {round}: no answer told the client to close"
        );
        assert_eq!(
            lost, 0,
            "round {round}: {lost} of {answered} requests got no answer"
        );
    }
}
