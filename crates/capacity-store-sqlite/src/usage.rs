//! Metered usage. A batch is one transaction; each record is judged on its
//! own ([`capacity_store::judge_usage`]) and a bad one never loses the good
//! ones. Accepted records also roll up into weekly totals per allocation
//! and per pool in the same write.

use crate::allocations;
use crate::sql::DbResult;
use capacity_domain::Instant;
use capacity_store::{Scope, StoreError, UsageOutcome, UsageRecord, UsageTarget, WeeklyUsage};
use rusqlite::{Connection, params};
use std::collections::HashMap;

pub fn record(
    conn: &Connection,
    scope: &Scope,
    records: &[UsageRecord],
    now: Instant,
) -> Result<Vec<UsageOutcome>, StoreError> {
    // None when the allocation is unknown or not visible to the scope.
    let mut targets: HashMap<&str, Option<UsageTarget>> = HashMap::new();
    for r in records {
        let key = r.allocation_id.as_str();
        if !targets.contains_key(key) {
            targets.insert(
                key,
                allocations::usage_target(conn, scope, &r.allocation_id)?,
            );
        }
    }
    let mut judged =
        capacity_store::judge_usage(records, |id| targets.get(id).and_then(Option::as_ref), now);
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO usage_records (organization_id, record_id, allocation_seq, quantity, occurred_at, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )
        .db()?;
    // Insert in the order of the allocation index, so that consecutive
    // inserts land on neighbouring pages. The keys are distinct, so the
    // order changes no outcome.
    let mut candidates = std::mem::take(&mut judged.candidates);
    candidates.sort_unstable_by_key(|&(i, t)| (t.seq, records[i].occurred_at, i));
    let mut weekly = WeeklyUsage::default();
    for (i, t) in candidates {
        let r = &records[i];
        let n = insert
            .execute(params![
                t.organization_id,
                r.id,
                t.seq,
                r.quantity.thousandths(),
                r.occurred_at.micros(),
                now.micros()
            ])
            .db()?;
        judged.outcomes[i] = Some(if n == 1 {
            weekly.add(t, r);
            UsageOutcome::Accepted
        } else {
            UsageOutcome::Duplicate
        });
    }
    // Each total grows only while it stays within the weekly bound (the
    // upsert's guard); one that would not refuses the whole batch, whose
    // writes the writer then rolls back.
    let weekly = weekly.checked()?;
    let max = capacity_store::MAX_USAGE_PER_WEEK;
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO usage_weeks (allocation_seq, week_start, quantity) VALUES (?1, ?2, ?3) \
             ON CONFLICT (allocation_seq, week_start) DO UPDATE SET quantity = quantity + excluded.quantity \
             WHERE quantity <= ?4 - excluded.quantity",
        )
        .db()?;
    for (&(alloc, week), &q) in &weekly.allocations {
        if upsert.execute(params![alloc, week, q, max]).db()? == 0 {
            return Err(capacity_store::usage_week_overflow());
        }
    }
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO pool_usage_weeks (pool_seq, week_start, quantity) VALUES (?1, ?2, ?3) \
             ON CONFLICT (pool_seq, week_start) DO UPDATE SET quantity = quantity + excluded.quantity \
             WHERE quantity <= ?4 - excluded.quantity",
        )
        .db()?;
    for (&(pool, week), &q) in &weekly.pools {
        if upsert.execute(params![pool, week, q, max]).db()? == 0 {
            return Err(capacity_store::usage_week_overflow());
        }
    }
    judged.answer()
}
