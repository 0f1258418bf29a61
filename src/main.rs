//! The `infera` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use infera::config::{Cli, Command};

/// mimalloc instead of glibc's allocator: request handling allocates many small short-lived
/// buffers across threads, where glibc's arenas cost measurably more (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::Openapi) => {
            print!("{}", infera::api::spec_json());
            Ok(true)
        }
        Some(Command::Check(args)) => {
            infera::telemetry::init(&args.log);
            infera::cli::check(&args, &mut std::io::stdout())
        }
        Some(Command::Healthcheck(args)) => infera::cli::healthcheck(&args).map(|_| true),
        Some(Command::Export(args)) => infera::cli::export(&args, &mut std::io::stdout()),
        Some(Command::HashKey) => {
            infera::cli::hash_key(&mut std::io::stdin().lock(), &mut std::io::stdout())
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("infera: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: infera::config::ServeArgs) -> anyhow::Result<bool> {
    infera::telemetry::init(&args.log);
    if !infera::memory::disable_transparent_huge_pages() {
        tracing::warn!("cannot turn transparent huge pages off; idle RSS may grow after bursts");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.http.thread_count())
        .enable_all()
        .thread_name("infera-http")
        .build()?;
    runtime.block_on(infera::server::serve(args))?;
    Ok(true)
}
