//! `wasmfleet-sim`: runs N hollow agents until SIGINT or SIGTERM, then prints a report.

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use wasmfleet_sim::config::Cli;
use wasmfleet_sim::{fleet, limits};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Thousands of agents log the same things: warnings only, unless asked.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Cli::parse().into_config()?;
    limits::raise_open_files(u64::from(config.agents))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    fleet::run(config, shutdown).await
}

/// Cancels `shutdown` at the first SIGINT or SIGTERM; a second signal exits at once.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot listen for signals; stop the simulator with SIGKILL");
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("stopping the hollow agents (again to exit at once)");
    shutdown.cancel();
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    std::process::exit(130);
}
