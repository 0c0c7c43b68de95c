//! `wasmfleet-server`: parses flags, sets up logging and signals, and calls [`run`].

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use wasmfleet_server::broker::acl::mosquitto_acl;
use wasmfleet_server::config::ServerConfig;
use wasmfleet_server::run::run;

/// Clients that put an IP address in TLS SNI (mosquitto_pub, OpenSSL-based MQTT libraries)
/// are common and harmless: rustls ignores such SNI but warns on every handshake. Its
/// handshake messages show only as errors unless `RUST_LOG` names rustls itself.
const QUIET_SNI: &str = "rustls::msgs::handshake=error";

/// `RUST_LOG` (default `info`) with rustls' SNI warnings quieted; `info` if it is invalid.
fn log_filter() -> EnvFilter {
    let requested = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = if requested.contains("rustls") {
        requested
    } else {
        format!("{requested},{QUIET_SNI}")
    };
    EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET_SNI}")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ServerConfig::parse();
    if config.print_mosquitto_acl {
        print!("{}", mosquitto_acl(&config.mqtt_username));
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .init();
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run(config, shutdown).await
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM; a second signal exits at once.
async fn cancel_on_signal(shutdown: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("shutting down (send the signal again to exit at once)");
    shutdown.cancel();
    wait_for_signal().await;
    std::process::exit(130);
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
