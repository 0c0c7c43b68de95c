//! The chaos bench: many rounds of random faults (kill -9 of the server, an agent or
//! Mosquitto; agent partitions) against real release binaries, with the invariants of
//! `wasmfleet_tests::chaos` checked after each. Prints each round, then per fault kind the
//! rounds, recovery time p50/p99/max and invariant violations (which must be 0; the exit
//! status is 1 otherwise).
//!
//! Run (as root, with iproute2 and nftables; `workloads/build` first):
//! `cargo build --release --workspace --bins &&
//!  target/release/wasmfleet-chaos --rounds 100 --seed 1 --broker mosquitto`
//! (`--only agent-reboot-in-partition` measures one fault kind)

use std::time::Instant;

use clap::{Parser, ValueEnum};
use wasmfleet_tests::chaos::{Chaos, FaultKind, Summary};
use wasmfleet_tests::cluster::Broker;

/// Random faults against a real cluster, with invariants checked after each.
#[derive(Parser, Debug)]
struct Args {
    /// How many faults.
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// The seed that decides faults, moments and writes (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The MQTT broker.
    #[arg(long, value_enum, default_value_t = BrokerArg::Embedded)]
    broker: BrokerArg,
    /// Only faults of this kind (default: every kind the broker allows, shuffled).
    #[arg(long, value_enum)]
    only: Option<FaultKind>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BrokerArg {
    Embedded,
    Mosquitto,
}

fn main() -> anyhow::Result<()> {
    // The cluster is dropped (processes killed, namespaces removed) before the exit.
    if run(Args::parse())? > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs the rounds and prints the summary; returns the number of violations.
fn run(args: Args) -> anyhow::Result<usize> {
    let seed = args
        .seed
        .unwrap_or_else(wasmfleet_tests::chaos::seed_from_env);
    let broker = match args.broker {
        BrokerArg::Embedded => Broker::Embedded,
        BrokerArg::Mosquitto => Broker::Mosquitto,
    };
    println!(
        "chaos: {} rounds, seed {seed}, {broker:?} broker",
        args.rounds
    );
    let started = Instant::now();
    let mut chaos = Chaos::start(&["node-a", "node-b"], broker, seed)?.with_long_outages();
    let plan = match args.only {
        Some(kind) => chaos.plan_only(kind, args.rounds),
        None => chaos.plan(args.rounds),
    };
    let mut summary = Summary::default();
    for (i, fault) in plan.iter().enumerate() {
        let report = chaos.round(fault)?;
        println!(
            "round {}: {fault}: recovery {}, writes {} acknowledged / {} unknown{}",
            i + 1,
            report
                .recovery
                .map_or("NONE".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
            report.writes.0,
            report.writes.1,
            if report.violations.is_empty() {
                String::new()
            } else {
                format!("\n  VIOLATIONS: {:#?}", report.violations)
            }
        );
        summary.add(&report);
    }
    println!(
        "\n{} rounds in {:.0} s, seed {seed}, {broker:?} broker\n\n{}",
        args.rounds,
        started.elapsed().as_secs_f64(),
        summary.table()
    );
    Ok(summary.violations())
}
