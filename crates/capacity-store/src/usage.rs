//! Metering rules (SPEC §5 "Usage"), decided once: which records of a batch
//! may be stored, and the weekly totals the accepted ones add. A backend
//! reads the allocations the batch names, asks [`judge_usage`], inserts the
//! candidates (the database says which were already there), and adds the
//! [`WeeklyUsage`] of the accepted ones to its rollups.

use crate::{
    MAX_USAGE_PER_WEEK, Result, StoreError, UsageOutcome, UsageRecord, usage_week_overflow,
};
use capacity_domain::Instant;
use capacity_domain::time::MICROS_PER_DAY;
use std::collections::{BTreeMap, HashSet};

/// Usage older than this is refused (SPEC §5).
pub const USAGE_MAX_AGE_DAYS: i64 = 400;

/// An allocation usage is recorded against, as a backend reads it (only
/// those the caller's scope sees).
#[derive(Debug, Clone)]
pub struct UsageTarget {
    pub seq: i64,
    pub pool_seq: i64,
    pub organization_id: String,
    pub closed: bool,
}

/// A batch judged before anything is written.
#[derive(Debug)]
pub struct UsageJudgement<'a> {
    /// Each record's outcome, `None` for a candidate (its outcome is known
    /// once it is inserted: accepted, or a duplicate of a stored record).
    pub outcomes: Vec<Option<UsageOutcome>>,
    /// The records that may be stored: index into the batch, and target.
    pub candidates: Vec<(usize, &'a UsageTarget)>,
}

/// Judges each record on its own: unknown (or not visible) allocation,
/// closed allocation, in the future, older than [`USAGE_MAX_AGE_DAYS`]; a
/// record id seen earlier in the batch (for the same organization) is a
/// duplicate, as the database would say had they been inserted one after
/// the other.
pub fn judge_usage<'a>(
    records: &[UsageRecord],
    target: impl Fn(&str) -> Option<&'a UsageTarget>,
    now: Instant,
) -> UsageJudgement<'a> {
    let oldest = now.plus_micros(-USAGE_MAX_AGE_DAYS * MICROS_PER_DAY);
    let mut outcomes = Vec::with_capacity(records.len());
    let mut candidates = Vec::with_capacity(records.len());
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let outcome = match target(r.allocation_id.as_str()) {
            None => Some(UsageOutcome::Rejected {
                code: "unknown_allocation",
                reason: format!("no allocation {}", r.allocation_id),
            }),
            Some(UsageTarget { closed: true, .. }) => Some(UsageOutcome::Rejected {
                code: "allocation_closed",
                reason: format!("allocation {} is closed", r.allocation_id),
            }),
            Some(_) if r.occurred_at > now => Some(UsageOutcome::Rejected {
                code: "occurred_in_future",
                reason: "occurred_at is in the future".into(),
            }),
            Some(_) if r.occurred_at < oldest => Some(UsageOutcome::Rejected {
                code: "too_old",
                reason: format!("occurred_at is more than {USAGE_MAX_AGE_DAYS} days ago"),
            }),
            Some(t) => {
                if seen.insert((t.organization_id.as_str(), r.id.as_str())) {
                    candidates.push((i, t));
                    None
                } else {
                    Some(UsageOutcome::Duplicate)
                }
            }
        };
        outcomes.push(outcome);
    }
    UsageJudgement {
        outcomes,
        candidates,
    }
}

impl UsageJudgement<'_> {
    /// Every record's outcome, once each candidate has been given one.
    pub fn answer(self) -> Result<Vec<UsageOutcome>> {
        self.outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Internal("a usage record was not judged".into())))
            .collect()
    }
}

/// What a batch's accepted records add to the weekly rollups, per
/// `(allocation seq, week start)` and per `(pool seq, week start)`, in key
/// order (the order PostgreSQL locks the rollup rows in).
#[derive(Debug, Default)]
pub struct WeeklyUsage {
    pub allocations: BTreeMap<(i64, i64), i64>,
    pub pools: BTreeMap<(i64, i64), i64>,
}

impl WeeklyUsage {
    /// Adds an accepted record. A batch holds at most 1000 records of at
    /// most 10^12 units, so its sums fit an `i64`.
    pub fn add(&mut self, target: &UsageTarget, record: &UsageRecord) {
        let week = record.occurred_at.week_start().micros();
        let q = record.quantity.thousandths();
        *self.allocations.entry((target.seq, week)).or_default() += q;
        *self.pools.entry((target.pool_seq, week)).or_default() += q;
    }

    /// Refuses a batch whose own usage of one allocation or pool in one week
    /// exceeds [`MAX_USAGE_PER_WEEK`] (the stores' upserts guard the stored
    /// totals the sums are added to).
    pub fn checked(self) -> Result<WeeklyUsage> {
        let over = self
            .allocations
            .values()
            .chain(self.pools.values())
            .any(|&sum| sum > MAX_USAGE_PER_WEEK);
        if over {
            return Err(usage_week_overflow());
        }
        Ok(self)
    }
}
