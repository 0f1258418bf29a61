//! Connections as a stream, for a server that takes one (tonic's gRPC server): accepted until
//! shutdown, then the listener is closed as the HTTP listener closes (`close.rs`: no connection
//! the kernel completed is reset) and the stream ends. tonic takes the end of its stream as the
//! signal to finish its connections gracefully (HTTP/2 GOAWAY, calls in flight complete).

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{accept_error, close};

/// Accepted connections waiting for the server to take them.
const QUEUED: usize = 64;

/// The connections of `listener` until `shutdown` completes and the listener is closed.
pub fn incoming(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> ReceiverStream<std::io::Result<TcpStream>> {
    let (tx, rx) = mpsc::channel(QUEUED);
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        if tx.send(Ok(prepared(stream))).await.is_err() {
                            return; // the server is gone
                        }
                    }
                    Err(e) => accept_error(e).await,
                },
            }
        }
        let mut queued = Vec::new();
        close::close(listener, close::HANDSHAKE_SETTLE, |stream, _| {
            queued.push(stream)
        })
        .await;
        for stream in queued {
            if tx.send(Ok(prepared(stream))).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

fn prepared(stream: TcpStream) -> TcpStream {
    let _ = stream.set_nodelay(true);
    stream
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn every_connection_made_before_shutdown_comes_out_and_then_the_stream_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut stream = incoming(listener, async move {
            let _ = stopped.await;
        });
        let mut clients = Vec::new();
        for i in 0..100u8 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&[i]).await.unwrap();
            clients.push(c);
        }
        // Nothing taken yet: at most QUEUED were accepted, the rest wait in the kernel's queue.
        stop.send(()).unwrap();
        let mut got = Vec::new();
        while let Some(conn) = stream.next().await {
            let mut conn = conn.unwrap();
            let mut byte = [0u8];
            conn.read_exact(&mut byte).await.unwrap();
            got.push(byte[0]);
        }
        got.sort_unstable();
        assert_eq!(
            got,
            (0..100u8).collect::<Vec<_>>(),
            "no connection was reset"
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
    }
}
