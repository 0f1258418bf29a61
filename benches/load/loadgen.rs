//! A closed-loop (or, with `--rate`, open-loop) HTTP/1.1 keep-alive load generator that separates latency by status.
//!
//! wrk reports one latency distribution for every response; in overload tests we need the p99 of
//! the accepted (2xx) responses apart from the fast 429/503 rejections, and whether every
//! rejection carried `Retry-After`. This tool does that, and is cheap enough in CPU to share two
//! cores with the server it measures: a hand-rolled client over tokio `TcpStream`s (one request
//! buffer built once, one reused read buffer per connection, `httparse` for the head, bodies
//! framed by `Content-Length` only; chunked or close-delimited responses count as errors).
//!
//! Built as a cargo bench target (`harness = false`) so `cargo bench --no-run` builds it, but it
//! is a plain CLI program:
//!
//! ```text
//! loadgen --url http://127.0.0.1:PORT/models/digits/predict --body FILE \
//!         --connections N --duration-secs S [--warmup-secs W] [--threads T]
//!         [--honor-retry-after] [--rate R] [--header 'Name: value' ...]
//!
//! `--honor-retry-after`: after a 429/503 with `Retry-After: N`, that connection waits N seconds
//! before its next request, as a well-behaved client does; without it, rejected requests are
//! retried at once (a retry storm, the worst case).
//!
//! `--rate R`: open loop. The connections together send R requests per second, each on its own
//! fixed schedule (one every N/R seconds, the N schedules spread over one interval), as wrk2
//! does. A connection whose last answer came after its next scheduled send sends at once, and
//! that request's latency is counted from the scheduled time, so a stall shows in the tail
//! instead of slowing the client down (no coordinated omission); a request sent on time counts
//! from its real send (tokio's timer wakes up to 1 ms late, which is the client's delay). The same good work is then offered in
//! every phase of a comparison, whatever the server's speed.
//!
//! `--header` adds a request header (repeatable);
//! a `Content-Type` given so replaces the default `application/json` (the V2 binary tensor
//! extension: `--header 'Content-Type: application/octet-stream' --header
//! 'Inference-Header-Content-Length: N'`).
//! ```
//!
//! Each of the N connections sends the next POST (content-type application/json) as soon as the
//! previous response has fully arrived. Connections are spread over T current-thread tokio
//! runtimes on T OS threads (default 1). Responses completing during the warm-up are discarded;
//! then responses completing within the next S seconds are counted; requests still in flight at
//! the end are dropped. Latency is recorded in microseconds in HDR histograms. One JSON object
//! is printed on stdout:
//!
//! ```text
//! {"connections","threads","duration_secs","warmup_secs","requests","rps","ok_rps",
//!  "status": {"200": n, "429": n, ...},
//!  "latency_us": {"ok": {...}, "rejected": {...}, "429": {...}, "503": {...}, "other": {...}},
//!  "retry_after_missing": n, "errors": n, "error_kinds": {...}, "reconnects": n}
//! ```
//!
//! where each latency object is {"count","p50","p90","p99","p999","max","mean"} (all 0 when
//! count is 0); "ok" is 2xx, "rejected" is 429 and 503 together, "other" every other status;
//! "errors" counts connection and protocol failures (each is followed by a reconnect), broken
//! down in "error_kinds";
//! "reconnects" counts every new connection after the first one per slot, including those after
//! a server's `Connection: close`. Run with no arguments, or with only the `--bench` flag that
//! `cargo bench` passes, it prints usage and exits 0.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

const USAGE: &str = "usage: loadgen --url http://HOST:PORT/PATH --body FILE --connections N \
    --duration-secs S [--warmup-secs W] [--threads T] [--honor-retry-after] [--rate R] \
    [--header 'Name: value' ...]";

/// Largest latency the histograms hold (longer ones are clamped): 10 minutes.
const MAX_LATENCY_US: u64 = 600_000_000;
/// Largest response head or body accepted.
const MAX_RESPONSE: usize = 64 << 20;
const MAX_HEADERS: usize = 64;

struct Args {
    url: String,
    body: String,
    connections: usize,
    duration: f64,
    warmup: f64,
    threads: usize,
    /// After a 429/503 carrying Retry-After, the connection waits that long before its next
    /// request (a client that honours the header) instead of retrying at once.
    honor_retry_after: bool,
    /// Open loop: R requests per second in all, each connection on its own fixed schedule.
    rate: Option<f64>,
    /// Extra request headers, `Name: value`.
    headers: Vec<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut url = None;
    let mut body = None;
    let mut connections = None;
    let mut duration = None;
    let mut warmup = 0.0;
    let mut threads = 1;
    let mut honor_retry_after = false;
    let mut rate = None;
    let mut headers = Vec::new();
    let mut any = false;
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
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            v.parse::<T>().map_err(|e| format!("{name} {v}: {e}"))
        }
        match flag.as_str() {
            // Passed by `cargo bench`; not an argument of ours.
            "--bench" => continue,
            "-h" | "--help" => return Ok(None),
            "--url" => url = Some(value("--url")?),
            "--body" => body = Some(value("--body")?),
            "--connections" | "-c" => connections = Some(num("--connections", value("-c")?)?),
            "--duration-secs" | "-d" => duration = Some(num("--duration-secs", value("-d")?)?),
            "--warmup-secs" => warmup = num("--warmup-secs", value("--warmup-secs")?)?,
            "--threads" | "-t" => threads = num("--threads", value("--threads")?)?,
            "--honor-retry-after" => honor_retry_after = true,
            "--rate" => rate = Some(num("--rate", value("--rate")?)?),
            "--header" => headers.push(value("--header")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
        any = true;
    }
    if !any {
        return Ok(None);
    }
    let args = Args {
        url: url.ok_or("--url is required")?,
        body: body.ok_or("--body is required")?,
        connections: connections.ok_or("--connections is required")?,
        duration: duration.ok_or("--duration-secs is required")?,
        warmup,
        threads,
        honor_retry_after,
        rate,
        headers,
    };
    if args.rate.is_some_and(|r: f64| !(r > 0.0 && r.is_finite())) {
        return Err("--rate must be a positive number".into());
    }
    if args
        .headers
        .iter()
        .any(|h| !h.contains(':') || h.contains(['\r', '\n']))
    {
        return Err("--header must be `Name: value` on one line".into());
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        return Err("--duration-secs must be positive".into());
    }
    if !(args.warmup >= 0.0 && args.warmup.is_finite()) {
        return Err("--warmup-secs must be 0 or more".into());
    }
    Ok(Some(args))
}

/// `http://host[:port][/path]` -> (host header value, socket address, path).
fn parse_url(url: &str) -> Result<(String, SocketAddr, String), String> {
    use std::net::ToSocketAddrs;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("no host in {url}"));
    }
    let with_port = if authority.starts_with('[') {
        if authority.contains("]:") {
            authority.to_string()
        } else {
            format!("{authority}:80")
        }
    } else if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("resolving {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to no address"))?;
    Ok((authority.to_string(), addr, path.to_string()))
}

/// Per-thread tallies (one runtime thread owns one; merged at the end).
struct Stats {
    status: Vec<u64>,
    ok: Histogram<u64>,
    r429: Histogram<u64>,
    r503: Histogram<u64>,
    other: Histogram<u64>,
    retry_after_missing: u64,
    errors: u64,
    /// Errors by kind (connect/io error kind or protocol problem).
    error_kinds: BTreeMap<String, u64>,
    reconnects: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

impl Stats {
    fn new() -> Self {
        Stats {
            status: vec![0; 1000],
            ok: histogram(),
            r429: histogram(),
            r503: histogram(),
            other: histogram(),
            retry_after_missing: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            reconnects: 0,
        }
    }

    fn record(&mut self, status: u16, latency: Duration, retry_after: bool) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.status[usize::from(status).min(999)] += 1;
        let h = match status {
            200..=299 => &mut self.ok,
            429 => &mut self.r429,
            503 => &mut self.r503,
            _ => &mut self.other,
        };
        h.saturating_record(us);
        if matches!(status, 429 | 503) && !retry_after {
            self.retry_after_missing += 1;
        }
    }

    fn error(&mut self, kind: String) {
        self.errors += 1;
        *self.error_kinds.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, other: &Stats) {
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        self.ok.add(&other.ok).expect("same bounds");
        self.r429.add(&other.r429).expect("same bounds");
        self.r503.add(&other.r503).expect("same bounds");
        self.other.add(&other.other).expect("same bounds");
        self.retry_after_missing += other.retry_after_missing;
        self.errors += other.errors;
        for (kind, n) in &other.error_kinds {
            *self.error_kinds.entry(kind.clone()).or_default() += n;
        }
        self.reconnects += other.reconnects;
    }
}

/// What every connection shares.
struct Plan {
    addr: SocketAddr,
    request: Box<[u8]>,
    /// Responses completing before this are warm-up and not counted.
    measure_from: Instant,
    /// Responses completing after this are not counted; connections stop.
    measure_until: Instant,
    honor_retry_after: bool,
    /// Open loop: the time between two sends on one connection (closed loop when `None`).
    interval: Option<Duration>,
}

/// One parsed response.
struct Response {
    status: u16,
    retry_after: bool,
    /// Retry-After in whole seconds, when it is one.
    retry_after_secs: Option<u64>,
    close: bool,
}

enum Failure {
    Io(io::Error),
    Protocol(&'static str),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Io(e) => format!("io: {:?}", e.kind()),
            Failure::Protocol(what) => (*what).to_string(),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` holding received data.
    filled: usize,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; 16 * 1024],
            filled: 0,
        })
    }

    async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.stream.try_write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stream.writable().await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads more bytes into `buf[filled..]`, growing it when full.
    async fn fill(&mut self) -> Result<(), Failure> {
        if self.filled == self.buf.len() {
            if self.buf.len() >= MAX_RESPONSE {
                return Err(Failure::Protocol("response too large"));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        // `AsyncRead::poll_read` rather than `try_read`: on a short read tokio clears the cached
        // read readiness, so the next request waits for epoll instead of first making a read
        // syscall that can only fail with EAGAIN (one syscall saved per request).
        let stream = &mut self.stream;
        let mut rb = ReadBuf::new(&mut self.buf[self.filled..]);
        std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_read(cx, &mut rb)).await?;
        let n = rb.filled().len();
        if n == 0 {
            return Err(Failure::Protocol("connection closed by server"));
        }
        self.filled += n;
        Ok(())
    }

    /// Sends the request and reads one whole Content-Length-framed response.
    async fn exchange(&mut self, request: &[u8]) -> Result<Response, Failure> {
        self.write_all(request).await?;
        loop {
            // Parse whatever head has arrived.
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut headers);
            let parsed = match res.parse(&self.buf[..self.filled]) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = res.code.unwrap_or(0);
                    let mut content_length = None;
                    let mut retry_after = false;
                    let mut retry_after_secs = None;
                    let mut close = false;
                    for h in res.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let len = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .ok_or(Failure::Protocol("bad content-length"))?;
                            content_length = Some(len);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            return Err(Failure::Protocol("transfer-encoding not supported"));
                        } else if h.name.eq_ignore_ascii_case("retry-after") {
                            retry_after = true;
                            retry_after_secs = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok());
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h
                                .value
                                .split(|&b| b == b',')
                                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
                        }
                    }
                    if (100..200).contains(&status) {
                        // Interim response (we never send Expect, but be tolerant): skip it.
                        self.consume(head_len);
                        continue;
                    }
                    let body_len = match content_length {
                        Some(n) => n,
                        None if status == 204 || status == 304 => 0,
                        None => return Err(Failure::Protocol("response without content-length")),
                    };
                    if res.version == Some(0) {
                        close = true;
                    }
                    Some((
                        head_len + body_len,
                        Response {
                            status,
                            retry_after,
                            retry_after_secs,
                            close,
                        },
                    ))
                }
                Ok(httparse::Status::Partial) => None,
                Err(_) => return Err(Failure::Protocol("malformed response head")),
            };
            match parsed {
                Some((total, response)) => {
                    if total > MAX_RESPONSE {
                        return Err(Failure::Protocol("response too large"));
                    }
                    if self.buf.len() < total {
                        self.buf.resize(total, 0);
                    }
                    while self.filled < total {
                        self.fill().await?;
                    }
                    self.consume(total);
                    return Ok(response);
                }
                None => self.fill().await?,
            }
        }
    }

    /// Drops the first `n` received bytes (normally all of them: no pipelining).
    fn consume(&mut self, n: usize) {
        if n < self.filled {
            self.buf.copy_within(n..self.filled, 0);
        }
        self.filled -= n;
    }
}

/// One connection slot: runs until aborted at the end of the measurement. Closed loop (the next
/// request as soon as the answer is in), or open loop on a fixed schedule starting at `offset`:
/// latency then counts from the scheduled send, so a stalled server is not hidden by the client
/// waiting for it (no coordinated omission).
async fn connection(plan: Arc<Plan>, stats: Rc<RefCell<Stats>>, offset: Duration) {
    let mut first = true;
    let mut next = Instant::now() + offset;
    loop {
        let mut conn = match Conn::connect(plan.addr).await {
            Ok(c) => c,
            Err(e) => {
                if Instant::now() >= plan.measure_from {
                    stats.borrow_mut().error(format!("connect: {:?}", e.kind()));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !first && Instant::now() >= plan.measure_from {
            stats.borrow_mut().reconnects += 1;
        }
        first = false;
        loop {
            let start = match plan.interval {
                Some(interval) => {
                    let scheduled = next;
                    next += interval;
                    if Instant::now() >= scheduled {
                        // Behind schedule because the last answer came late: the wait counts.
                        scheduled
                    } else {
                        // On time: tokio's timer wakes up to a millisecond late, which is the
                        // client's delay, not the server's.
                        tokio::time::sleep_until(scheduled.into()).await;
                        Instant::now()
                    }
                }
                None => Instant::now(),
            };
            match conn.exchange(&plan.request).await {
                Ok(r) => {
                    let end = Instant::now();
                    if end >= plan.measure_from && end <= plan.measure_until {
                        stats
                            .borrow_mut()
                            .record(r.status, end - start, r.retry_after);
                    }
                    if r.close {
                        break;
                    }
                    if let (true, Some(secs)) = (plan.honor_retry_after, r.retry_after_secs) {
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                    }
                }
                Err(failure) => {
                    let now = Instant::now();
                    if now >= plan.measure_from && now <= plan.measure_until {
                        stats.borrow_mut().error(failure.describe());
                    }
                    break;
                }
            }
        }
    }
}

/// One OS thread: a current-thread runtime driving `count` connections until the end.
fn run_thread(plan: Arc<Plan>, count: usize) -> io::Result<Stats> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let stats = Rc::new(RefCell::new(Stats::new()));
    local.block_on(&runtime, async {
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                // Open loop: the connections' schedules are spread over one interval.
                let offset = plan.interval.unwrap_or_default() * i as u32 / count.max(1) as u32;
                tokio::task::spawn_local(connection(plan.clone(), stats.clone(), offset))
            })
            .collect();
        tokio::time::sleep_until(plan.measure_until.into()).await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    drop(local);
    Ok(Rc::try_unwrap(stats)
        .ok()
        .expect("connection tasks finished")
        .into_inner())
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::json!({
            "count": 0, "p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0, "mean": 0.0
        });
    }
    serde_json::json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": (h.mean() * 10.0).round() / 10.0,
    })
}

fn run(args: Args) -> Result<serde_json::Value, String> {
    let (host, addr, path) = parse_url(&args.url)?;
    let body = std::fs::read(&args.body).map_err(|e| format!("reading {}: {e}", args.body))?;
    let has_type = args
        .headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("content-type:"));
    let mut extra: String = args.headers.iter().map(|h| format!("{h}\r\n")).collect();
    if !has_type {
        extra.push_str("Content-Type: application/json\r\n");
    }
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\
         Accept: */*\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);

    let threads = args.threads.min(args.connections);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let plan = Arc::new(Plan {
        addr,
        request: request.into_boxed_slice(),
        measure_from,
        measure_until: measure_from + Duration::from_secs_f64(args.duration),
        honor_retry_after: args.honor_retry_after,
        interval: args
            .rate
            .map(|r| Duration::from_secs_f64(args.connections as f64 / r)),
    });
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            // Spread connections as evenly as possible over the threads.
            let count = args.connections / threads + usize::from(i < args.connections % threads);
            let plan = plan.clone();
            std::thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || run_thread(plan, count))
                .map_err(|e| format!("spawning thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut total = Stats::new();
    for h in handles {
        let stats = h
            .join()
            .map_err(|_| "a load thread panicked".to_string())?
            .map_err(|e| format!("runtime: {e}"))?;
        total.merge(&stats);
    }

    let requests: u64 = total.status.iter().sum();
    let ok = total.ok.len();
    let mut status = serde_json::Map::new();
    for (code, &n) in total.status.iter().enumerate() {
        if n > 0 {
            status.insert(code.to_string(), n.into());
        }
    }
    let mut rejected = total.r429.clone();
    rejected.add(&total.r503).expect("same bounds");
    let per_sec = |n: u64| (n as f64 / args.duration * 10.0).round() / 10.0;
    Ok(serde_json::json!({
        "url": args.url,
        "connections": args.connections,
        "rate": args.rate,
        "threads": threads,
        "duration_secs": args.duration,
        "warmup_secs": args.warmup,
        "requests": requests,
        "rps": per_sec(requests),
        "ok_rps": per_sec(ok),
        "status": status,
        "latency_us": {
            "ok": summary(&total.ok),
            "rejected": summary(&rejected),
            "429": summary(&total.r429),
            "503": summary(&total.r503),
            "other": summary(&total.other),
        },
        "retry_after_missing": total.retry_after_missing,
        "errors": total.errors,
        "error_kinds": total.error_kinds,
        "reconnects": total.reconnects,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
