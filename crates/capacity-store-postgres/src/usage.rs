//! Metered usage. A batch is one transaction; each record is judged on its
//! own and a bad one never loses the good ones. Accepted records also roll
//! up into weekly totals per allocation and per pool in the same
//! transaction.
//!
//! The same decisions as SQLite's record-by-record loop, in a fixed number
//! of round trips whatever the batch size: one query finds every allocation
//! the batch names, one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING`
//! stores the records that passed the checks (the rows it returns are the
//! accepted ones, the others were already there), and two multi-row upserts
//! add them to the weekly rollups.

use crate::allocations;
use crate::sql::{Db, DbResult};
use capacity_domain::Instant;
use capacity_store::{Scope, StoreError, UsageOutcome, UsageRecord, UsageTarget, WeeklyUsage};
use std::collections::{BTreeMap, HashMap, HashSet};

pub async fn record(
    db: &Db<'_>,
    scope: &Scope,
    records: Vec<UsageRecord>,
    now: Instant,
) -> Result<Vec<UsageOutcome>, StoreError> {
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| r.allocation_id.as_str().to_owned())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // Absent when the allocation is unknown or not visible to the scope.
    let targets: HashMap<String, UsageTarget> = allocations::usage_targets(db, scope, ids).await?;
    let mut judged = capacity_store::judge_usage(&records, |id| targets.get(id), now);
    let mut candidates = std::mem::take(&mut judged.candidates);

    if !candidates.is_empty() {
        // Inserted in key order, so two batches sharing record ids wait for
        // each other in the same order instead of deadlocking.
        candidates.sort_by(|a, b| {
            (a.1.organization_id.as_str(), records[a.0].id.as_str())
                .cmp(&(b.1.organization_id.as_str(), records[b.0].id.as_str()))
        });
        let orgs: Vec<&str> = candidates
            .iter()
            .map(|c| c.1.organization_id.as_str())
            .collect();
        let record_ids: Vec<&str> = candidates
            .iter()
            .map(|c| records[c.0].id.as_str())
            .collect();
        let seqs: Vec<i64> = candidates.iter().map(|c| c.1.seq).collect();
        let quantities: Vec<i64> = candidates
            .iter()
            .map(|c| records[c.0].quantity.thousandths())
            .collect();
        let occurred: Vec<i64> = candidates
            .iter()
            .map(|c| records[c.0].occurred_at.micros())
            .collect();
        // ON CONFLICT DO NOTHING also settles a race with another
        // transaction sending the same record id: the second waits for the
        // first to commit and then counts it a duplicate.
        let inserted: HashSet<(String, String)> = db
            .query(
                "INSERT INTO usage_records (organization_id, record_id, allocation_seq, quantity, occurred_at, received_at) \
                 SELECT u.o, u.r, u.s, u.q, u.t, $6 \
                 FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[]) \
                 WITH ORDINALITY AS u(o, r, s, q, t, n) ORDER BY u.n \
                 ON CONFLICT DO NOTHING RETURNING organization_id, record_id",
                &[&orgs, &record_ids, &seqs, &quantities, &occurred, &now.micros()],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .db()?;

        // Weekly rollups of what was accepted, summed here so each key is
        // upserted once, in key order.
        let mut weekly = WeeklyUsage::default();
        for &(i, t) in &candidates {
            let r = &records[i];
            let accepted = inserted.contains(&(t.organization_id.clone(), r.id.clone()));
            judged.outcomes[i] = Some(if accepted {
                weekly.add(t, r);
                UsageOutcome::Accepted
            } else {
                UsageOutcome::Duplicate
            });
        }
        let weekly = weekly.checked()?;
        if !weekly.allocations.is_empty() {
            let columns = |m: &BTreeMap<(i64, i64), i64>| {
                let keys: Vec<i64> = m.keys().map(|k| k.0).collect();
                let weeks: Vec<i64> = m.keys().map(|k| k.1).collect();
                let sums: Vec<i64> = m.values().copied().collect();
                (keys, weeks, sums)
            };
            let (a_keys, a_weeks, a_sums) = columns(&weekly.allocations);
            let (p_keys, p_weeks, p_sums) = columns(&weekly.pools);
            // Each total grows only while it stays within the weekly bound
            // (the upsert's guard); a row left alone refuses the whole
            // batch, and the transaction rolls back.
            let max = capacity_store::MAX_USAGE_PER_WEEK;
            // Rollup rows are locked in one order in every transaction (per
            // allocation, then per pool, each in key order): two batches
            // touching the same weeks queue instead of deadlocking.
            let written = db
                .execute(
                    "INSERT INTO usage_weeks (allocation_seq, week_start, quantity) \
                     SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[]) \
                     ON CONFLICT (allocation_seq, week_start) \
                     DO UPDATE SET quantity = usage_weeks.quantity + excluded.quantity \
                     WHERE usage_weeks.quantity <= $4 - excluded.quantity",
                    &[&a_keys, &a_weeks, &a_sums, &max],
                )
                .await?;
            if written != a_keys.len() as u64 {
                return Err(capacity_store::usage_week_overflow());
            }
            let written = db
                .execute(
                    "INSERT INTO pool_usage_weeks (pool_seq, week_start, quantity) \
                     SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[]) \
                     ON CONFLICT (pool_seq, week_start) \
                     DO UPDATE SET quantity = pool_usage_weeks.quantity + excluded.quantity \
                     WHERE pool_usage_weeks.quantity <= $4 - excluded.quantity",
                    &[&p_keys, &p_weeks, &p_sums, &max],
                )
                .await?;
            if written != p_keys.len() as u64 {
                return Err(capacity_store::usage_week_overflow());
            }
        }
    }
    judged.answer()
}
