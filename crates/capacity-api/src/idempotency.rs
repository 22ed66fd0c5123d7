//! `Idempotency-Key` on POST and PATCH (SPEC §7). The first answer to a key
//! is stored per token and replayed to a retry with the same request; the
//! same key with another request is 422, and a retry while the first is
//! still running is 409. Answers a retry should not see (401, 5xx) release
//! the key instead, so the retry runs afresh.

use crate::error::ApiError;
use crate::{AppState, MAX_BODY_BYTES};
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use capacity_store::{IdempotencyReservation, StoredResponse};
use sha2::{Digest, Sha256};

const KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";
const KEPT_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::ETAG];

pub async fn layer(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !(req.method() == Method::POST || req.method() == Method::PATCH) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(KEY).cloned() else {
        return next.run(req).await;
    };
    let Some(auth) = req.headers().get(header::AUTHORIZATION).cloned() else {
        return next.run(req).await; // answered 401 by the handler; nothing to keep
    };
    match run(s, key, auth, req, next).await {
        Ok(res) | Err(res) => res,
    }
}

async fn run(
    s: AppState,
    key: HeaderValue,
    auth: HeaderValue,
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
    let owner = hex::encode(Sha256::digest(auth.as_bytes()));
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
            let res = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
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
            if let Err(e) = s.store.idempotency_finish(&owner, &key, stored).await {
                tracing::error!(error = %e, "could not store an idempotent answer");
            }
            Ok(Response::from_parts(res_parts, Body::from(body)))
        }
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
