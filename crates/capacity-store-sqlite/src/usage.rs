//! Metered usage. A batch is one transaction; each record is judged on its
//! own and a bad one never loses the good ones. Accepted records also roll
//! up into weekly totals per allocation and per pool in the same write.

use crate::allocations::{self, Target};
use crate::sql::DbResult;
use capacity_domain::Instant;
use capacity_domain::time::MICROS_PER_DAY;
use capacity_store::{Scope, StoreError, UsageOutcome, UsageRecord};
use rusqlite::{Connection, params};
use std::collections::{HashMap, HashSet};

/// Usage older than this is refused (SPEC §5).
pub const MAX_AGE_DAYS: i64 = 400;

pub fn record(
    conn: &Connection,
    scope: &Scope,
    records: &[UsageRecord],
    now: Instant,
) -> Result<Vec<UsageOutcome>, StoreError> {
    let oldest = now.plus_micros(-MAX_AGE_DAYS * MICROS_PER_DAY);
    // None when the allocation is unknown or not visible to the scope.
    let mut cache: HashMap<&str, Option<Target>> = HashMap::new();
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO usage_records (organization_id, record_id, allocation_seq, quantity, occurred_at, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )
        .db()?;
    let mut weekly = conn
        .prepare_cached(
            "INSERT INTO usage_weeks (allocation_seq, week_start, quantity) VALUES (?1, ?2, ?3) \
             ON CONFLICT (allocation_seq, week_start) DO UPDATE SET quantity = quantity + excluded.quantity \
             WHERE quantity <= ?4 - excluded.quantity",
        )
        .db()?;
    let mut pool_weekly = conn
        .prepare_cached(
            "INSERT INTO pool_usage_weeks (pool_seq, week_start, quantity) VALUES (?1, ?2, ?3) \
             ON CONFLICT (pool_seq, week_start) DO UPDATE SET quantity = quantity + excluded.quantity \
             WHERE quantity <= ?4 - excluded.quantity",
        )
        .db()?;
    // Judge every record first. A record id seen earlier in the batch (for
    // the same organization) is a duplicate, as the database would say had
    // they been inserted one after the other.
    let mut out: Vec<Option<UsageOutcome>> = Vec::with_capacity(records.len());
    let mut candidates: Vec<(usize, &Target)> = Vec::with_capacity(records.len());
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(records.len());
    for r in records {
        let key = r.allocation_id.as_str();
        if !cache.contains_key(key) {
            let found = allocations::usage_target(conn, scope, &r.allocation_id)?;
            cache.insert(key, found);
        }
    }
    for (i, r) in records.iter().enumerate() {
        let outcome = match &cache[r.allocation_id.as_str()] {
            None => Some(UsageOutcome::Rejected {
                code: "unknown_allocation",
                reason: format!("no allocation {}", r.allocation_id),
            }),
            Some(Target { closed: true, .. }) => Some(UsageOutcome::Rejected {
                code: "allocation_closed",
                reason: format!("allocation {} is closed", r.allocation_id),
            }),
            Some(_) if r.occurred_at > now => Some(UsageOutcome::Rejected {
                code: "occurred_in_future",
                reason: "occurred_at is in the future".into(),
            }),
            Some(_) if r.occurred_at < oldest => Some(UsageOutcome::Rejected {
                code: "too_old",
                reason: format!("occurred_at is more than {MAX_AGE_DAYS} days ago"),
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
        out.push(outcome);
    }
    // Insert in the order of the allocation index, so that consecutive
    // inserts land on neighbouring pages. The keys are distinct, so the
    // order changes no outcome.
    candidates.sort_unstable_by_key(|&(i, t)| (t.seq, records[i].occurred_at, i));
    // Weekly rollups are summed here and written once per (allocation, week).
    let mut weeks: HashMap<(i64, i64, i64), i64> = HashMap::new();
    for (i, t) in candidates {
        let r = &records[i];
        let q = r.quantity.thousandths();
        let n = insert
            .execute(params![
                t.organization_id,
                r.id,
                t.seq,
                q,
                r.occurred_at.micros(),
                now.micros()
            ])
            .db()?;
        out[i] = Some(if n == 1 {
            *weeks
                .entry((t.seq, t.pool_seq, r.occurred_at.week_start().micros()))
                .or_default() += q;
            UsageOutcome::Accepted
        } else {
            UsageOutcome::Duplicate
        });
    }
    // Each total grows only while it stays within the weekly bound (the
    // upsert's guard); one that would not refuses the whole batch, whose
    // writes the writer then rolls back.
    let max = capacity_store::MAX_USAGE_PER_WEEK;
    let mut pool_weeks: HashMap<(i64, i64), i64> = HashMap::new();
    for ((alloc, pool, week), q) in weeks {
        capacity_store::check_usage_week(q)?;
        if weekly.execute(params![alloc, week, q, max]).db()? == 0 {
            return Err(capacity_store::usage_week_overflow());
        }
        *pool_weeks.entry((pool, week)).or_default() += q;
    }
    for ((pool, week), q) in pool_weeks {
        capacity_store::check_usage_week(q)?;
        if pool_weekly.execute(params![pool, week, q, max]).db()? == 0 {
            return Err(capacity_store::usage_week_overflow());
        }
    }
    out.into_iter()
        .map(|o| o.ok_or_else(|| StoreError::Internal("a usage record was not judged".into())))
        .collect()
}
