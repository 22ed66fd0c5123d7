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

impl Instant {
    /// RFC 3339 in UTC for an instant from 1970 to [`Instant::END_OF_TIME`],
    /// as jiff prints a timestamp (`Z`, fractional seconds
    /// only when not zero, trailing zeros dropped), written into a stack
    /// buffer: every record in every answer carries a few of these.
    fn rfc3339(self, buf: &mut [u8; 27]) -> &str {
        /// Writes `v` as `width` digits at `at`, then `sep` (if not 0).
        fn put(buf: &mut [u8; 27], at: usize, mut v: i64, width: usize, sep: u8) -> usize {
            for i in (0..width).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            if sep == 0 {
                return at + width;
            }
            buf[at + width] = sep;
            at + width + 1
        }
        // The civil date of a day number: Howard Hinnant's `civil_from_days`
        // (days since 1970-01-01 in 400-year eras of 146,097 days).
        let days = self.0.div_euclid(MICROS_PER_DAY);
        let secs = self.0.rem_euclid(MICROS_PER_DAY) / MICROS_PER_SECOND;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let mut n = put(buf, 0, year, 4, b'-');
        n = put(buf, n, month, 2, b'-');
        n = put(buf, n, day, 2, b'T');
        n = put(buf, n, secs / 3600, 2, b':');
        n = put(buf, n, secs / 60 % 60, 2, b':');
        n = put(buf, n, secs % 60, 2, 0);
        let mut frac = self.0.rem_euclid(MICROS_PER_SECOND);
        if frac != 0 {
            let mut digits = 6;
            while frac % 10 == 0 {
                frac /= 10;
                digits -= 1;
            }
            n = put(buf, n, frac, 0, b'.');
            n = put(buf, n, frac, digits, 0);
        }
        buf[n] = b'Z';
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&buf[..=n]).unwrap_or("1970-01-01T00:00:00Z")
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (0..=Instant::END_OF_TIME.0).contains(&self.0) {
            f.write_str(self.rfc3339(&mut [0; 27]))
        } else {
            // Before 1970 (arithmetic only; nothing stored or parsed is).
            write!(f, "{}", self.timestamp())
        }
    }
}

impl Serialize for Instant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if (0..=Instant::END_OF_TIME.0).contains(&self.0) {
            s.serialize_str(self.rfc3339(&mut [0; 27]))
        } else {
            s.collect_str(self)
        }
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

    proptest::proptest! {
        #[test]
        fn prints_as_jiff_does(us in 0..=Timestamp::MAX.as_microsecond(), whole in proptest::bool::ANY) {
            // Whole seconds are the common case and the fraction's edge.
            let i = Instant::from_micros(if whole { us - us % MICROS_PER_SECOND } else { us });
            proptest::prop_assert_eq!(i.to_string(), i.timestamp().to_string());
            proptest::prop_assert_eq!(Instant::parse(&i.to_string()), Ok(i));
        }
    }

    #[test]
    fn prints_fractions_and_the_ends_of_time() {
        for (us, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1, "1970-01-01T00:00:00.000001Z"),
            (1_500_000, "1970-01-01T00:00:01.5Z"),
            (Instant::END_OF_TIME.micros(), "9999-12-31T23:59:59Z"),
            (-MICROS_PER_DAY, "1969-12-31T00:00:00Z"),
        ] {
            assert_eq!(Instant::from_micros(us).to_string(), text);
            assert_eq!(
                serde_json::to_string(&Instant::from_micros(us)).unwrap(),
                format!("\"{text}\"")
            );
        }
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
