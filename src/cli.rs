//! The non-serving subcommands: `check` (the validation gate run offline over a whole
//! repository, for a model repository's CI; each model's versions are gated in ascending order,
//! each compared with the highest earlier version that passed) and `healthcheck`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::config::{CheckArgs, HealthcheckArgs};
use crate::engine::{BatchPolicy, LoadOptions, PoolConfig, WorkerPool};
use crate::monitoring::{Metrics, Notifier};
use crate::repository::{self, evaluate_gate, GateReport, GateStage, LoadContext, LoadedVersion};

/// The machine-readable report (`--report FILE.json`).
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub repository: String,
    pub passed: bool,
    /// Problems with the repository or a model as a whole (cards, missing versions, default).
    pub problems: Vec<String>,
    /// One verdict per model version.
    pub versions: Vec<GateReport>,
}

/// Loads and gates every version in the repository. Prints one line per version and returns
/// whether everything passed; writes the JSON report when asked.
pub fn check(args: &CheckArgs, out: &mut impl Write) -> anyhow::Result<bool> {
    let report = run(&args.repository, out)?;
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok(report.passed)
}

fn run(root: &Path, out: &mut impl Write) -> anyhow::Result<CheckReport> {
    let layout = repository::scan(root)
        .with_context(|| format!("reading model repository {}", root.display()))?;
    let loading = LoadContext {
        metrics: Arc::new(Metrics::new()),
        pool: Arc::new(WorkerPool::start(PoolConfig {
            workers: 1,
            ..PoolConfig::default()
        })?),
        batching: BatchPolicy::default(),
        notifier: Notifier::disabled(),
        load: LoadOptions::default(),
    };
    let mut report = CheckReport {
        repository: root.display().to_string(),
        passed: false,
        problems: Vec::new(),
        versions: Vec::new(),
    };
    writeln!(out, "checking model repository {}", root.display())?;
    let mut problems = Vec::new();
    if let Err(e) = repository::initial_catalog(&layout, None) {
        problem(out, &mut problems, format!("repository: {e}"))?;
    }
    for model in &layout.models {
        let manifest = match &model.manifest {
            Ok(m) => m.as_ref(),
            Err(e) => {
                problem(out, &mut problems, format!("{}: {e}", model.name))?;
                continue;
            }
        };
        if model.versions.is_empty() {
            let line = format!(
                "{}: no versions (expected {}/<version>/model.onnx)",
                model.name, model.name
            );
            problem(out, &mut problems, line)?;
        }
        let mut serving: Option<Arc<LoadedVersion>> = None;
        for dir in &model.versions {
            let label = format!("{} v{}", model.name, dir.version);
            let (mut verdict, loaded) =
                match repository::load_version(&model.name, dir, manifest, &loading) {
                    Ok(loaded) => {
                        let verdict = evaluate_gate(&loaded, dir, manifest, serving.as_deref());
                        (verdict, Some(Arc::new(loaded)))
                    }
                    Err(e) => (
                        GateReport::load_failed(&model.name, dir.version, e.to_string()),
                        None,
                    ),
                };
            // The server serves a version whose profile is unusable (without drift); CI should
            // still hear about it.
            if let (Some(l), Some(path)) = (&loaded, &dir.profile_file) {
                if let Some(reason) = l.monitor.reference_problem() {
                    verdict.fail(
                        GateStage::Load,
                        format!("{} unusable: {reason}", path.display()),
                    );
                }
            }
            print_verdict(out, &label, &verdict, loaded.as_deref())?;
            if verdict.passed {
                serving = loaded;
            }
            report.versions.push(verdict);
        }
    }
    let ok = report.versions.iter().filter(|v| v.passed).count();
    let failed = report.versions.len() - ok + problems.len();
    writeln!(
        out,
        "checked {} entries (model versions, models, repository): {ok} ok, {failed} failing",
        ok + failed
    )?;
    report.problems = problems;
    report.passed = failed == 0;
    Ok(report)
}

fn problem(out: &mut impl Write, problems: &mut Vec<String>, line: String) -> anyhow::Result<()> {
    writeln!(out, "  FAIL  {line}")?;
    problems.push(line);
    Ok(())
}

fn print_verdict(
    out: &mut impl Write,
    label: &str,
    verdict: &GateReport,
    loaded: Option<&LoadedVersion>,
) -> anyhow::Result<()> {
    if let Some((stage, detail)) = verdict.failure() {
        match stage {
            GateStage::Load => writeln!(out, "  FAIL  {label}: {detail}")?,
            GateStage::Golden => writeln!(out, "  FAIL  {label}: {detail}")?,
            GateStage::Contract | GateStage::Eval | GateStage::Canary => {
                writeln!(out, "  FAIL  {label}: gate {}: {detail}", stage.as_str())?
            }
        }
        for note in verdict.stages.iter().flat_map(|s| &s.notes) {
            writeln!(out, "          {note}")?;
        }
        return Ok(());
    }
    let load_ms = loaded.map_or(0.0, |l| l.load_duration.as_secs_f64() * 1e3);
    let mut line = format!("loaded in {load_ms:.1} ms");
    for stage in &verdict.stages {
        match (stage.stage, stage.outcome) {
            (GateStage::Golden, "passed") => line.push_str(&format!("; golden: {}", stage.detail)),
            (GateStage::Golden, _) => line.push_str("; no golden file, outputs not checked"),
            (GateStage::Eval, "passed") => line.push_str(&format!("; eval: {}", stage.detail)),
            (GateStage::Contract, "passed") => {
                line.push_str(&format!("; contract: {}", stage.detail))
            }
            _ => {}
        }
    }
    writeln!(out, "  ok    {label}: {line}")?;
    Ok(())
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

/// `infera export`: writes the joined training file and prints the counts.
pub fn export(args: &crate::config::ExportArgs, out: &mut impl Write) -> anyhow::Result<bool> {
    let since_ms = match &args.since {
        Some(s) => Some(
            crate::capture::parse_date_ms(s)
                .with_context(|| format!("--since {s:?}: expected YYYY-MM-DD"))?,
        ),
        None => None,
    };
    let summary = crate::capture::export(&crate::capture::ExportOptions {
        capture: args.capture.clone(),
        model: args.model.clone(),
        out: args.out.clone(),
        since_ms,
        labels: card_labels(args)?,
    })?;
    writeln!(
        out,
        "wrote {} rows to {} from {} files: joined {}, unlabelled {}, orphan feedback {}",
        summary.rows,
        args.out.display(),
        summary.files,
        summary.joined,
        summary.unlabelled,
        summary.orphan_feedback
    )?;
    Ok(true)
}

/// The class labels of `--repository`'s card for the exported model (none without it).
fn card_labels(args: &crate::config::ExportArgs) -> anyhow::Result<Vec<String>> {
    let Some(repo) = &args.repository else {
        return Ok(Vec::new());
    };
    let path = repo.join(&args.model).join("model.toml");
    let card = crate::repository::Manifest::read(&path)
        .with_context(|| format!("--repository: reading {}", path.display()))?;
    Ok(card.labels)
}
