//! Metered usage. A batch is one transaction; each record is judged on its
//! own and a bad one never loses the good ones.

use crate::allocations;
use crate::sql::Db;
use capacity_domain::Instant;
use capacity_domain::model::AllocationStatus;
use capacity_domain::time::MICROS_PER_DAY;
use capacity_store::{Scope, StoreError, UsageOutcome, UsageRecord};
use std::collections::HashMap;

/// Usage older than this is refused (SPEC §5).
pub const MAX_AGE_DAYS: i64 = 400;

pub async fn record(
    db: &Db<'_>,
    scope: &Scope,
    records: Vec<UsageRecord>,
    now: Instant,
) -> Result<Vec<UsageOutcome>, StoreError> {
    let oldest = now.plus_micros(-MAX_AGE_DAYS * MICROS_PER_DAY);
    // allocation id → (seq, organization, closed?) or None when unknown / not visible
    let mut cache: HashMap<String, Option<(i64, String, bool)>> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let key = r.allocation_id.as_str().to_owned();
        if !cache.contains_key(&key) {
            let found = match allocations::load(db, scope, &r.allocation_id, now).await {
                Ok((seq, a)) => Some((
                    seq,
                    a.organization_id.as_str().to_owned(),
                    a.status == AllocationStatus::Closed,
                )),
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e),
            };
            cache.insert(key.clone(), found);
        }
        let outcome = match &cache[&key] {
            None => UsageOutcome::Rejected {
                code: "unknown_allocation",
                reason: format!("no allocation {}", r.allocation_id),
            },
            Some((_, _, true)) => UsageOutcome::Rejected {
                code: "allocation_closed",
                reason: format!("allocation {} is closed", r.allocation_id),
            },
            Some(_) if r.occurred_at > now => UsageOutcome::Rejected {
                code: "occurred_in_future",
                reason: "occurred_at is in the future".into(),
            },
            Some(_) if r.occurred_at < oldest => UsageOutcome::Rejected {
                code: "too_old",
                reason: format!("occurred_at is more than {MAX_AGE_DAYS} days ago"),
            },
            Some((seq, org, _)) => {
                // ON CONFLICT DO NOTHING also settles a race with another
                // transaction sending the same record id: the second waits
                // for the first to commit and then counts it a duplicate.
                let n = db
                    .execute(
                        "INSERT INTO usage_records (organization_id, record_id, allocation_seq, quantity, occurred_at, received_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        &[
                            org,
                            &r.id,
                            seq,
                            &r.quantity.thousandths(),
                            &r.occurred_at.micros(),
                            &now.micros(),
                        ],
                    )
                    .await?;
                if n == 1 {
                    UsageOutcome::Accepted
                } else {
                    UsageOutcome::Duplicate
                }
            }
        };
        out.push(outcome);
    }
    Ok(out)
}
