//! Idempotency keys: the first answer to a key is kept for 24 hours and
//! replayed to retries of the same request.
//!
//! Reserving is race-safe across processes: the key is inserted with
//! `ON CONFLICT DO NOTHING` first and read only when it was already there.
//! Two requests with one new key at once: one inserts it (Reserved), the
//! other's insert waits for that transaction to commit, does nothing, and
//! reads the key in flight (409) — never two Reserved.

use crate::sql::{Db, DbResult};
use capacity_domain::Instant;
use capacity_store::{
    IDEMPOTENCY_PURGE_BATCH, IDEMPOTENCY_TTL_MICROS, IdempotencyReservation, StoreError, StoredKey,
    StoredResponse,
};

/// How often a key that vanished between the insert and the read (released
/// or expired by another process just then) is tried again.
const ATTEMPTS: usize = 3;

pub async fn reserve(
    db: &Db<'_>,
    owner: &str,
    key: &str,
    fingerprint: [u8; 32],
    now: Instant,
) -> Result<IdempotencyReservation, StoreError> {
    let expired = now.micros() - IDEMPOTENCY_TTL_MICROS;
    db.execute(
        "DELETE FROM idempotency_keys WHERE token_id = $1 AND key = $2 AND created_at < $3",
        &[&owner, &key, &expired],
    )
    .await?;
    for _ in 0..ATTEMPTS {
        let inserted = db
            .execute(
                "INSERT INTO idempotency_keys (token_id, key, request_hash, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&owner, &key, &&fingerprint[..], &now.micros()],
            )
            .await?;
        if inserted == 1 {
            return Ok(IdempotencyReservation::Reserved);
        }
        let found: Option<StoredKey> = db
            .query_opt(
                "SELECT request_hash, status, body FROM idempotency_keys WHERE token_id = $1 AND key = $2",
                &[&owner, &key],
            )
            .await?
            .map(|r| -> Result<StoredKey, tokio_postgres::Error> {
                Ok(StoredKey {
                    fingerprint: r.try_get(0)?,
                    status: r.try_get(1)?,
                    body: r.try_get(2)?,
                })
            })
            .transpose()
            .db()?;
        // Released between our insert and this read: try to take it again.
        let Some(found) = found else {
            continue;
        };
        return IdempotencyReservation::of_stored(found, fingerprint);
    }
    Err(StoreError::Unavailable(format!(
        "idempotency key {key:?} kept changing; retry"
    )))
}

pub async fn finish(
    db: &Db<'_>,
    owner: &str,
    key: &str,
    response: Option<StoredResponse>,
) -> Result<(), StoreError> {
    match response {
        None => {
            db.execute(
                "DELETE FROM idempotency_keys WHERE token_id = $1 AND key = $2 AND status IS NULL",
                &[&owner, &key],
            )
            .await?;
        }
        Some(r) => {
            db.execute(
                "UPDATE idempotency_keys SET status = $1, body = $2 WHERE token_id = $3 AND key = $4",
                &[&(r.status as i64), &r.encode(), &owner, &key],
            )
            .await?;
        }
    }
    Ok(())
}

/// Expired keys, then abandoned reservations, oldest first, each by its
/// index on `created_at` (migration 0013). Safe beside other processes: a
/// reservation is older than `in_flight_before` only when no process can
/// still be running its request (the caller's bound, see the API's guards).
pub async fn purge(
    db: &Db<'_>,
    expired_before: Instant,
    in_flight_before: Instant,
) -> Result<u64, StoreError> {
    let limit = IDEMPOTENCY_PURGE_BATCH as i64;
    let expired = db
        .execute(
            "DELETE FROM idempotency_keys WHERE (token_id, key) IN (SELECT token_id, key \
             FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
            &[&expired_before.micros(), &limit],
        )
        .await?;
    let abandoned = db
        .execute(
            "DELETE FROM idempotency_keys WHERE (token_id, key) IN (SELECT token_id, key \
             FROM idempotency_keys WHERE status IS NULL AND created_at < $1 \
             ORDER BY created_at LIMIT $2)",
            &[&in_flight_before.micros(), &limit],
        )
        .await?;
    Ok(expired + abandoned)
}
