//! Supply and commitments as step functions of time (SPEC §4).
//!
//! A [`Timeline`] is a sorted list of `(instant, delta)` steps in thousandths;
//! its value at `t` is the sum of the deltas at or before `t`. A pool's supply
//! is the timeline of its ledger; its commitment is the sum of its
//! allocations' timelines. "Now" figures read the timeline at now and
//! forecasts read it over a period, so they can never disagree, and scheduled
//! changes need no background job.
//!
//! [`check_change`] is the no-overcommit rule. Both storage backends call it
//! inside the write transaction that would make the change.

use crate::quantity::Quantity;
use crate::time::Instant;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    steps: Vec<(Instant, i64)>,
    /// `totals[i]` is the value from `steps[i].0` on: reads are a binary search.
    totals: Vec<i64>,
}

impl Timeline {
    /// Builds a timeline from unordered steps, merging steps at the same instant.
    pub fn from_steps(steps: impl IntoIterator<Item = (Instant, i64)>) -> Timeline {
        let mut steps: Vec<(Instant, i64)> = steps.into_iter().filter(|s| s.1 != 0).collect();
        steps.sort_by_key(|s| s.0);
        let mut merged: Vec<(Instant, i64)> = Vec::with_capacity(steps.len());
        for (at, d) in steps {
            match merged.last_mut() {
                // Saturating, never wrapping: the stores bound every sum they
                // keep (supply, commitments, pending demand) far below i64.
                Some(last) if last.0 == at => last.1 = last.1.saturating_add(d),
                _ => merged.push((at, d)),
            }
        }
        merged.retain(|s| s.1 != 0);
        let totals = merged
            .iter()
            .scan(0i64, |acc, s| {
                *acc = acc.saturating_add(s.1);
                Some(*acc)
            })
            .collect();
        Timeline {
            steps: merged,
            totals,
        }
    }

    pub fn steps(&self) -> &[(Instant, i64)] {
        &self.steps
    }

    /// The value at `t`, in thousandths.
    pub fn value_at(&self, t: Instant) -> i64 {
        match self.steps.partition_point(|s| s.0 <= t) {
            0 => 0,
            i => self.totals[i - 1],
        }
    }

    /// Indices of the steps strictly after `from` and strictly before `to`.
    fn inside(&self, from: Instant, to: Instant) -> std::ops::Range<usize> {
        let lo = self.steps.partition_point(|s| s.0 <= from);
        lo..self.steps.partition_point(|s| s.0 < to).max(lo)
    }

    /// The steps strictly after `from` and strictly before `to`.
    pub fn steps_inside(&self, from: Instant, to: Instant) -> &[(Instant, i64)] {
        &self.steps[self.inside(from, to)]
    }

    /// The largest value over `[from, to)`, in thousandths.
    pub fn peak(&self, from: Instant, to: Instant) -> i64 {
        let at_from = self.value_at(from);
        self.totals[self.inside(from, to)]
            .iter()
            .copied()
            .fold(at_from, i64::max)
    }

    pub fn plus(&self, other: &Timeline) -> Timeline {
        Timeline::from_steps(self.steps.iter().chain(other.steps.iter()).copied())
    }

    pub fn minus(&self, other: &Timeline) -> Timeline {
        Timeline::from_steps(
            self.steps
                .iter()
                .copied()
                .chain(other.steps.iter().map(|&(at, d)| (at, -d))),
        )
    }
}

/// What an allocation commits over time: committed from `starts_at` until
/// `ends_at` (exclusive) or its closing, whichever comes first, following its
/// terms (each effective from its instant).
#[derive(Debug, Clone)]
pub struct CommitmentSchedule<'a> {
    pub starts_at: Instant,
    pub ends_at: Option<Instant>,
    pub closed_at: Option<Instant>,
    /// `(effective_at, committed)`, sorted by `effective_at`; not empty.
    pub terms: &'a [(Instant, Quantity)],
}

impl CommitmentSchedule<'_> {
    fn end(&self) -> Instant {
        match (self.ends_at, self.closed_at) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Instant::END_OF_TIME,
        }
    }

    fn committed_at(&self, t: Instant) -> i64 {
        if t < self.starts_at || t >= self.end() {
            return 0;
        }
        self.terms
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .or(self.terms.first())
            .map_or(0, |(_, q)| q.thousandths())
    }

    /// The schedule as timeline steps.
    pub fn timeline(&self) -> Timeline {
        let end = self.end();
        let mut points = vec![self.starts_at];
        points.extend(
            self.terms
                .iter()
                .map(|t| t.0)
                .filter(|&at| at > self.starts_at && at < end),
        );
        if end < Instant::END_OF_TIME && end > self.starts_at {
            points.push(end);
        }
        let mut prev = 0;
        let mut steps = Vec::with_capacity(points.len());
        for at in points {
            let v = self.committed_at(at);
            steps.push((at, v - prev));
            prev = v;
        }
        Timeline::from_steps(steps)
    }
}

/// The first instant at which a change would overcommit a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overcommit {
    pub at: Instant,
    /// Total commitment at `at` had the change been made, in thousandths.
    pub committed: i64,
    /// Supply × overcommit ratio at `at`, in thousandths (rounded down).
    pub capacity: i64,
    /// How much the change would overcommit by, in thousandths (rounded up).
    pub shortfall: i64,
}

/// The overcommit ratio as thousandths (1.0 = 1000).
pub type RatioThousandths = i64;

/// The no-overcommit rule (SPEC §4): a change to a pool's commitments is
/// allowed unless, at some instant from `now` on where it raises the
/// commitment, the total commitment would exceed supply × ratio.
///
/// Only instants the change raises are judged: a pool left over-committed by a
/// supply reduction still accepts reductions and changes elsewhere in time.
pub fn check_change(
    supply: &Timeline,
    ratio: RatioThousandths,
    before: &Timeline,
    change: &Timeline,
    now: Instant,
) -> Result<(), Overcommit> {
    let mut points: Vec<Instant> = std::iter::once(now)
        .chain(
            [supply, before, change]
                .iter()
                .flat_map(|t| t.steps.iter().map(|s| s.0))
                .filter(|&at| at > now),
        )
        .collect();
    points.sort();
    points.dedup();
    let (mut s, mut b, mut c) = (
        supply.value_at(now),
        before.value_at(now),
        change.value_at(now),
    );
    let (mut si, mut bi, mut ci) = (
        supply.steps.partition_point(|x| x.0 <= now),
        before.steps.partition_point(|x| x.0 <= now),
        change.steps.partition_point(|x| x.0 <= now),
    );
    for t in points {
        advance(&supply.steps, &mut si, &mut s, t);
        advance(&before.steps, &mut bi, &mut b, t);
        advance(&change.steps, &mut ci, &mut c, t);
        let total = (b + c) as i128;
        let limit = s as i128 * ratio as i128; // thousandths × 1000
        if c > 0 && total * 1000 > limit {
            let over = total * 1000 - limit;
            return Err(Overcommit {
                at: t,
                committed: total as i64,
                capacity: limit.div_euclid(1000) as i64,
                shortfall: ((over + 999) / 1000) as i64,
            });
        }
    }
    Ok(())
}

/// The first instant from `now` on where a supply timeline leaves
/// `[0, 10^12]` units, with its value there: supply can be cut to nothing but
/// not below, and never grows past the largest quantity the API accepts.
pub fn supply_out_of_range(supply: &Timeline, now: Instant) -> Option<(Instant, i64)> {
    let max = crate::quantity::MAX_UNITS * 1000;
    std::iter::once(now)
        .chain(supply.steps.iter().map(|s| s.0).filter(|&t| t > now))
        .map(|t| (t, supply.value_at(t)))
        .find(|&(_, v)| !(0..=max).contains(&v))
}

fn advance(steps: &[(Instant, i64)], i: &mut usize, v: &mut i64, t: Instant) {
    while *i < steps.len() && steps[*i].0 <= t {
        *v = v.saturating_add(steps[*i].1);
        *i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(h: i64) -> Instant {
        Instant::from_micros(h * 3_600_000_000)
    }
    fn q(u: i64) -> Quantity {
        Quantity::from_units(u)
    }

    #[test]
    fn schedule_follows_terms_and_ends() {
        let terms = [(t(0), q(40)), (t(10), q(32))];
        let s = CommitmentSchedule {
            starts_at: t(0),
            ends_at: Some(t(20)),
            closed_at: None,
            terms: &terms,
        };
        let tl = s.timeline();
        assert_eq!(tl.value_at(t(5)), 40_000);
        assert_eq!(tl.value_at(t(10)), 32_000);
        assert_eq!(tl.value_at(t(19)), 32_000);
        assert_eq!(tl.value_at(t(20)), 0);
        let closed = CommitmentSchedule {
            closed_at: Some(t(5)),
            ..s
        };
        assert_eq!(closed.timeline().value_at(t(5)), 0);
        assert_eq!(closed.timeline().value_at(t(12)), 0);
    }

    #[test]
    fn refuses_first_instant_that_overcommits() {
        let supply = Timeline::from_steps([(t(0), 200_000), (t(30), -50_000)]);
        let before = Timeline::from_steps([(t(0), 160_000)]);
        let change = Timeline::from_steps([(t(10), 30_000)]);
        let err = check_change(&supply, 1000, &before, &change, t(5)).unwrap_err();
        assert_eq!(err.at, t(30));
        assert_eq!(err.shortfall, 40_000);
        let small = Timeline::from_steps([(t(10), 30_000), (t(30), -30_000)]);
        assert!(check_change(&supply, 1000, &before, &small, t(5)).is_ok());
    }

    #[test]
    fn reductions_pass_on_an_overcommitted_pool() {
        let supply = Timeline::from_steps([(t(0), 100_000)]);
        let before = Timeline::from_steps([(t(0), 150_000)]);
        let cut = Timeline::from_steps([(t(1), -10_000)]);
        assert!(check_change(&supply, 1000, &before, &cut, t(1)).is_ok());
    }

    #[test]
    fn overcommit_ratio_scales_supply() {
        let supply = Timeline::from_steps([(t(0), 100_000)]);
        let before = Timeline::default();
        let change = Timeline::from_steps([(t(0), 150_000)]);
        assert!(check_change(&supply, 1500, &before, &change, t(1)).is_ok());
        assert!(check_change(&supply, 1499, &before, &change, t(1)).is_err());
    }

    #[test]
    fn the_past_is_not_judged() {
        let supply = Timeline::from_steps([(t(0), 10_000), (t(5), 100_000)]);
        let change = Timeline::from_steps([(t(0), 50_000)]); // backfill from t0
        assert!(check_change(&supply, 1000, &Timeline::default(), &change, t(6)).is_ok());
    }

    #[test]
    fn supply_stays_between_zero_and_the_largest_quantity() {
        let s = Timeline::from_steps([(t(0), 10_000), (t(5), -10_000)]);
        assert_eq!(supply_out_of_range(&s, t(1)), None);
        let s = Timeline::from_steps([(t(0), 10_000), (t(5), -10_001)]);
        assert_eq!(supply_out_of_range(&s, t(1)), Some((t(5), -1)));
        let s = Timeline::from_steps([(t(0), 1_000_000_000_000_000), (t(5), 1)]);
        assert_eq!(
            supply_out_of_range(&s, t(1)),
            Some((t(5), 1_000_000_000_000_001))
        );
    }

    proptest! {
        /// Applying only accepted changes, in any order, never leaves an
        /// instant from now on where commitments exceed supply.
        #[test]
        fn accepted_changes_never_overcommit(
            supply_steps in proptest::collection::vec((0i64..50, -20_000i64..60_000), 1..6),
            requests in proptest::collection::vec((0i64..50, 0i64..40, 1i64..30_000), 1..30),
            now in 0i64..20,
        ) {
            let supply = Timeline::from_steps(supply_steps.iter().map(|&(h, d)| (t(h), d)));
            let mut committed = Timeline::default();
            for (start, len, amount) in requests {
                let change = Timeline::from_steps([(t(start), amount), (t(start + len + 1), -amount)]);
                let was_ok_everywhere = (now..60).all(|h| committed.value_at(t(h)) <= supply.value_at(t(h)));
                if check_change(&supply, 1000, &committed, &change, t(now)).is_ok() {
                    committed = committed.plus(&change);
                    if was_ok_everywhere {
                        for h in now..60 {
                            prop_assert!(committed.value_at(t(h)) <= supply.value_at(t(h)));
                        }
                    }
                }
            }
        }

        #[test]
        fn reads_match_the_definition(
            steps in proptest::collection::vec((0i64..40, -50_000i64..50_000), 0..40),
            from in 0i64..45, len in 0i64..20,
        ) {
            let tl = Timeline::from_steps(steps.iter().map(|&(h, d)| (t(h), d)));
            let naive = |x: i64| steps.iter().filter(|s| s.0 <= x).map(|s| s.1).sum::<i64>();
            prop_assert_eq!(tl.value_at(t(from)), naive(from));
            let peak = (from..=from + len).filter(|&h| h == from || h < from + len).map(naive).max().unwrap();
            prop_assert_eq!(tl.peak(t(from), t(from + len)), if len == 0 { naive(from) } else { peak });
        }

        #[test]
        fn refusal_names_a_real_violation(
            base in 0i64..100_000, supply in 0i64..100_000, amount in 1i64..100_000,
        ) {
            let s = Timeline::from_steps([(t(0), supply)]);
            let b = Timeline::from_steps([(t(0), base)]);
            let c = Timeline::from_steps([(t(1), amount)]);
            match check_change(&s, 1000, &b, &c, t(0)) {
                Ok(()) => prop_assert!(base + amount <= supply),
                Err(e) => {
                    prop_assert!(base + amount > supply);
                    prop_assert_eq!(e.at, t(1));
                    prop_assert_eq!(e.shortfall, base + amount - supply);
                }
            }
        }
    }
}
