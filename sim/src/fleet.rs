//! Starts the hollow agents at a paced, jittered rate, prints the summary while they run,
//! and stops them all when told to.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::hollow::{self, HollowAgent};
use crate::tally::{self, Tally};

/// Runs `config.agents` hollow agents until `shutdown` fires, then stops them and prints
/// the final report.
pub async fn run(config: SimConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tally = Arc::new(Tally::new(config.agents));
    let stop_summary = CancellationToken::new();
    let summary = tokio::spawn(tally::print_summaries(
        tally.clone(),
        config.summary_interval,
        stop_summary.clone(),
    ));
    println!(
        "starting {} hollow agents ({}-00001...) against {} at {} per second",
        config.agents, config.name_prefix, config.mqtt, config.connect_rate
    );
    let agents = start_all(&config, &tally, &shutdown).await?;
    shutdown.cancelled().await;
    println!("{}", tally.line(0.0));
    println!("stopping {} hollow agents", agents.len());
    let mut stopping = JoinSet::new();
    for agent in agents {
        stopping.spawn(agent.stop());
    }
    while stopping.join_next().await.is_some() {}
    stop_summary.cancel();
    let _ = summary.await;
    println!("{}", tally.report());
    Ok(())
}

/// Starts agent `i` at a random moment of its slot `[i, i+1) / rate` seconds from now;
/// returns early with those started when `shutdown` fires.
async fn start_all(
    config: &SimConfig,
    tally: &Arc<Tally>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<HollowAgent>> {
    let info = hollow::node_info(config);
    let slot = Duration::from_secs(1) / config.connect_rate;
    let begun = Instant::now();
    let mut agents = Vec::with_capacity(config.agents as usize);
    for index in 1..=config.agents {
        let at = begun + slot * (index - 1) + slot.mul_f64(rand::random::<f64>());
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(at) => {}
        }
        agents.push(HollowAgent::start(config, index, &info, tally.clone())?);
        tally
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(agents)
}
