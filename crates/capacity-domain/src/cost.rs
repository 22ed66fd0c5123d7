//! Money, exactly: unit prices are decimals with up to 6 fractional digits,
//! quantities are thousandths, durations are microseconds; every product is
//! kept as an integer and rounded once, half away from zero, to cents.

use crate::resource::{Period, div_round};
use crate::time::{Instant, MICROS_PER_DAY, MICROS_PER_WEEK};
use crate::timeline::Timeline;

/// A price in millionths of the currency unit.
pub fn parse_price_micros(amount: &str) -> Option<i128> {
    let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
    if int.is_empty()
        || frac.len() > 6
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut frac = frac.to_owned();
    while frac.len() < 6 {
        frac.push('0');
    }
    Some(int.parse::<i128>().ok()? * 1_000_000 + frac.parse::<i128>().ok()?)
}

/// Cents as a decimal string: 123456 → "1234.56".
pub fn format_cents(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let a = cents.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// The length of one `period` for a commitment read over `[from, to)`: a
/// month is the calendar month the window starts in.
fn period_micros(period: Period, window_start: Instant) -> i128 {
    (match period {
        Period::Hourly => 3_600_000_000,
        Period::Daily => MICROS_PER_DAY,
        Period::Weekly => MICROS_PER_WEEK,
        Period::Monthly => {
            window_start.next_month_start().micros() - window_start.month_start().micros()
        }
    }) as i128
}

/// The cost, in cents, of holding `commitment` (per `period`) over `[from, to)`.
pub fn committed_cents(
    commitment: &Timeline,
    period: Period,
    from: Instant,
    to: Instant,
    price_micros: i128,
) -> i128 {
    // Σ value (thousandths) × duration (µs) / period (µs) — kept as one fraction.
    let mut points: Vec<Instant> = std::iter::once(from)
        .chain(
            commitment
                .steps()
                .iter()
                .map(|s| s.0)
                .filter(|&t| t > from && t < to),
        )
        .collect();
    points.push(to);
    let mut thousandths_micros: i128 = 0;
    for w in points.windows(2) {
        let v = commitment.value_at(w[0]) as i128;
        thousandths_micros += v * (w[1].micros() - w[0].micros()) as i128;
    }
    // units × price: thousandths_micros / period / 1000 × price_micros / 1e6 → cents × 100
    div_round(
        thousandths_micros * price_micros,
        period_micros(period, from) * 1000 * 10_000,
    )
}

/// The cost, in cents, of `used` thousandths of a unit.
pub fn usage_cents(used_thousandths: i64, price_micros: i128) -> i128 {
    div_round(used_thousandths as i128 * price_micros, 1000 * 10_000)
}

/// What a month will cost at close at the current run rate: delivered so far
/// scaled to the whole window. Before it starts, the commitment is the best guess.
pub fn projected_cents(
    delivered: i128,
    committed: i128,
    from: Instant,
    to: Instant,
    now: Instant,
) -> i128 {
    if now >= to {
        return delivered;
    }
    if now <= from {
        return committed;
    }
    div_round(
        delivered * (to.micros() - from.micros()) as i128,
        (now.micros() - from.micros()) as i128,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Instant {
        Instant::parse(s).unwrap()
    }

    #[test]
    fn prices_parse_exactly() {
        assert_eq!(parse_price_micros("85.00"), Some(85_000_000));
        assert_eq!(parse_price_micros("0.002"), Some(2_000));
        assert_eq!(parse_price_micros("1.1234567"), None);
        assert_eq!(format_cents(123_456), "1234.56");
        assert_eq!(format_cents(5), "0.05");
    }

    #[test]
    fn a_weekly_commitment_over_a_thirty_day_month() {
        // 40 h/week × 30/7 weeks × 85.00 = 14571.428… → 14571.43
        let may = (at("2026-06-01T00:00:00Z"), at("2026-07-01T00:00:00Z"));
        let c = Timeline::from_steps([(at("2026-01-01T00:00:00Z"), 40_000)]);
        assert_eq!(
            format_cents(committed_cents(
                &c,
                Period::Weekly,
                may.0,
                may.1,
                85_000_000
            )),
            "14571.43"
        );
    }

    #[test]
    fn a_monthly_commitment_for_half_a_month() {
        let jun = (at("2026-06-01T00:00:00Z"), at("2026-07-01T00:00:00Z"));
        let c = Timeline::from_steps([(at("2026-06-16T00:00:00Z"), 45_000_000)]);
        // 45000 credits × 15/30 × 0.002 = 45.00
        assert_eq!(
            format_cents(committed_cents(&c, Period::Monthly, jun.0, jun.1, 2_000)),
            "45.00"
        );
    }

    #[test]
    fn run_rate_projection() {
        let (from, to) = (at("2026-04-01T00:00:00Z"), at("2026-05-01T00:00:00Z"));
        assert_eq!(
            projected_cents(1000, 9999, from, to, at("2026-04-16T00:00:00Z")),
            2000
        );
        assert_eq!(
            projected_cents(1000, 9999, from, to, at("2026-05-02T00:00:00Z")),
            1000
        );
        assert_eq!(
            projected_cents(0, 9999, from, to, at("2026-03-02T00:00:00Z")),
            9999
        );
        assert_eq!(usage_cents(38_500, 85_000_000), 327_250);
    }
}
