//! Instants and calendars. Instants are UTC microseconds since the epoch — the
//! form both databases store — printed as RFC 3339. Weeks are ISO weeks
//! (Monday 00:00 UTC); the billing period is the calendar month (UTC).

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
pub const MICROS_PER_WEEK: i64 = 7 * MICROS_PER_DAY;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(i64);

impl Instant {
    /// Far enough in the future to stand for "never" in timelines.
    pub const END_OF_TIME: Instant = Instant(253_402_300_799_000_000); // 9999-12-31T23:59:59Z

    pub fn from_micros(us: i64) -> Instant {
        Instant(us)
    }
    pub fn micros(self) -> i64 {
        self.0
    }
    pub fn parse(s: &str) -> Result<Instant, &'static str> {
        // RFC 3339 with an explicit offset; civil times without one are refused.
        let ts: Timestamp = s
            .parse()
            .map_err(|_| "must be an RFC 3339 timestamp, e.g. 2026-04-15T06:00:00Z")?;
        let i = Instant(ts.as_microsecond());
        if i.0 < 0 || i > Instant::END_OF_TIME {
            return Err("must be between 1970-01-01 and 9999-12-31");
        }
        Ok(i)
    }
    fn timestamp(self) -> Timestamp {
        Timestamp::from_microsecond(self.0).unwrap_or(Timestamp::UNIX_EPOCH)
    }
    fn date(self) -> Date {
        self.timestamp().to_zoned_datetime(TimeZone::UTC).date()
    }
    fn from_date(d: Date) -> Instant {
        let zdt = d
            .to_datetime(Time::midnight())
            .to_zoned_datetime(TimeZone::UTC)
            .expect("UTC midnight always exists");
        Instant(zdt.timestamp().as_microsecond())
    }
    /// Two-digit UTC year, for minted identifiers.
    pub fn year(self) -> i16 {
        self.date().year()
    }
    pub fn plus_micros(self, us: i64) -> Instant {
        Instant(self.0.saturating_add(us))
    }
    /// Monday 00:00 UTC of the ISO week holding this instant.
    pub fn week_start(self) -> Instant {
        let day = self.0.div_euclid(MICROS_PER_DAY);
        // 1970-01-01 was a Thursday: (day + 3) mod 7 is 0 on Mondays.
        let monday = day - (day + 3).rem_euclid(7);
        Instant(monday * MICROS_PER_DAY)
    }
    /// 00:00 UTC on the first day of this instant's month.
    pub fn month_start(self) -> Instant {
        Instant::from_date(self.date().first_of_month())
    }
    /// The start of the next billing period (calendar month, UTC).
    pub fn next_month_start(self) -> Instant {
        let first = self.date().first_of_month();
        let next = first
            .checked_add(jiff::Span::new().months(1))
            .unwrap_or(first);
        Instant::from_date(next)
    }
    /// The start of the next calendar quarter (January, April, July, October).
    pub fn next_quarter_start(self) -> Instant {
        let mut t = self.next_month_start();
        while (t.date().month() - 1) % 3 != 0 {
            t = t.next_month_start();
        }
        t
    }
    /// Midnight UTC of a calendar date, if valid.
    pub fn from_ymd(y: i16, m: i8, d: i8) -> Option<Instant> {
        Date::new(y, m, d).ok().map(Instant::from_date)
    }
    /// Monday 00:00 UTC of ISO week `week` of ISO year `year`.
    pub fn from_iso_week(year: i16, week: i8) -> Option<Instant> {
        jiff::civil::ISOWeekDate::new(year, week, Weekday::Monday)
            .ok()
            .map(|w| Instant::from_date(w.date()))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.timestamp())
    }
}

impl Serialize for Instant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Instant::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Instant {
        Instant::parse(s).unwrap()
    }

    #[test]
    fn prints_rfc3339_utc() {
        assert_eq!(
            at("2026-04-15T06:00:00Z").to_string(),
            "2026-04-15T06:00:00Z"
        );
        assert_eq!(
            at("2026-04-15T08:00:00+02:00").to_string(),
            "2026-04-15T06:00:00Z"
        );
        assert!(Instant::parse("2026-04-15 06:00").is_err());
        assert!(Instant::parse("2026-04-15T06:00:00").is_err());
    }

    #[test]
    fn weeks_start_on_monday_utc() {
        assert_eq!(
            at("2026-04-15T06:00:00Z").week_start(),
            at("2026-04-13T00:00:00Z")
        );
        assert_eq!(
            at("2026-04-13T00:00:00Z").week_start(),
            at("2026-04-13T00:00:00Z")
        );
        assert_eq!(
            at("2026-04-12T23:59:59Z").week_start(),
            at("2026-04-06T00:00:00Z")
        );
        assert_eq!(
            Instant::from_iso_week(2026, 27),
            Some(at("2026-06-29T00:00:00Z"))
        );
        assert_eq!(
            Instant::from_iso_week(2026, 1),
            Some(at("2025-12-29T00:00:00Z"))
        );
    }

    #[test]
    fn billing_periods_are_calendar_months() {
        assert_eq!(
            at("2026-04-15T06:00:00Z").next_month_start(),
            at("2026-05-01T00:00:00Z")
        );
        assert_eq!(
            at("2026-12-31T23:00:00Z").next_month_start(),
            at("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            at("2026-04-15T06:00:00Z").month_start(),
            at("2026-04-01T00:00:00Z")
        );
        assert_eq!(at("2026-04-15T06:00:00Z").year(), 2026);
        assert_eq!(
            at("2026-04-15T06:00:00Z").next_quarter_start(),
            at("2026-07-01T00:00:00Z")
        );
        assert_eq!(
            at("2026-12-01T00:00:00Z").next_quarter_start(),
            at("2027-01-01T00:00:00Z")
        );
    }
}
