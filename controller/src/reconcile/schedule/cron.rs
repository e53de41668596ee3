//! Reading a Schedule's cron expression in its time zone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed schedule: the expression and the zone it is read in.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

/// A field of the Schedule that is wrong, and why (with the fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    /// `spec.schedule` or `spec.timeZone`.
    pub field: &'static str,
    /// What is wrong and how to write it.
    pub message: String,
}

impl CronSchedule {
    /// Parses `expression` (five fields, six with seconds, or `@daily`…) in `zone` (IANA
    /// name; UTC when `None`).
    pub fn parse(expression: &str, zone: Option<&str>) -> Result<Self, InvalidField> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| InvalidField {
                field: "spec.schedule",
                message: format!(
                    "spec.schedule {expression:?} is not a cron expression ({e}); write five fields \
                     (`0 2 * * *`), six with seconds first (`*/30 * * * * *`), or @hourly/@daily/@weekly"
                ),
            })?;
        let zone = match zone {
            None => Tz::UTC,
            Some(z) => z.parse::<Tz>().map_err(|_| InvalidField {
                field: "spec.timeZone",
                message: format!(
                    "spec.timeZone {z:?} is not an IANA time zone; write e.g. `Europe/Berlin` or `UTC`"
                ),
            })?,
        };
        Ok(Self { cron, zone })
    }

    /// The newest scheduled time at or before `now`.
    pub fn latest(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&now.with_timezone(&self.zone), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first scheduled time after `now`.
    pub fn next(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&now.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn reads_the_expression_in_its_zone() {
        let s = CronSchedule::parse("0 2 * * *", Some("Europe/Berlin")).expect("valid");
        let now = Utc
            .with_ymd_and_hms(2026, 1, 10, 12, 0, 0)
            .single()
            .expect("time");
        // 02:00 in Berlin in winter is 01:00 UTC.
        assert_eq!(s.latest(now), Utc.with_ymd_and_hms(2026, 1, 10, 1, 0, 0).single());
        assert_eq!(s.next(now), Utc.with_ymd_and_hms(2026, 1, 11, 1, 0, 0).single());
        let secs = CronSchedule::parse("*/2 * * * * *", None).expect("six fields");
        assert_eq!(
            secs.next(now),
            Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 2).single()
        );
    }

    #[test]
    fn names_the_bad_field() {
        let e = CronSchedule::parse("every day", None).expect_err("invalid");
        assert_eq!(e.field, "spec.schedule");
        let e = CronSchedule::parse("@daily", Some("Mars/Olympus")).expect_err("invalid");
        assert_eq!(e.field, "spec.timeZone");
        assert!(e.message.contains("Mars/Olympus"));
    }
}
