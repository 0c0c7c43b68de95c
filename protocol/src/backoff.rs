//! Capped exponential back-off: the one home of the rule, for the agent's and the server's
//! reconnects to the broker, the server's controllers retrying a key, and the agent's
//! container restarts and module retries ([`BackoffPolicy::step`], without jitter).
//!
//! rumqttc reconnects on the very next `poll()` after an error, so without this a client
//! whose broker is down would spin on connect attempts. Jitter spreads a fleet's reconnects
//! after a broker restart. Pure: the caller supplies the jitter (a random fraction, or 1.0
//! for none).

use std::time::Duration;

/// Delays that double from `base` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first delay.
    pub base: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_millis(250),
            max: Duration::from_secs(15),
        }
    }
}

impl BackoffPolicy {
    /// The delay of attempt `attempt` (0-based), without jitter: `base` doubled `attempt`
    /// times, at most `max`.
    pub fn step(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// The attempt counter of one reconnect sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    /// A fresh sequence.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// The delay before the next attempt, given a jitter fraction in `[0, 1)`: the
    /// delay is drawn from the upper half of the doubled step, `[d/2, d)`. A jitter of 1.0
    /// gives the full step (no jitter).
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let step = self.policy.step(self.failures);
        self.failures = self.failures.saturating_add(1);
        let jitter = jitter.clamp(0.0, 1.0);
        step.mul_f64(0.5 + jitter / 2.0)
    }

    /// How many delays were handed out since the start or the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts over after a successful connect.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut backoff = Backoff::new(policy());
        let delays: Vec<u128> = (0..6)
            .map(|_| backoff.next_delay(1.0).as_millis())
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_keeps_a_delay_within_the_upper_half_of_its_step() {
        let mut low = Backoff::new(policy());
        let mut high = Backoff::new(policy());
        assert_eq!(low.next_delay(0.0), Duration::from_millis(50));
        assert_eq!(
            high.next_delay(0.999_999),
            Duration::from_millis(100).mul_f64(0.999_999_5)
        );
    }

    #[test]
    fn a_successful_connect_resets_the_sequence() {
        let mut backoff = Backoff::new(policy());
        backoff.next_delay(1.0);
        backoff.next_delay(1.0);
        backoff.reset();
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(100));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut backoff = Backoff::new(policy());
        for _ in 0..100 {
            assert!(backoff.next_delay(0.5) <= Duration::from_secs(1));
        }
    }
}
