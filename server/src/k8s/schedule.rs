//! CronJob schedules: standard five-field cron (`*/5 * * * *`, names, ranges, steps) and the
//! `@yearly`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly` macros, in a time zone
//! (an IANA name; the server's local zone when none is given, as Kubernetes does), parsed
//! and evaluated by the `croner` crate.

use std::str::FromStr as _;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
}

/// Why a schedule or time zone is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The schedule does not parse.
    #[error("{0:?}: {1}")]
    Schedule(String, String),
    /// `TZ=` or `CRON_TZ=` inside the schedule.
    #[error("{0:?}: cannot use TZ or CRON_TZ in schedule, use timeZone field instead")]
    ZoneInSchedule(String),
    /// An unknown time zone.
    #[error("{0:?}: unknown time zone")]
    TimeZone(String),
}

impl Schedule {
    /// Parses `schedule` in `zone` (the local zone when `None`).
    pub fn parse(schedule: &str, zone: Option<&str>) -> Result<Self, Invalid> {
        let trimmed = schedule.trim();
        if trimmed.starts_with("TZ=") || trimmed.starts_with("CRON_TZ=") {
            return Err(Invalid::ZoneInSchedule(schedule.to_owned()));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = match trimmed {
            "@midnight" => Cron::from_str("0 0 * * *"),
            _ => parser.parse(trimmed),
        }
        .map_err(|err| Invalid::Schedule(schedule.to_owned(), err.to_string()))?;
        let zone = match zone {
            Some(name) => TimeZone::get(name).map_err(|_| Invalid::TimeZone(name.to_owned()))?,
            None => TimeZone::system(),
        };
        Ok(Self { cron, zone })
    }

    /// The latest scheduled time at or before `now`, if any is after `after`.
    pub fn due(&self, after: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let now = now.to_zoned(self.zone.clone());
        let last = self.cron.find_previous_occurrence(&now, true).ok()?;
        let last = last.timestamp();
        (last > after).then_some(last)
    }

    /// The next scheduled time after `now`.
    pub fn next(&self, now: Timestamp) -> Option<Timestamp> {
        let now = now.to_zoned(self.zone.clone());
        Some(
            self.cron
                .find_next_occurrence(&now, false)
                .ok()?
                .timestamp(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn five_fields_and_macros_parse_and_others_do_not() {
        for good in [
            "*/5 * * * *",
            "0 3 * * MON-FRI",
            "@hourly",
            "@daily",
            "@midnight",
            "15 2 1 */2 0",
        ] {
            assert!(Schedule::parse(good, Some("UTC")).is_ok(), "{good}");
        }
        for bad in [
            "* * * * * *",
            "61 * * * *",
            "every minute",
            "",
            "TZ=UTC * * * * *",
        ] {
            assert!(Schedule::parse(bad, Some("UTC")).is_err(), "{bad}");
        }
        assert!(matches!(
            Schedule::parse("@daily", Some("Nowhere/Town")),
            Err(Invalid::TimeZone(_))
        ));
    }

    #[test]
    fn the_latest_due_time_honours_the_time_zone() {
        let daily = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).expect("valid");
        // 09:00 in Berlin (winter) is 08:00 UTC.
        let due = daily.due(at("2026-01-01T00:00:00Z"), at("2026-01-01T08:30:00Z"));
        assert_eq!(due, Some(at("2026-01-01T08:00:00Z")));
        assert_eq!(
            daily.due(at("2026-01-01T08:00:00Z"), at("2026-01-01T08:30:00Z")),
            None
        );
        assert_eq!(
            daily.next(at("2026-01-01T08:30:00Z")),
            Some(at("2026-01-02T08:00:00Z"))
        );
        let sunday = Schedule::parse("0 0 * * 0", Some("UTC")).expect("valid");
        // 2026-01-04 is a Sunday.
        assert_eq!(
            sunday.next(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-04T00:00:00Z"))
        );
    }
}
