//! The agent's batching times, by [`wasmfleet_protocol::debounce`]'s rule, and the sleep
//! that waits for a batch.

use std::time::Duration;

use tokio::time::Instant;
pub use wasmfleet_protocol::debounce::Debounce;

/// How long status changes must pause before they are reported.
pub const STATUS_QUIET: Duration = Duration::from_millis(5);

/// The longest a status change waits for its report while others keep coming.
pub const STATUS_COALESCE: Duration = Duration::from_millis(100);

/// The rule of status reports.
pub fn status() -> Debounce<Instant> {
    Debounce::new(STATUS_QUIET, STATUS_COALESCE)
}

/// Sleeps until `at`, or forever when there is nothing due.
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
