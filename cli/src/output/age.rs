//! Ages as kubectl prints them (`5s`, `3m20s`, `4h10m`, `2d3h`, ...).

use jiff::Timestamp;
use serde_json::Value;

/// The age of an object from its RFC 3339 `creationTimestamp`, or `<unknown>`.
pub fn age(created: &Value, now: Timestamp) -> String {
    since(created, now).unwrap_or_else(|| "<unknown>".to_owned())
}

/// Time elapsed since an RFC 3339 timestamp, if it parses.
fn since(timestamp: &Value, now: Timestamp) -> Option<String> {
    let then: Timestamp = timestamp.as_str()?.parse().ok()?;
    // Milliseconds, truncated toward zero like Go's `int(d.Seconds())`.
    let seconds = (now.as_millisecond() - then.as_millisecond()) / 1000;
    Some(human_duration(seconds))
}

/// Go's `k8s.io/apimachinery/pkg/util/duration.HumanDuration`, on whole seconds.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

fn with_remainder(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_durations_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (4 * 3600 + 600, "4h10m"),
            (30 * 3600, "30h"),
            (51 * 3600, "2d3h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(seconds), expected, "{seconds}s");
        }
    }

    #[test]
    fn age_is_measured_from_the_creation_timestamp() {
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().expect("ts");
        assert_eq!(age(&Value::from("2026-01-01T00:00:00Z"), now), "10m");
        assert_eq!(age(&Value::from("2026-01-01T00:09:55.5+00:00"), now), "4s");
        assert_eq!(age(&Value::Null, now), "<unknown>");
        assert_eq!(age(&Value::from("yesterday"), now), "<unknown>");
    }
}
