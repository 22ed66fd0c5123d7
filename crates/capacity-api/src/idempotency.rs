//! `Idempotency-Key` on POST and PATCH (SPEC §7). The first answer to a key
//! is stored per token (by its id, so a revoked token, which no longer
//! authenticates, replays nothing) and replayed to a retry with the same
//! request; the same key with another request is 422, and a retry while the
//! first is still running is 409. Answers a retry should not see (401, 5xx)
//! release the key instead, so the retry runs afresh.
//!
//! A key cannot stay in flight after its request: the request runs on a
//! task of its own that stores its answer even when the client has gone or
//! the request timeout has answered 503 (a retry then replays what really
//! happened); a request still running at twice the timeout is dropped, and a
//! [`Reservation`] released when dropped unfinished (also by a panic).
//! Keys a crashed process left in flight are released by [`purge`], at
//! start-up and every minute, once older than that bound.

use crate::error::ApiError;
use crate::{AppState, MAX_BODY_BYTES};
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use capacity_store::{IdempotencyReservation, StoredResponse};
use sha2::{Digest, Sha256};

const KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";
const KEPT_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::ETAG];

pub async fn layer(
    s: AppState,
    owner: String,
    abandon_after: std::time::Duration,
    req: Request,
    next: Next,
) -> Response {
    let Some(key) = req.headers().get(KEY).cloned() else {
        return next.run(req).await;
    };
    match run(s, owner, key, abandon_after, req, next).await {
        Ok(res) | Err(res) => res,
    }
}

/// A reserved key; released (on a task of its own) if dropped before its
/// answer was stored.
struct Reservation {
    store: std::sync::Arc<dyn capacity_store::Store>,
    owner: String,
    key: String,
    finished: bool,
}

impl Reservation {
    async fn finish(mut self, answer: Option<StoredResponse>) {
        self.finished = true;
        if let Err(e) = self
            .store
            .idempotency_finish(&self.owner, &self.key, answer)
            .await
        {
            tracing::error!(error = %e, "could not store an idempotent answer");
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (store, owner, key) = (
            self.store.clone(),
            std::mem::take(&mut self.owner),
            std::mem::take(&mut self.key),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.idempotency_finish(&owner, &key, None).await {
                    tracing::error!(error = %e, "could not release an idempotency key");
                }
            });
        }
    }
}

async fn run(
    s: AppState,
    owner: String,
    key: HeaderValue,
    abandon_after: std::time::Duration,
    req: Request,
    next: Next,
) -> Result<Response, Response> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::validation(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
            .into_response()
        })?
        .to_owned();
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request bodies are limited to 1 MiB",
        )
        .into_response()
    })?;
    let mut h = Sha256::new();
    h.update(parts.method.as_str().as_bytes());
    h.update([0]);
    h.update(parts.uri.to_string().as_bytes());
    h.update([0]);
    h.update(&bytes);
    let fingerprint: [u8; 32] = h.finalize().into();

    let now = s.clock.now();
    match s
        .store
        .idempotency_reserve(&owner, &key, fingerprint, now)
        .await
    {
        Err(e) => Err(ApiError::from(e).into_response()),
        Ok(IdempotencyReservation::Mismatch) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request; use a new key",
        )
        .into_response()),
        Ok(IdempotencyReservation::InFlight) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .into_response()),
        Ok(IdempotencyReservation::Replay(stored)) => Ok(replay(stored)),
        Ok(IdempotencyReservation::Reserved) => {
            let reservation = Reservation {
                store: s.store.clone(),
                owner,
                key,
                finished: false,
            };
            let req = Request::from_parts(parts, Body::from(bytes));
            // Not cancelled with this request: see the module doc.
            let task = tokio::spawn(async move {
                let res = tokio::time::timeout(abandon_after, next.run(req)).await;
                let Ok(res) = res else {
                    tracing::error!("a request holding an idempotency key was abandoned");
                    return None; // `reservation` is dropped: released
                };
                let (res_parts, res_body) = res.into_parts();
                let body = to_bytes(res_body, usize::MAX).await.unwrap_or_default();
                let status = res_parts.status;
                let keep = !(status == StatusCode::UNAUTHORIZED || status.is_server_error());
                let stored = keep.then(|| StoredResponse {
                    status: status.as_u16(),
                    headers: KEPT_HEADERS
                        .iter()
                        .filter_map(|n| {
                            let v = res_parts.headers.get(n)?.to_str().ok()?;
                            Some((n.as_str().to_owned(), v.to_owned()))
                        })
                        .collect(),
                    body: body.to_vec(),
                });
                reservation.finish(stored).await;
                Some(Response::from_parts(res_parts, Body::from(body)))
            });
            match task.await {
                Ok(Some(res)) => Ok(res),
                Ok(None) => Err(ApiError::internal().into_response()),
                // A panic: the reservation was released as the task unwound.
                Err(e) => {
                    tracing::error!(error = %e, "a request holding an idempotency key failed");
                    Err(ApiError::internal().into_response())
                }
            }
        }
    }
}

/// Deletes expired keys and releases reservations older than
/// `abandon_after` (plus a minute for clocks of several processes that
/// differ a little): no request of any process can still hold them. In
/// batches, until none is left.
pub async fn purge(s: &AppState, abandon_after: std::time::Duration) {
    let now = s.clock.now();
    let expired_before = now.plus_micros(-capacity_store::IDEMPOTENCY_TTL_MICROS);
    let margin = abandon_after.saturating_add(std::time::Duration::from_secs(60));
    let in_flight_before = now.plus_micros(-(margin.as_micros().min(i64::MAX as u128) as i64));
    loop {
        match s
            .store
            .idempotency_purge(expired_before, in_flight_before)
            .await
        {
            Ok(n) if n >= capacity_store::IDEMPOTENCY_PURGE_BATCH => continue,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not purge idempotency keys");
                return;
            }
        }
    }
}

/// [`purge`], every minute, for as long as the server runs.
pub async fn purge_every_minute(s: AppState, abandon_after: std::time::Duration) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is now: serve_with just purged
    loop {
        every.tick().await;
        purge(&s, abandon_after).await;
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut res = Response::new(Body::from(stored.body));
    *res.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    for (name, value) in stored.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
            res.headers_mut().insert(n, v);
        }
    }
    res.headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    res
}
