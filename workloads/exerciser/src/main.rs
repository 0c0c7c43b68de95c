//! `exerciser`: an argv-driven guest for the runtime's limits and failure paths.
//!
//! Built twice: `exerciser.wasm` (wasm32-wasip1 core module) and `exerciser-p2.wasm`
//! (wasm32-wasip2 command component). The first argument picks the behaviour:
//!
//! | command     | behaviour                                                          |
//! |-------------|--------------------------------------------------------------------|
//! | `exit N`    | prints `exiting with N`, exits with code N (p2 reports only 0 / 1)  |
//! | `sleep MS`  | sleeps MS milliseconds, prints `slept MS ms`                        |
//! | `alloc MIB [HOLD_MS]` | allocates MIB MiB one MiB at a time, writing every 4 KiB  |
//! |             | page and printing `allocated K MiB` after each; prints `done`, then |
//! |             | holds the memory for HOLD_MS ms (default 0) before exiting          |
//! | `spin MS`   | busy-loops reading the monotonic clock for MS ms, prints `spun MS ms` |
//! | `trap`      | executes the wasm `unreachable` instruction (a real trap)           |
//! | `print N`   | prints `line 1` .. `line N`, one every 100 ms, flushed each         |
//! | `work N`    | N million rounds of a xorshift/multiply hash, prints `work N: HEX`  |
//! |             | (fixed CPU work, for comparing engines, e.g. Pulley vs native)      |
//! | `cat PATH [EVERY_MS]` | prints the file (a mounted volume's); with EVERY_MS, reads |
//! |             | it again every EVERY_MS ms and prints it whenever it changed, forever |
//! | `ls DIR`    | prints the directory's entries, one per line, sorted                |
//! | `env NAME`  | prints the value of the environment variable NAME                   |
//! | `write PATH BYTES [HOLD_MS]` | writes BYTES bytes to the file PATH in 64 KiB pieces, |
//! |             | prints `wrote BYTES bytes`, then stays HOLD_MS ms (default 0); a failed |
//! |             | write prints `exerciser: write PATH: ERROR` to stderr and exits 1     |
//!
//! Anything else prints the usage to stderr and exits 2. Like spin's `core-wasi-test`
//! and krustlet's wasmerciser, one small guest serves every host test.
//!
//! Note on `exit N` under wasm32-wasip2: `wasi:cli/exit@0.2` carries only ok/err, so
//! any N other than 0 is observed by the host as exit code 1.

use std::io::{self, Write};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: exerciser <command>
commands:
  exit N      exit with code N
  sleep MS    sleep MS milliseconds
  alloc MIB [HOLD_MS]  allocate and touch MIB MiB of memory, then hold it HOLD_MS ms
  spin MS     busy-loop for MS milliseconds
  trap        execute a wasm trap (unreachable)
  print N     print N numbered lines, one every 100 ms
  work N      N million rounds of a hash (fixed CPU work), print the result
  cat PATH [EVERY_MS]  print a file (again whenever it changes, checked every EVERY_MS ms)
  ls DIR      print a directory's entries, one per line
  env NAME    print the value of the environment variable NAME
  write PATH BYTES [HOLD_MS]  write BYTES bytes to the file PATH, then stay HOLD_MS ms";

const MIB: usize = 1024 * 1024;
/// Wasm pages are 64 KiB, host pages 4 KiB: writing every 4 KiB touches both.
const PAGE: usize = 4096;
const PRINT_INTERVAL: Duration = Duration::from_millis(100);

/// One behaviour selected by argv.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Exit(i32),
    Sleep(u64),
    Alloc(usize, u64),
    Spin(u64),
    Trap,
    Print(u64),
    Work(u64),
    Cat(String, Option<u64>),
    Ls(String),
    Env(String),
    Write(String, u64, u64),
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(command) => run(command),
        Err(problem) => {
            eprintln!("exerciser: {problem}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

/// Parses argv (without the program name) into a command.
fn parse(args: &[String]) -> Result<Command, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["exit", n] => number(n).map(Command::Exit),
        ["sleep", ms] => number(ms).map(Command::Sleep),
        ["alloc", mib] => number(mib).map(|mib| Command::Alloc(mib, 0)),
        ["alloc", mib, hold] => Ok(Command::Alloc(number(mib)?, number(hold)?)),
        ["spin", ms] => number(ms).map(Command::Spin),
        ["trap"] => Ok(Command::Trap),
        ["print", n] => number(n).map(Command::Print),
        ["work", n] => number(n).map(Command::Work),
        ["cat", path] => Ok(Command::Cat((*path).to_owned(), None)),
        ["cat", path, every] => Ok(Command::Cat((*path).to_owned(), Some(number(every)?))),
        ["ls", dir] => Ok(Command::Ls((*dir).to_owned())),
        ["env", name] => Ok(Command::Env((*name).to_owned())),
        ["write", path, bytes] => Ok(Command::Write((*path).to_owned(), number(bytes)?, 0)),
        ["write", path, bytes, hold] => Ok(Command::Write(
            (*path).to_owned(),
            number(bytes)?,
            number(hold)?,
        )),
        [] => Err("missing command".to_owned()),
        _ => Err(format!("bad arguments: {}", words.join(" "))),
    }
}

fn number<T: std::str::FromStr>(word: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("not a valid number: {word:?}"))
}

fn run(command: Command) {
    match command {
        Command::Exit(code) => {
            say(&format!("exiting with {code}"));
            std::process::exit(code);
        }
        Command::Sleep(ms) => {
            std::thread::sleep(Duration::from_millis(ms));
            say(&format!("slept {ms} ms"));
        }
        Command::Alloc(mib, hold_ms) => alloc(mib, Duration::from_millis(hold_ms)),
        Command::Spin(ms) => {
            spin(Duration::from_millis(ms));
            say(&format!("spun {ms} ms"));
        }
        Command::Trap => trap(),
        Command::Print(n) => print_lines(n),
        Command::Work(millions) => say(&format!("work {millions}: {:016x}", work(millions))),
        Command::Cat(path, every) => cat(&path, every.map(Duration::from_millis)),
        Command::Ls(dir) => ls(&dir),
        Command::Write(path, bytes, hold_ms) => {
            write(&path, bytes);
            std::thread::sleep(Duration::from_millis(hold_ms));
        }
        Command::Env(name) => match std::env::var(&name) {
            Ok(value) => say(&value),
            Err(_) => {
                eprintln!("exerciser: env {name}: not set");
                std::process::exit(1);
            }
        },
    }
}

/// A fixed amount of integer work that the optimiser cannot skip: the result depends on
/// every round.
fn work(millions: u64) -> u64 {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..millions.saturating_mul(1_000_000) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state = state.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(round);
    }
    state
}

/// Grows the heap one MiB at a time and keeps every MiB alive, so a memory limit
/// is hit part-way through with the progress lines already in the logs; then keeps it
/// for `hold` (so it counts against the node while other pods run).
fn alloc(mib: usize, hold: Duration) {
    let mut held: Vec<Vec<u8>> = Vec::new();
    for i in 1..=mib {
        let mut chunk = vec![0u8; MIB];
        for offset in (0..MIB).step_by(PAGE) {
            chunk[offset] = 1;
        }
        held.push(std::hint::black_box(chunk));
        say(&format!("allocated {i} MiB"));
    }
    std::hint::black_box(&held);
    say("done");
    std::thread::sleep(hold);
    std::hint::black_box(&held);
}

/// Burns CPU without yielding to the host, checking the clock as it goes.
fn spin(duration: Duration) {
    let start = Instant::now();
    let mut iterations: u64 = 0;
    while start.elapsed() < duration {
        iterations = std::hint::black_box(iterations.wrapping_add(1));
    }
}

fn print_lines(n: u64) {
    for i in 1..=n {
        say(&format!("line {i}"));
        if i < n {
            std::thread::sleep(PRINT_INTERVAL);
        }
    }
}

#[cfg(target_family = "wasm")]
fn trap() -> ! {
    say("trapping");
    core::arch::wasm32::unreachable()
}

/// Host builds exist only for unit tests; abort is the closest thing to a trap.
#[cfg(not(target_family = "wasm"))]
fn trap() -> ! {
    say("trapping");
    std::process::abort()
}

/// Writes one line to stdout and flushes it, so log followers see it at once.
/// A closed stdout is ignored: the behaviour under test matters, not the output.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Prints the file at `path`; with `every`, again whenever its content changed.
fn cat(path: &str, every: Option<Duration>) {
    let mut last: Option<Vec<u8>> = None;
    loop {
        match std::fs::read(path) {
            Ok(bytes) if last.as_ref() != Some(&bytes) => {
                let mut out = io::stdout().lock();
                let _ = out.write_all(&bytes);
                if !bytes.ends_with(b"\n") {
                    let _ = out.write_all(b"\n");
                }
                let _ = out.flush();
                last = Some(bytes);
            }
            Ok(_) => {}
            Err(err) if every.is_none() => {
                eprintln!("exerciser: cat {path}: {err}");
                std::process::exit(1);
            }
            Err(_) => {}
        }
        match every {
            Some(every) => std::thread::sleep(every),
            None => return,
        }
    }
}

/// Writes `bytes` bytes to the file at `path` (a mounted volume's), in 64 KiB pieces.
fn write(path: &str, bytes: u64) {
    let piece = vec![b'x'; 64 * 1024];
    let written = std::fs::File::create(path).and_then(|mut file| {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(piece.len() as u64) as usize;
            file.write_all(&piece[..n])?;
            left -= n as u64;
        }
        file.flush()
    });
    match written {
        Ok(()) => say(&format!("wrote {bytes} bytes")),
        Err(err) => {
            eprintln!("exerciser: write {path}: {err}");
            std::process::exit(1);
        }
    }
}

/// Prints the entries of `dir`, one per line, sorted.
fn ls(dir: &str) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            eprintln!("exerciser: ls {dir}: {err}");
            std::process::exit(1);
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        say(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn parses_every_command_with_its_number() {
        assert_eq!(parse(&args(&["exit", "3"])), Ok(Command::Exit(3)));
        assert_eq!(parse(&args(&["sleep", "50"])), Ok(Command::Sleep(50)));
        assert_eq!(parse(&args(&["alloc", "64"])), Ok(Command::Alloc(64, 0)));
        assert_eq!(
            parse(&args(&["alloc", "64", "500"])),
            Ok(Command::Alloc(64, 500))
        );
        assert_eq!(parse(&args(&["spin", "10"])), Ok(Command::Spin(10)));
        assert_eq!(parse(&args(&["work", "3"])), Ok(Command::Work(3)));
        assert_eq!(parse(&args(&["trap"])), Ok(Command::Trap));
        assert_eq!(parse(&args(&["print", "5"])), Ok(Command::Print(5)));
        assert_eq!(
            parse(&args(&["cat", "/etc/a"])),
            Ok(Command::Cat("/etc/a".into(), None))
        );
        assert_eq!(
            parse(&args(&["cat", "/etc/a", "100"])),
            Ok(Command::Cat("/etc/a".into(), Some(100)))
        );
        assert_eq!(parse(&args(&["ls", "/etc"])), Ok(Command::Ls("/etc".into())));
        assert_eq!(
            parse(&args(&["write", "/data/f", "2048", "100"])),
            Ok(Command::Write("/data/f".into(), 2048, 100))
        );
    }

    #[test]
    fn rejects_missing_unknown_and_malformed_commands() {
        assert!(parse(&[]).is_err());
        assert!(parse(&args(&["explode"])).is_err());
        assert!(parse(&args(&["sleep"])).is_err());
        assert!(parse(&args(&["sleep", "soon"])).is_err());
        assert!(parse(&args(&["alloc", "-1"])).is_err());
        assert!(parse(&args(&["trap", "now"])).is_err());
    }

    #[test]
    fn spin_returns_after_its_duration() {
        let start = Instant::now();
        spin(Duration::from_millis(20));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn work_is_deterministic_and_depends_on_the_amount() {
        assert_eq!(work(1), work(1));
        assert_ne!(work(1), work(2));
        assert_ne!(work(0), work(1));
    }
}
