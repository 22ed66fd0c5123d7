//! Idempotency keys: the first answer to a key is kept for 24 hours and
//! replayed to retries of the same request.

use crate::sql::DbResult;
use capacity_domain::Instant;
use capacity_store::{
    IDEMPOTENCY_PURGE_BATCH, IDEMPOTENCY_TTL_MICROS, IdempotencyReservation, StoreError,
    StoredResponse,
};
use rusqlite::{Connection, OptionalExtension, params};

/// A stored key: request fingerprint, answer status and body (none while in flight).
type KeyRow = (Vec<u8>, Option<i64>, Option<Vec<u8>>);

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
    let found: Option<KeyRow> = conn
        .prepare_cached("SELECT request_hash, status, body FROM idempotency_keys WHERE token_id = ?1 AND key = ?2")
        .db()?
        .query_row(params![owner, key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .db()?;
    Ok(match found {
        None => {
            conn.prepare_cached("INSERT INTO idempotency_keys (token_id, key, request_hash, created_at) VALUES (?1, ?2, ?3, ?4)")
                .db()?
                .execute(params![owner, key, &fingerprint[..], now.micros()])
                .db()?;
            IdempotencyReservation::Reserved
        }
        Some((hash, _, _)) if hash != fingerprint => IdempotencyReservation::Mismatch,
        Some((_, None, _)) => IdempotencyReservation::InFlight,
        Some((_, Some(status), body)) => {
            let stored: serde_json::Value = body
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(serde_json::Value::Null);
            IdempotencyReservation::Replay(decode(status, &stored))
        }
    })
}

fn decode(status: i64, v: &serde_json::Value) -> StoredResponse {
    let headers = v["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| Some((h[0].as_str()?.to_owned(), h[1].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let body = v["body"]
        .as_str()
        .map(|b| b.as_bytes().to_vec())
        .unwrap_or_default();
    StoredResponse {
        status: status as u16,
        headers,
        body,
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
            let stored = serde_json::json!({
                "headers": r.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
                "body": String::from_utf8_lossy(&r.body),
            });
            conn.prepare_cached("UPDATE idempotency_keys SET status = ?1, body = ?2 WHERE token_id = ?3 AND key = ?4")
                .db()?
                .execute(params![r.status as i64, stored.to_string().into_bytes(), owner, key])
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
