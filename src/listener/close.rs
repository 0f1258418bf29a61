//! Closing a listening socket without resetting a connection a client already opened.
//!
//! Closing a listener resets every connection in its accept queue, and a client whose handshake
//! completed has usually sent its request already: those requests would be lost. Accepting
//! until `accept()` says "nothing waiting" is not enough, for two reasons:
//! - tokio answers from its cached readiness, which lags the kernel's queue under load (the
//!   queue can hold connections while tokio still says "none");
//! - clients keep connecting while the queue is emptied (every answer during the drain tells them
//!   to close, and they reconnect at once).
//!
//! So on Linux the listener first stops completing new handshakes: a classic BPF socket filter
//! drops segments that carry SYN without ACK (a client retries its SYN after a second and is
//! refused then, when the socket is gone). Handshakes already under way still complete during a
//! short settle period, accepted as usual. Then the queue is emptied with `accept` system calls
//! until the kernel itself says it is empty, and only then is the socket closed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long handshakes that started before the filter have to complete (one round trip).
pub const HANDSHAKE_SETTLE: Duration = Duration::from_millis(200);

/// Stops new handshakes, accepts what arrives for `settle`, empties the kernel's accept queue
/// and closes the socket. `take` receives every connection accepted on the way.
pub async fn close(
    listener: TcpListener,
    settle: Duration,
    mut take: impl FnMut(TcpStream, SocketAddr),
) {
    if let Err(e) = refuse_new_handshakes(&listener) {
        // Without the filter a connection can still complete between the last accept and the
        // close; say so, but drain anyway.
        tracing::debug!(error = %e, "cannot filter new handshakes on the listener");
    }
    let until = tokio::time::Instant::now() + settle;
    while let Ok(Ok((stream, peer))) = tokio::time::timeout_at(until, listener.accept()).await {
        take(stream, peer);
    }
    let listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot empty the accept queue before closing");
            return;
        }
    };
    // `into_std` leaves the socket non-blocking: `accept` returns WouldBlock once the kernel's
    // queue is empty.
    while let Ok((stream, peer)) = listener.accept() {
        match stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        {
            Ok(stream) => take(stream, peer),
            Err(e) => tracing::debug!(%peer, error = %e, "cannot serve a queued connection"),
        }
    }
}

/// Attaches a socket filter that drops every segment with SYN set and ACK clear: no new
/// handshake starts, while segments of handshakes under way (and of accepted connections, which
/// inherit the filter) pass.
#[cfg(target_os = "linux")]
fn refuse_new_handshakes(listener: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const TCP_FLAGS_OFFSET: u32 = 13; // a TCP socket's filter sees the segment from its TCP header
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let program = [
        op(
            libc::BPF_LD | libc::BPF_B | libc::BPF_ABS,
            0,
            0,
            TCP_FLAGS_OFFSET,
        ),
        op(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0, 0, SYN | ACK),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, SYN),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `program`, both alive for the call; the kernel copies the
    // program and keeps no pointer to it.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn refuse_new_handshakes(_: &TcpListener) -> std::io::Result<()> {
    Err(std::io::Error::other("socket filters need Linux"))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_filtered_listener_completes_no_new_handshake_but_accepted_connections_work() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut before = TcpStream::connect(addr).await.unwrap();
        let (mut served, _) = listener.accept().await.unwrap();
        refuse_new_handshakes(&listener).unwrap();
        let late = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
        assert!(late.is_err(), "a handshake completed through the filter");
        // The accepted connection inherited the filter and still carries data both ways.
        before.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        served.read_exact(&mut got).await.unwrap();
        served.write_all(b"pong").await.unwrap();
        before.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }

    #[tokio::test]
    async fn every_queued_connection_is_taken_before_the_socket_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Completed by the kernel, never accepted by tokio.
        let mut clients = Vec::new();
        for _ in 0..20 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"sent").await.unwrap();
            clients.push(c);
        }
        let mut taken = Vec::new();
        close(listener, Duration::ZERO, |s, _| taken.push(s)).await;
        assert_eq!(taken.len(), 20);
        for mut s in taken {
            let mut got = [0u8; 4];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"sent");
        }
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the socket is closed"
        );
    }
}
