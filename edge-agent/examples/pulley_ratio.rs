//! How much slower guests run on wasmtime's Pulley interpreter (what armv7 agents use, as
//! Cranelift has no 32-bit ARM backend) than as Cranelift native code, on one machine and a
//! CPU-bound guest: `exerciser work N` (N million rounds of an integer hash).
//!
//! Run: `workloads/build && cargo run --release -p wasmfleet-agent --example pulley_ratio
//! -- [N]` (default N = 20). Both engines are the agent's own
//! (`wasmfleet_agent::runtime::Runtime`), with the agent's settings; each runs the guest
//! once to warm up and three times measured, and the best run counts.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wasmfleet_agent::runtime::{LogBuffer, RunSpec, Runtime};

fn main() -> anyhow::Result<()> {
    let millions: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20);
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/dist/exerciser.wasm");
    let bytes = std::fs::read(&wasm)
        .with_context(|| format!("{} (run workloads/build)", wasm.display()))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let tokio = tokio::runtime::Runtime::new()?;
    let scratch = tempfile::tempdir()?;

    let native = Runtime::new(scratch.path().join("native"))?;
    let pulley = Runtime::for_target(scratch.path().join("pulley"), "pulley64")?;
    let mut results = Vec::new();
    for (name, runtime) in [
        ("native (Cranelift)", &native),
        ("Pulley interpreter", &pulley),
    ] {
        let (best, line) = tokio.block_on(best_of_three(runtime, &digest, &wasm, millions))?;
        println!("{name:<20} exerciser work {millions}: best {best:?} ({line})");
        results.push((best, line));
    }
    if results[0].1 != results[1].1 {
        bail!("the engines disagree on the result: {:?}", results);
    }
    let ratio = results[1].0.as_secs_f64() / results[0].0.as_secs_f64();
    println!("Pulley / native: {ratio:.1}x slower");
    Ok(())
}

async fn best_of_three(
    runtime: &Runtime,
    digest: &str,
    wasm: &Path,
    millions: u64,
) -> anyhow::Result<(Duration, String)> {
    let program = runtime.load(digest, wasm).await?;
    let spec = RunSpec {
        argv: ["exerciser", "work", &millions.to_string()]
            .map(String::from)
            .to_vec(),
        ..RunSpec::default()
    };
    let mut best = Duration::MAX;
    let mut line = String::new();
    for round in 0..4 {
        let logs = LogBuffer::new();
        let started = Instant::now();
        let exit = runtime
            .run(&program, &spec, &logs, &CancellationToken::new())
            .await;
        let took = started.elapsed();
        if exit.code != 0 {
            bail!("exerciser exited with {}: {:?}", exit.code, logs.lines());
        }
        line = logs.lines().join(" ");
        if round > 0 {
            best = best.min(took);
        }
    }
    Ok((best, line))
}
