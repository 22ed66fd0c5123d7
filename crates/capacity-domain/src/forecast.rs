//! Demand against supply over a planning period (SPEC §5 Demand). Pure:
//! the store reads the timelines, this module reads them over the period.

use crate::quantity::format_thousandths;
use crate::time::{Instant, MICROS_PER_WEEK};
use crate::timeline::{RatioThousandths, Timeline};

/// A planning period: a quarter (`2026-Q3`), a month (`2026-07`) or an ISO
/// week (`2026-W27`), as a half-open range of instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanningPeriod {
    pub start: Instant,
    pub end: Instant,
}

impl PlanningPeriod {
    pub fn parse(s: &str) -> Option<PlanningPeriod> {
        let (y, rest) = s.split_once('-')?;
        if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: i16 = y.parse().ok()?;
        let num = |t: &str| -> Option<i8> {
            (t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok())?
        };
        if let Some(q) = rest.strip_prefix('Q') {
            let q: i8 = (q.len() == 1).then(|| q.parse().ok())??;
            if !(1..=4).contains(&q) {
                return None;
            }
            let start = Instant::from_ymd(year, (q - 1) * 3 + 1, 1)?;
            let end = if q == 4 {
                Instant::from_ymd(year + 1, 1, 1)?
            } else {
                Instant::from_ymd(year, q * 3 + 1, 1)?
            };
            return Some(PlanningPeriod { start, end });
        }
        if let Some(w) = rest.strip_prefix('W') {
            let week = num(w)?;
            let start = Instant::from_iso_week(year, week)?;
            // Week 53 exists only in long ISO years.
            if start.plus_micros(3 * 86_400_000_000).year() != year {
                return None;
            }
            return Some(PlanningPeriod {
                start,
                end: start.plus_micros(MICROS_PER_WEEK),
            });
        }
        let month = num(rest)?;
        if !(1..=12).contains(&month) {
            return None;
        }
        let start = Instant::from_ymd(year, month, 1)?;
        Some(PlanningPeriod {
            start,
            end: start.next_month_start(),
        })
    }

    /// The ISO weeks overlapping the period, the first and last clipped to it.
    pub fn weeks(&self) -> Vec<PlanningPeriod> {
        let mut out = Vec::new();
        let mut start = self.start;
        while start < self.end {
            let end = start
                .week_start()
                .plus_micros(MICROS_PER_WEEK)
                .min(self.end);
            out.push(PlanningPeriod { start, end });
            start = end;
        }
        out
    }
}

/// The headline figures of a forecast window, in thousandths of the pool's
/// unit per the pool's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// Peak total commitment over the window.
    pub committed: i64,
    /// Peak pending demand over the window.
    pub pending: i64,
    /// Supply × ratio minus commitment at the peak commitment, never below 0.
    pub available: i64,
    /// Pending minus available, never below 0.
    pub gap: i64,
    /// Supply × ratio at the peak commitment.
    pub capacity: i64,
    /// The most that commitment exceeds supply × ratio at any instant of the
    /// window (not only at the peak: supply may dip elsewhere), 0 when never.
    pub overcommitment: i64,
}

/// Reads supply, commitment and pending demand over `[from, to)`.
///
/// The peak commitment's instant is where supply is read; where the peak is
/// held at several instants, the one with least supply counts.
pub fn figures(
    supply: &Timeline,
    ratio: RatioThousandths,
    committed: &Timeline,
    pending: &Timeline,
    window: PlanningPeriod,
) -> Figures {
    let capacity_at = |supply: i64| (supply as i128 * ratio as i128).div_euclid(1000) as i64;
    // Walk both timelines' steps inside the window in time order, judging the
    // window's start and every instant where either changes.
    let (s_steps, c_steps) = (
        supply.steps_inside(window.start, window.end),
        committed.steps_inside(window.start, window.end),
    );
    let (mut s, mut c) = (
        supply.value_at(window.start),
        committed.value_at(window.start),
    );
    let (mut si, mut ci) = (0, 0);
    let (mut peak, mut cap) = (c, capacity_at(s));
    let mut over = c.saturating_sub(cap);
    loop {
        let t = match (s_steps.get(si), c_steps.get(ci)) {
            (None, None) => break,
            (Some(a), Some(b)) => a.0.min(b.0),
            (Some(a), None) => a.0,
            (None, Some(b)) => b.0,
        };
        while let Some(&(_, d)) = s_steps.get(si).filter(|x| x.0 == t) {
            s += d;
            si += 1;
        }
        while let Some(&(_, d)) = c_steps.get(ci).filter(|x| x.0 == t) {
            c += d;
            ci += 1;
        }
        let here = capacity_at(s);
        over = over.max(c.saturating_sub(here));
        if c > peak || (c == peak && here < cap) {
            peak = c;
            cap = here;
        }
    }
    let pending = pending.peak(window.start, window.end).max(0);
    let available = (cap - peak).max(0);
    Figures {
        committed: peak,
        pending,
        available,
        gap: (pending - available).max(0),
        capacity: cap,
        overcommitment: over.max(0),
    }
}

/// A plain sentence on what the figures mean and what to do.
///
/// An over-committed window is never described as covered (SPEC §5): its
/// sentence names the overcommitment first, then any pending demand.
/// How many complete weeks [`projected_weekly_usage`] averages over.
pub const USAGE_WEEKS: i64 = 12;

/// An allocation that was not active through all of the last
/// [`USAGE_WEEKS`] complete weeks: its usage in them, and its active span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartTimeUsage {
    pub used: i64,
    pub starts_at: Instant,
    /// Its end or closing, whichever is first ([`Instant::END_OF_TIME`] without).
    pub ends_at: Instant,
}

impl PartTimeUsage {
    /// The weeks of the window (12 weeks up to `window_end`, a week start)
    /// in which the allocation was active, at least one.
    fn active_weeks(&self, window_end: Instant) -> i64 {
        (1..=USAGE_WEEKS)
            .filter(|k| {
                let from = window_end.plus_micros(-k * MICROS_PER_WEEK);
                let to = from.plus_micros(MICROS_PER_WEEK);
                self.starts_at < to && from < self.ends_at
            })
            .count()
            .max(1) as i64
    }
}

/// A pool's projected weekly usage (SPEC §5 `projected_utilisation_percent`),
/// as an exact fraction `(numerator, denominator)` in thousandths: the sum
/// over its allocations of each one's usage in the last [`USAGE_WEEKS`]
/// complete weeks averaged over the weeks it was active. `total` is the
/// pool's usage in those weeks; `part_time` the allocations not active in
/// all of them (the others average over all twelve). `window_end` is the
/// start of the current week.
pub fn projected_weekly_usage(
    total: i64,
    part_time: &[PartTimeUsage],
    window_end: Instant,
) -> (i128, i128) {
    // 27720 is the least common multiple of 1..=12: every average is exact.
    const DEN: i128 = 27_720;
    let part_used: i128 = part_time.iter().map(|p| p.used as i128).sum();
    let full = (total as i128 - part_used) * (DEN / USAGE_WEEKS as i128);
    let part: i128 = part_time
        .iter()
        .map(|p| p.used as i128 * (DEN / p.active_weeks(window_end) as i128))
        .sum();
    (full + part, DEN)
}

pub fn recommendation(f: &Figures, unit: &str, label: &str) -> String {
    let q = format_thousandths;
    if f.overcommitment > 0 {
        let demand = if f.pending > 0 {
            format!(
                " {} {unit} of pending demand cannot be met either until it is resolved.",
                q(f.pending)
            )
        } else {
            String::new()
        };
        return format!(
            "The pool is over-committed in {label}: commitments exceed supply by up to {} {unit}. \
             Add at least {} {unit} of supply, or reduce or end commitments, before accepting any demand.{demand}",
            q(f.overcommitment),
            q(f.overcommitment)
        );
    }
    if f.gap > 0 {
        return format!(
            "Supply cannot meet pending demand in {label}: {} {unit} are requested but only {} are available, a gap of {}. \
             Add at least {} {unit} of supply before the period starts, or defer or decline requests.",
            q(f.pending),
            q(f.available),
            q(f.gap),
            q(f.gap)
        );
    }
    let headroom = f.available - f.pending;
    if f.capacity > 0 && headroom * 10 < f.capacity {
        return format!(
            "Supply covers pending demand in {label} but only just: {} {unit} of headroom remain after the {} requested. \
             Plan extra supply before accepting more demand.",
            q(headroom),
            q(f.pending)
        );
    }
    if f.capacity > 0 && (f.committed + f.pending) * 2 < f.capacity {
        return format!(
            "Supply is well above need in {label}: {} of {} {unit} are committed or requested. \
             Consider releasing or reassigning surplus supply.",
            q(f.committed + f.pending),
            q(f.capacity)
        );
    }
    format!(
        "Supply comfortably covers pending demand in {label}: {} {unit} remain available after the {} requested.",
        q(headroom),
        q(f.pending)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_allocation_is_averaged_over_the_weeks_it_was_active() {
        let end = Instant::parse("2026-04-13T00:00:00Z").unwrap();
        let weeks_ago = |k: i64| end.plus_micros(-k * MICROS_PER_WEEK);
        // One allocation all 12 weeks (1200 used: 100 a week), one started
        // 3 weeks ago (300 used: 100 a week), one that ended just into the
        // window's third week (30 used over the 3 weeks it touched: 10 a week).
        let part = [
            PartTimeUsage {
                used: 300,
                starts_at: weeks_ago(3),
                ends_at: Instant::END_OF_TIME,
            },
            PartTimeUsage {
                used: 30,
                starts_at: weeks_ago(20),
                ends_at: weeks_ago(10).plus_micros(3),
            },
        ];
        let (n, d) = projected_weekly_usage(1200 + 300 + 30, &part, end);
        assert_eq!(n, (100 + 100 + 10) * d);
        // With nobody part-time it is the plain 12-week average.
        assert_eq!(
            projected_weekly_usage(1200, &[], end),
            (100 * 27_720, 27_720)
        );
    }

    fn at(s: &str) -> Instant {
        Instant::parse(s).unwrap()
    }

    #[test]
    fn parses_quarters_months_and_weeks() {
        let q3 = PlanningPeriod::parse("2026-Q3").unwrap();
        assert_eq!(
            (q3.start, q3.end),
            (at("2026-07-01T00:00:00Z"), at("2026-10-01T00:00:00Z"))
        );
        let q4 = PlanningPeriod::parse("2026-Q4").unwrap();
        assert_eq!(q4.end, at("2027-01-01T00:00:00Z"));
        let jul = PlanningPeriod::parse("2026-07").unwrap();
        assert_eq!(jul.end, at("2026-08-01T00:00:00Z"));
        let w27 = PlanningPeriod::parse("2026-W27").unwrap();
        assert_eq!(w27.start, at("2026-06-29T00:00:00Z"));
        for bad in [
            "2026-Q5", "2026-13", "2026-W54", "2025-W53", "26-Q3", "2026-q3", "2026", "2026-7",
            "2026-Q3x", "",
        ] {
            assert!(PlanningPeriod::parse(bad).is_none(), "{bad}");
        }
        assert!(PlanningPeriod::parse("2026-W53").is_some());
    }

    #[test]
    fn weeks_are_clipped_to_the_period() {
        let q3 = PlanningPeriod::parse("2026-Q3").unwrap();
        let w = q3.weeks();
        assert_eq!(w.len(), 14);
        assert_eq!(w[0].start, at("2026-07-01T00:00:00Z"));
        assert_eq!(w[0].end, at("2026-07-06T00:00:00Z"));
        assert_eq!(w[13].end, at("2026-10-01T00:00:00Z"));
        assert!(w.windows(2).all(|p| p[0].end == p[1].start));
    }

    #[test]
    fn the_seed_forecast() {
        let q3 = PlanningPeriod::parse("2026-Q3").unwrap();
        let supply = Timeline::from_steps([(at("2026-01-01T00:00:00Z"), 200_000)]);
        let committed = Timeline::from_steps([(at("2026-01-15T00:00:00Z"), 160_000)]);
        let pending = Timeline::from_steps([(q3.start, 80_000), (q3.end, -80_000)]);
        let f = figures(&supply, 1000, &committed, &pending, q3);
        assert_eq!(
            (f.committed, f.pending, f.available, f.gap),
            (160_000, 80_000, 40_000, 40_000)
        );
        let r = recommendation(&f, "hours_per_week", "2026-Q3");
        assert!(r.contains("cannot meet") && r.contains("40"), "{r}");
    }

    #[test]
    fn commitments_ending_and_reductions_inside_the_period_show_per_week() {
        let q3 = PlanningPeriod::parse("2026-Q3").unwrap();
        let supply = Timeline::from_steps([(at("2026-01-01T00:00:00Z"), 200_000)]);
        // 160 until Aug 1, when a 40 ends; a reduction of 20 on Sep 1.
        let committed = Timeline::from_steps([
            (at("2026-01-15T00:00:00Z"), 160_000),
            (at("2026-08-01T00:00:00Z"), -40_000),
            (at("2026-09-01T00:00:00Z"), -20_000),
        ]);
        let none = Timeline::default();
        let weeks: Vec<i64> = q3
            .weeks()
            .iter()
            .map(|w| figures(&supply, 1000, &committed, &none, *w).committed)
            .collect();
        assert_eq!(weeks[0], 160_000);
        assert_eq!(weeks[4], 160_000); // Jul 27 – Aug 2 still holds 160 before Aug 1
        assert_eq!(weeks[5], 120_000);
        assert_eq!(weeks[13], 100_000);
        let f = figures(&supply, 1000, &committed, &none, q3);
        assert_eq!(f.committed, 160_000);
    }

    #[test]
    fn recommendations_differ_by_case() {
        let f = |c, p, a, cap| Figures {
            committed: c,
            pending: p,
            available: a,
            gap: (p - a).max(0),
            capacity: cap,
            overcommitment: 0,
        };
        assert!(recommendation(&f(190, 5, 10, 200), "u", "P").contains("only just"));
        assert!(recommendation(&f(20, 10, 180, 200), "u", "P").contains("well above"));
        assert!(recommendation(&f(120, 20, 80, 200), "u", "P").contains("comfortably"));
    }

    #[test]
    fn an_overcommitted_window_is_never_described_as_covered() {
        let may = PlanningPeriod::parse("2026-05").unwrap();
        // 200 cut to 50 against 160 committed: 110 over, available 0.
        let supply = Timeline::from_steps([
            (at("2026-01-01T00:00:00Z"), 200_000),
            (at("2026-04-15T06:00:00Z"), -150_000),
        ]);
        let committed = Timeline::from_steps([(at("2026-01-15T00:00:00Z"), 160_000)]);
        let f = figures(&supply, 1000, &committed, &Timeline::default(), may);
        assert_eq!((f.available, f.gap, f.overcommitment), (0, 0, 110_000));
        let r = recommendation(&f, "hours_per_week", "2026-05");
        assert!(
            r.starts_with("The pool is over-committed") && r.contains("110"),
            "{r}"
        );
        assert!(!r.contains("covers"), "{r}");
    }

    proptest::proptest! {
        /// The figures match their definition: the largest commitment over
        /// the window's start and every step instant inside it, with supply
        /// read where that peak is held with least supply.
        #[test]
        fn figures_match_the_definition(
            supply in proptest::collection::vec((0i64..40, -50_000i64..80_000), 1..12),
            committed in proptest::collection::vec((0i64..40, -30_000i64..60_000), 0..40),
            from in 0i64..30, len in 1i64..15, ratio in 500i64..2000,
        ) {
            let h = |x: i64| Instant::from_micros(x * 3_600_000_000);
            let s = Timeline::from_steps(supply.iter().map(|&(t, d)| (h(t), d)));
            let c = Timeline::from_steps(committed.iter().map(|&(t, d)| (h(t), d)));
            let window = PlanningPeriod { start: h(from), end: h(from + len) };
            let f = figures(&s, ratio, &c, &Timeline::default(), window);
            let cap = |t: Instant| (s.value_at(t) as i128 * ratio as i128).div_euclid(1000) as i64;
            let mut points: Vec<Instant> = std::iter::once(window.start)
                .chain(s.steps().iter().chain(c.steps()).map(|x| x.0).filter(|&t| t > window.start && t < window.end))
                .collect();
            points.sort();
            let peak = points.iter().map(|&t| c.value_at(t)).max().unwrap();
            let least = points.iter().filter(|&&t| c.value_at(t) == peak).map(|&t| cap(t)).min().unwrap();
            proptest::prop_assert_eq!((f.committed, f.capacity), (peak, least));
            proptest::prop_assert_eq!(f.available, (least - peak).max(0));
            let over = points.iter().map(|&t| c.value_at(t) - cap(t)).max().unwrap().max(0);
            proptest::prop_assert_eq!(f.overcommitment, over);
        }
    }
}
