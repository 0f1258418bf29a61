//! The non-serving subcommands: `check` and `healthcheck`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::{CheckArgs, HealthcheckArgs};
use crate::engine::{BatchPolicy, PoolConfig, WorkerPool};
use crate::monitoring::{Metrics, Notifier};
use crate::repository::{self, check_golden, GoldenFile, LoadContext};

/// Loads every version in the repository and runs its golden file. Prints one line per version
/// and returns whether everything passed.
pub fn check(args: &CheckArgs, out: &mut impl Write) -> anyhow::Result<bool> {
    let layout = repository::scan(&args.repository)
        .with_context(|| format!("reading model repository {}", args.repository.display()))?;
    let loading = LoadContext {
        metrics: Arc::new(Metrics::new()),
        pool: Arc::new(WorkerPool::start(PoolConfig {
            workers: 1,
            ..PoolConfig::default()
        })?),
        batching: BatchPolicy::default(),
        notifier: Notifier::disabled(),
    };
    let (mut ok, mut failed) = (0usize, 0usize);
    writeln!(
        out,
        "checking model repository {}",
        args.repository.display()
    )?;
    if let Err(e) = repository::initial_catalog(&layout, None) {
        writeln!(out, "  FAIL  repository: {e}")?;
        failed += 1;
    }
    for model in &layout.models {
        let manifest = match &model.manifest {
            Ok(m) => m.as_ref(),
            Err(e) => {
                writeln!(out, "  FAIL  {}: {e}", model.name)?;
                failed += 1;
                continue;
            }
        };
        if model.versions.is_empty() {
            writeln!(
                out,
                "  FAIL  {}: no versions (expected {}/<version>/model.onnx)",
                model.name, model.name
            )?;
            failed += 1;
        }
        for dir in &model.versions {
            let label = format!("{} v{}", model.name, dir.version);
            let loaded = match repository::load_version(&model.name, dir, manifest, &loading) {
                Ok(loaded) => loaded,
                Err(e) => {
                    writeln!(out, "  FAIL  {label}: {e}")?;
                    failed += 1;
                    continue;
                }
            };
            if let (Some(path), Some(reason)) =
                (&dir.profile_file, loaded.monitor.reference_problem())
            {
                writeln!(
                    out,
                    "  FAIL  {label}: {} unusable: {reason}",
                    path.display()
                )?;
                failed += 1;
                continue;
            }
            let load_ms = loaded.load_duration.as_secs_f64() * 1e3;
            let Some(golden_path) = &loaded.golden_file else {
                writeln!(out, "  ok    {label}: loaded in {load_ms:.1} ms; no golden file, outputs not checked")?;
                ok += 1;
                continue;
            };
            let report = match GoldenFile::read(golden_path) {
                Ok(golden) => check_golden(&loaded, &golden),
                Err(e) => {
                    writeln!(out, "  FAIL  {label}: {e}")?;
                    failed += 1;
                    continue;
                }
            };
            if report.passed() {
                ok += 1;
                writeln!(
                    out,
                    "  ok    {label}: loaded in {load_ms:.1} ms; golden: {} instances, {} outputs, max |diff| {:.2e}; each instance alone matches too",
                    report.instances, report.outputs_checked, report.max_abs_diff
                )?;
            } else {
                failed += 1;
                writeln!(out, "  FAIL  {label}: golden outputs do not match")?;
                for m in &report.mismatches {
                    writeln!(out, "          {m}")?;
                }
            }
        }
    }
    writeln!(
        out,
        "checked {} entries (model versions, models, repository): {ok} ok, {failed} failing",
        ok + failed
    )?;
    Ok(failed == 0)
}

/// GETs `url` and succeeds on a 200. Plain HTTP/1.1 over TCP, so the container image needs no
/// curl.
pub fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let url = args.url();
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .context("no address")?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("{url} answered {status:?}");
    }
    Ok(())
}

/// `infera hash-key`: the SHA-256 digest of the key on the first line of `input`, for the keys
/// file. The key is read from standard input, not the command line, so it stays out of shell
/// history and process listings.
pub fn hash_key(input: &mut impl std::io::BufRead, out: &mut impl Write) -> anyhow::Result<bool> {
    let mut line = String::new();
    input.read_line(&mut line).context("reading the key")?;
    let key = line.trim_end_matches(['\r', '\n']);
    if key.is_empty() {
        bail!("no key on standard input (try: printf %s \"$KEY\" | infera hash-key)");
    }
    writeln!(out, "{}", crate::auth::hash_key(key))?;
    Ok(true)
}
