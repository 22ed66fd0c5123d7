//! Utilisation: actual usage over a week against the commitment in force,
//! computed exactly on a common denominator and rounded once, half away from
//! zero, to one decimal (SPEC §3).

use crate::quantity::Quantity;
use crate::resource::{Period, div_round};
use serde::{Serialize, Serializer};

/// A percentage in tenths of a percent (96.3 % = 963).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(i64);

impl Percent {
    pub fn tenths(self) -> i64 {
        self.0
    }
    pub fn from_tenths(t: i64) -> Percent {
        Percent(t)
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        if a.is_multiple_of(10) {
            write!(f, "{sign}{}", a / 10)
        } else {
            write!(f, "{sign}{}.{}", a / 10, a % 10)
        }
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n: serde_json::Number = self
            .to_string()
            .parse()
            .map_err(serde::ser::Error::custom)?;
        n.serialize(s)
    }
}

/// `actual` (used in one week) against `committed` (per `period`), or `None`
/// when nothing is committed.
pub fn weekly_utilisation(
    actual: Quantity,
    committed: Quantity,
    period: Period,
) -> Option<Percent> {
    if committed.thousandths() == 0 {
        return None;
    }
    // actual / (committed × n / d) × 100, in tenths: actual × 1000 × d / (committed × n)
    let (n, d) = period.per_week_factor();
    let num = actual.thousandths() as i128 * 1000 * d;
    let den = committed.thousandths() as i128 * n;
    Some(Percent(div_round(num, den) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn rounds_half_away_from_zero_to_one_decimal() {
        let p = |a, c| {
            weekly_utilisation(q(a), q(c), Period::Weekly)
                .unwrap()
                .to_string()
        };
        assert_eq!(p("38.5", "40"), "96.3");
        assert_eq!(p("1", "3"), "33.3");
        assert_eq!(p("2", "3"), "66.7");
        assert_eq!(p("40", "40"), "100");
        assert_eq!(p("0", "40"), "0");
        assert_eq!(p("1", "2000"), "0.1"); // 0.05 % rounds up
        assert_eq!(weekly_utilisation(q("5"), q("0"), Period::Weekly), None);
    }

    #[test]
    fn monthly_commitments_compare_exactly() {
        // 45000 credits a month is 10384.615… a week; using all of it is 100 %.
        let week = Period::Monthly.to_per_week(q("45000"));
        let p = weekly_utilisation(week, q("45000"), Period::Monthly).unwrap();
        assert_eq!(p.to_string(), "100");
        let p = weekly_utilisation(q("5192.307"), q("45000"), Period::Monthly).unwrap();
        assert_eq!(p.to_string(), "50");
    }
}
