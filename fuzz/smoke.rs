//! The brief fuzz run of the normal (stable, uninstrumented) test build, shared by each
//! crate's `tests/fuzz_smoke.rs` (included there with `#[path]`).
//!
//! For one target it replays every file of the checked-in seed corpus `fuzz/corpus/TARGET/`
//! (real inputs plus the regression input of every defect the fuzzers found), then feeds it
//! simple random mutations of those seeds. Any panic, or an input that takes longer than
//! [`SLOW`], fails the test, which names the input's file and the RNG seed.
//!
//! The test suite's run is deterministic: a fixed RNG seed and a fixed number of mutations
//! (cut short, never extended, by a time cap), so CI replays the same inputs every time and
//! a new defect is found by exploring, not by a red build. (A random seed in CI once failed
//! an unrelated submission on a pre-scan defect.) Environment: `WASMFLEET_FUZZ_SEED`
//! (a number, or `random` to explore), `WASMFLEET_FUZZ_INPUTS` (default 20000 mutations),
//! `WASMFLEET_FUZZ_SECONDS` (the cap, default 3). Long, coverage-guided runs are
//! `scripts/fuzz` (cargo-fuzz).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An input slower than this is a failure (a hang), as in the long runs.
const SLOW: Duration = Duration::from_secs(1);

/// Mutated inputs never grow past this (the seeds may be larger: real wasm modules).
const MAX_GROWN: usize = 64 * 1024;

/// What the worker is doing, for the watchdog.
struct Current {
    started: Instant,
    input: Vec<u8>,
}

/// Replays `fuzz/corpus/{target}` through `check`, then mutations of it (see the module
/// docs); panics with a report naming the failing input.
pub fn run(target: &str, check: fn(&[u8])) {
    let seeds = seed_corpus(target);
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seeds");
    let seed = match std::env::var("WASMFLEET_FUZZ_SEED").ok().as_deref() {
        None => FIXED_SEED,
        Some("random") => clock_seed(),
        Some(text) => text
            .parse()
            .expect("WASMFLEET_FUZZ_SEED: a number or `random`"),
    };
    let budget = Budget {
        inputs: env_number("WASMFLEET_FUZZ_INPUTS", 20_000),
        time: Duration::from_secs(env_number("WASMFLEET_FUZZ_SECONDS", 3)),
    };
    eprintln!(
        "fuzz smoke {target}: {} seeds, {} mutations within {:?}, WASMFLEET_FUZZ_SEED={seed}",
        seeds.len(),
        budget.inputs,
        budget.time,
    );
    let current = Arc::new(Mutex::new(None::<Current>));
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let (current, done) = (current.clone(), done.clone());
        std::thread::spawn(move || {
            let outcome = feed(&seeds, seed, &budget, check, &current);
            done.store(true, Ordering::SeqCst);
            outcome
        })
    };
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        let guard = current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(now) = guard.as_ref().filter(|c| c.started.elapsed() > SLOW) {
            fail(target, seed, "took longer than 1 s", &now.input);
        }
    }
    match worker.join().expect("the fuzz worker catches panics") {
        Ok(executed) => eprintln!("fuzz smoke {target}: {executed} inputs, none failed"),
        Err(input) => fail(target, seed, "panicked (message above)", &input),
    }
}

/// How many mutations to feed, cut short at a time cap.
struct Budget {
    inputs: u64,
    time: Duration,
}

/// Runs the seeds, then mutations until `budget` is spent; `Err` carries a panicking input.
fn feed(
    seeds: &[Vec<u8>],
    seed: u64,
    budget: &Budget,
    check: fn(&[u8]),
    current: &Mutex<Option<Current>>,
) -> Result<u64, Vec<u8>> {
    let mut rng = Rng(seed | 1);
    let mut executed = 0_u64;
    let start = Instant::now();
    let mut next = seeds.iter().cloned();
    let mut mutations = 0_u64;
    loop {
        let input = match next.next() {
            Some(input) => input,
            None if mutations < budget.inputs && start.elapsed() < budget.time => {
                mutations += 1;
                mutate(&mut rng, seeds)
            }
            None => return Ok(executed),
        };
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Current {
            started: Instant::now(),
            input: input.clone(),
        });
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        // Cleared before a panic is reported, so the watchdog never takes it for a hang.
        *current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if outcome.is_err() {
            return Err(input);
        }
        executed += 1;
    }
}

/// Saves the input where the report says and panics with how to reproduce.
fn fail(target: &str, seed: u64, what: &str, input: &[u8]) -> ! {
    let path = std::env::temp_dir().join(format!("wasmfleet-fuzz-{target}-{seed}.bin"));
    let saved = std::fs::write(&path, input).is_ok();
    let head: String = input.iter().take(64).map(|b| format!("{b:02x}")).collect();
    panic!(
        "fuzz smoke {target}: an input {what}; {} bytes (first: {head}){}; \
         replay with WASMFLEET_FUZZ_SEED={seed}, or `scripts/fuzz {target}` with the file",
        input.len(),
        if saved {
            format!(", saved to {}", path.display())
        } else {
            String::new()
        },
    );
}

/// Every file of `fuzz/corpus/{target}`, sorted by name.
fn seed_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|err| panic!("{}: {err}", p.display())))
        .collect()
}

/// The seed of the test suite's deterministic run.
const FIXED_SEED: u64 = 0x5eed_f022;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{name}: a number, not {text:?}"))
    })
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// A seed with one to four random edits (flips, interesting bytes, inserts, deletes,
/// duplicated ranges, splices with another seed, truncation).
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        let at = rng.below(len + 1);
        match rng.below(7) {
            0 if len > 0 => data[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => {
                const INTERESTING: [u8; 12] = [
                    0, 1, 0x7f, 0x80, 0xff, b'[', b'{', b':', b'-', b'\n', b',', b'/',
                ];
                data[at.min(len - 1)] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let bytes: Vec<u8> = (0..=rng.below(8)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let end = (at + 1 + rng.below(16)).min(len);
                data.drain(at.min(len - 1)..end);
            }
            4 if len > 0 => {
                let from = rng.below(len);
                let piece = data[from..(from + 1 + rng.below(64)).min(len)].to_vec();
                data.splice(at..at, piece);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ => data.truncate(at),
        }
    }
    data.truncate(MAX_GROWN.max(seeds.iter().map(Vec::len).max().unwrap_or(0)));
    data
}

/// xorshift64: enough randomness for mutations, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}
