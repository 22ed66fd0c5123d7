//! Idempotency keys: the first answer to a key is kept for 24 hours and
//! replayed to retries of the same request.

use crate::sql::DbResult;
use capacity_domain::Instant;
use capacity_store::{
    IDEMPOTENCY_PURGE_BATCH, IDEMPOTENCY_TTL_MICROS, IdempotencyReservation, StoreError, StoredKey,
    StoredResponse,
};
use rusqlite::{Connection, OptionalExtension, params};

pub fn reserve(
    conn: &Connection,
    owner: &str,
    key: &str,
    fingerprint: [u8; 32],
    now: Instant,
) -> Result<IdempotencyReservation, StoreError> {
    let expired = now.micros() - IDEMPOTENCY_TTL_MICROS;
    conn.prepare_cached(
        "DELETE FROM idempotency_keys WHERE token_id = ?1 AND key = ?2 AND created_at < ?3",
    )
    .db()?
    .execute(params![owner, key, expired])
    .db()?;
    let found: Option<StoredKey> = conn
        .prepare_cached("SELECT request_hash, status, body FROM idempotency_keys WHERE token_id = ?1 AND key = ?2")
        .db()?
        .query_row(params![owner, key], |r| {
            Ok(StoredKey {
                fingerprint: r.get(0)?,
                status: r.get(1)?,
                body: r.get(2)?,
            })
        })
        .optional()
        .db()?;
    match found {
        Some(found) => IdempotencyReservation::of_stored(found, fingerprint),
        None => {
            conn.prepare_cached("INSERT INTO idempotency_keys (token_id, key, request_hash, created_at) VALUES (?1, ?2, ?3, ?4)")
                .db()?
                .execute(params![owner, key, &fingerprint[..], now.micros()])
                .db()?;
            Ok(IdempotencyReservation::Reserved)
        }
    }
}

pub fn finish(
    conn: &Connection,
    owner: &str,
    key: &str,
    response: Option<StoredResponse>,
) -> Result<(), StoreError> {
    match response {
        None => {
            conn.prepare_cached(
                "DELETE FROM idempotency_keys WHERE token_id = ?1 AND key = ?2 AND status IS NULL",
            )
            .db()?
            .execute(params![owner, key])
            .db()?;
        }
        Some(r) => {
            conn.prepare_cached("UPDATE idempotency_keys SET status = ?1, body = ?2 WHERE token_id = ?3 AND key = ?4")
                .db()?
                .execute(params![r.status as i64, r.encode(), owner, key])
                .db()?;
        }
    }
    Ok(())
}

/// Expired keys, then abandoned reservations, oldest first, each by its
/// index on `created_at` (migration 0013).
pub fn purge(
    conn: &Connection,
    expired_before: Instant,
    in_flight_before: Instant,
) -> Result<u64, StoreError> {
    let limit = IDEMPOTENCY_PURGE_BATCH as i64;
    let expired = conn
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys \
             WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)",
        )
        .db()?
        .execute(params![expired_before.micros(), limit])
        .db()?;
    let abandoned = conn
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys \
             WHERE status IS NULL AND created_at < ?1 ORDER BY created_at LIMIT ?2)",
        )
        .db()?
        .execute(params![in_flight_before.micros(), limit])
        .db()?;
    Ok((expired + abandoned) as u64)
}
