//! `sensor`: a simulated temperature and humidity sensor (wasm32-wasip1).
//!
//! Prints one reading per interval, forever, each line flushed at once:
//!
//! ```text
//! sensor=greenhouse seq=0 temperature_c=21.37 humidity_pct=48.2
//! ```
//!
//! `seq` counts from 0. The values follow a pseudo-random walk (temperature moves at
//! most 0.10 °C per reading within 15..30 °C, humidity at most 0.5 % within 20..80 %)
//! that is fully determined by the seed, so a restarted pod repeats its readings.
//!
//! | argument          | meaning                                           | default          |
//! |-------------------|---------------------------------------------------|------------------|
//! | `--interval-ms N` | pause between two readings                        | 1000             |
//! | `--count N`       | stop after N readings and exit 0                  | run forever      |
//! | `--seed N`        | seed of the walk                                  | hash of the name |
//!
//! The name comes from `$SENSOR_NAME` (default `sensor`; whitespace becomes `_` so the
//! line stays `key=value` pairs). Bad arguments print the usage to stderr and exit 2.
//! Log followers and the end-to-end tests parse the lines: keep the format stable.

use std::io::{self, Write};
use std::time::Duration;

const USAGE: &str = "usage: sensor [--interval-ms N] [--count N] [--seed N]
environment: SENSOR_NAME (default: sensor)";

const DEFAULT_NAME: &str = "sensor";
const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);

/// Temperature bounds and largest step, in hundredths of a degree Celsius.
const TEMPERATURE_RANGE: (i64, i64) = (1500, 3000);
const TEMPERATURE_STEP: i64 = 10;
/// Humidity bounds and largest step, in tenths of a percent.
const HUMIDITY_RANGE: (i64, i64) = (200, 800);
const HUMIDITY_STEP: i64 = 5;

/// What the sensor was started with.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    interval: Duration,
    /// `None`: run forever.
    count: Option<u64>,
    /// `None`: derived from the name.
    seed: Option<u64>,
}

/// One reading, in fixed point so the printed digits are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    /// Hundredths of a degree Celsius.
    centi_celsius: i64,
    /// Tenths of a percent of relative humidity.
    deci_percent: i64,
}

/// The pseudo-random walk: a reading and the generator that moves it.
struct Walk {
    rng: SplitMix64,
    reading: Reading,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("sensor: {problem}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let name = sensor_name(std::env::var("SENSOR_NAME").ok().as_deref());
    let seed = options.seed.unwrap_or_else(|| seed_from_name(&name));
    run(&name, seed, &options);
}

/// Prints readings until the count is reached (or forever), sleeping in between.
fn run(name: &str, seed: u64, options: &Options) {
    let mut walk = Walk::new(seed);
    let mut seq: u64 = 0;
    loop {
        say(&line(name, seq, walk.reading));
        seq += 1;
        if options.count.is_some_and(|count| seq >= count) {
            return;
        }
        std::thread::sleep(options.interval);
        walk.step();
    }
}

/// Parses argv (without the program name).
fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        interval: DEFAULT_INTERVAL,
        count: None,
        seed: None,
    };
    let mut words = args.iter().map(String::as_str);
    while let Some(flag) = words.next() {
        let mut value = || {
            words
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .and_then(number)
        };
        match flag {
            "--interval-ms" => options.interval = Duration::from_millis(value()?),
            "--count" => options.count = Some(value()?),
            "--seed" => options.seed = Some(value()?),
            _ => return Err(format!("unknown argument: {flag:?}")),
        }
    }
    Ok(options)
}

fn number(word: &str) -> Result<u64, String> {
    word.parse()
        .map_err(|_| format!("not a valid number: {word:?}"))
}

/// The name printed in every line: `$SENSOR_NAME` with whitespace replaced, or the default.
fn sensor_name(from_env: Option<&str>) -> String {
    match from_env.map(str::trim) {
        Some(name) if !name.is_empty() => name.replace(char::is_whitespace, "_"),
        _ => DEFAULT_NAME.to_owned(),
    }
}

/// FNV-1a of the name: a stable default seed that differs between sensors.
fn seed_from_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One output line.
fn line(name: &str, seq: u64, reading: Reading) -> String {
    format!(
        "sensor={name} seq={seq} temperature_c={} humidity_pct={}",
        fixed(reading.centi_celsius, 2),
        fixed(reading.deci_percent, 1)
    )
}

/// Formats `value / 10^decimals` with exactly `decimals` digits after the point.
fn fixed(value: i64, decimals: u32) -> String {
    let scale = 10_i64.pow(decimals);
    let sign = if value < 0 { "-" } else { "" };
    let (whole, fraction) = (value.abs() / scale, value.abs() % scale);
    format!(
        "{sign}{whole}.{fraction:0width$}",
        width = decimals as usize
    )
}

impl Walk {
    /// Starts at a seed-chosen reading near 21 °C and 50 %.
    fn new(seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let reading = Reading {
            centi_celsius: 2000 + rng.below(300),
            deci_percent: 400 + rng.below(200),
        };
        Self { rng, reading }
    }

    /// Moves both values by a small random amount, staying within their ranges.
    fn step(&mut self) {
        let r = &mut self.reading;
        r.centi_celsius = nudge(
            r.centi_celsius,
            &mut self.rng,
            TEMPERATURE_STEP,
            TEMPERATURE_RANGE,
        );
        r.deci_percent = nudge(r.deci_percent, &mut self.rng, HUMIDITY_STEP, HUMIDITY_RANGE);
    }
}

/// `value` moved by a random amount in `-step..=step`, clamped to `range`.
fn nudge(value: i64, rng: &mut SplitMix64, step: i64, (low, high): (i64, i64)) -> i64 {
    (value + rng.below(2 * step + 1) - step).clamp(low, high)
}

/// SplitMix64: tiny, fast and good enough for simulated weather.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` is small and positive here, so the bias is nil).
    fn below(&mut self, bound: i64) -> i64 {
        (self.next() % bound.unsigned_abs()) as i64
    }
}

/// Writes one line to stdout and flushes it, so log followers see it at once.
/// A closed stdout is ignored: a sensor keeps measuring.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    fn readings(seed: u64, n: usize) -> Vec<Reading> {
        let mut walk = Walk::new(seed);
        (0..n)
            .map(|_| {
                let reading = walk.reading;
                walk.step();
                reading
            })
            .collect()
    }

    #[test]
    fn runs_forever_once_a_second_without_arguments() {
        assert_eq!(
            parse(&[]),
            Ok(Options {
                interval: Duration::from_secs(1),
                count: None,
                seed: None,
            })
        );
    }

    #[test]
    fn parses_interval_count_and_seed_in_any_order() {
        assert_eq!(
            parse(&args(&[
                "--count",
                "3",
                "--seed",
                "7",
                "--interval-ms",
                "10"
            ])),
            Ok(Options {
                interval: Duration::from_millis(10),
                count: Some(3),
                seed: Some(7),
            })
        );
    }

    #[test]
    fn rejects_unknown_flags_missing_values_and_bad_numbers() {
        assert!(parse(&args(&["--loud"])).is_err());
        assert!(parse(&args(&["--count"])).is_err());
        assert!(parse(&args(&["--count", "-1"])).is_err());
        assert!(parse(&args(&["--interval-ms", "soon"])).is_err());
        assert!(parse(&args(&["3"])).is_err());
    }

    #[test]
    fn formats_a_reading_as_key_value_pairs() {
        let reading = Reading {
            centi_celsius: 2137,
            deci_percent: 482,
        };
        assert_eq!(
            line("greenhouse", 4, reading),
            "sensor=greenhouse seq=4 temperature_c=21.37 humidity_pct=48.2"
        );
    }

    #[test]
    fn fixed_point_keeps_leading_zeros_and_the_sign() {
        assert_eq!(fixed(2105, 2), "21.05");
        assert_eq!(fixed(7, 2), "0.07");
        assert_eq!(fixed(-150, 2), "-1.50");
        assert_eq!(fixed(400, 1), "40.0");
    }

    #[test]
    fn the_name_comes_from_the_environment_with_a_default() {
        assert_eq!(sensor_name(None), "sensor");
        assert_eq!(sensor_name(Some("  ")), "sensor");
        assert_eq!(sensor_name(Some("barn")), "barn");
        assert_eq!(sensor_name(Some("north barn")), "north_barn");
    }

    #[test]
    fn the_same_seed_repeats_the_same_walk() {
        assert_eq!(readings(42, 100), readings(42, 100));
        assert_ne!(readings(42, 100), readings(43, 100));
        assert_eq!(seed_from_name("barn"), seed_from_name("barn"));
        assert_ne!(seed_from_name("barn"), seed_from_name("shed"));
    }

    #[test]
    fn the_walk_takes_small_steps_and_stays_in_range() {
        for seed in 0..20 {
            let walk = readings(seed, 2000);
            for pair in walk.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                assert!((a.centi_celsius - b.centi_celsius).abs() <= TEMPERATURE_STEP);
                assert!((a.deci_percent - b.deci_percent).abs() <= HUMIDITY_STEP);
            }
            for r in walk {
                assert!((TEMPERATURE_RANGE.0..=TEMPERATURE_RANGE.1).contains(&r.centi_celsius));
                assert!((HUMIDITY_RANGE.0..=HUMIDITY_RANGE.1).contains(&r.deci_percent));
            }
        }
    }

    #[test]
    fn the_walk_actually_moves() {
        let walk = readings(1, 50);
        assert!(walk.iter().any(|r| *r != walk[0]));
    }
}
