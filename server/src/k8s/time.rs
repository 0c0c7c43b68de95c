//! Timestamps as Kubernetes writes them: `Time` in whole seconds (`2024-01-01T00:00:00Z`)
//! and `MicroTime` with microseconds (`2024-01-01T00:00:00.000000Z`), always UTC.

/// What a time that cannot be represented is written as (the Unix epoch).
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// Now, in the `YYYY-MM-DDTHH:MM:SSZ` form Kubernetes emits.
pub fn now_rfc3339() -> String {
    rfc3339(jiff::Timestamp::now())
}

/// A time in the `YYYY-MM-DDTHH:MM:SSZ` form Kubernetes emits (whole seconds, UTC).
pub fn rfc3339(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Milliseconds since the Unix epoch (as agents report them) in the form of [`rfc3339`];
/// the epoch itself for a value out of range.
pub fn rfc3339_from_unix_ms(unix_ms: u64) -> String {
    i64::try_from(unix_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| EPOCH.to_owned(), rfc3339)
}

/// Now as a Kubernetes `MicroTime` (`2024-01-01T00:00:00.000000Z`).
pub fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_whole_seconds_in_utc() {
        let at = jiff::Timestamp::from_millisecond(1_700_000_000_999).expect("in range");
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20Z");
        assert_eq!(
            rfc3339_from_unix_ms(1_700_000_000_999),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn a_millisecond_count_out_of_range_is_the_epoch() {
        assert_eq!(rfc3339_from_unix_ms(u64::MAX), EPOCH);
    }

    #[test]
    fn now_has_the_shape_of_time_and_micro_time() {
        let now = now_rfc3339();
        assert_eq!(now.len(), EPOCH.len());
        assert!(now.ends_with('Z'));
        let micro = now_micro();
        assert_eq!(micro.len(), "2024-01-01T00:00:00.000000Z".len());
        assert!(micro.ends_with('Z') && micro.contains('.'));
    }
}
