//! Polling with a deadline: how tests wait for a cluster to converge without sleeping blind.

use std::time::{Duration, Instant};

/// Calls `probe` every 100 ms until it returns `Some`, or panics with `what` and the last
/// observation after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("never probed");
    while Instant::now() < deadline {
        match probe() {
            Ok(value) => return value,
            Err(observed) => last = observed,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}; last observed: {last}");
}
