//! Limits against resource exhaustion (OWASP API4), besides the 1 MiB body
//! limit and the page size cap: a per-token rate limit (429 with
//! `Retry-After`) and a request timeout (503 `timeout`).
//!
//! The rate limit is a token bucket per bearer token, keyed by a hash of the
//! `Authorization` value so the secret is never kept; requests without one
//! share a bucket. It is checked before authentication, so a flood of bad
//! tokens costs no database reads. It guards `/v1` only: health checks and
//! scrapes are never limited.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Operational limits of the HTTP service.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sustained requests per second allowed per token; `None` = no limit.
    pub rate_limit_per_second: Option<NonZeroU32>,
    /// Requests a token may send at once above the sustained rate.
    pub rate_limit_burst: NonZeroU32,
    /// A request still running after this is answered 503 `timeout`.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            rate_limit_per_second: None,
            rate_limit_burst: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
            request_timeout: Duration::from_secs(30),
        }
    }
}

type Keyed =
    RateLimiter<[u8; 32], governor::state::keyed::DefaultKeyedStateStore<[u8; 32]>, DefaultClock>;

/// The shared per-token buckets (or none, when rate limiting is off).
#[derive(Clone)]
pub struct Limiter(Option<Arc<Keyed>>);

impl Limiter {
    pub fn new(limits: &Limits) -> Limiter {
        Limiter(limits.rate_limit_per_second.map(|rate| {
            let quota = Quota::per_second(rate).allow_burst(limits.rate_limit_burst);
            Arc::new(RateLimiter::keyed(quota))
        }))
    }
}

impl Limiter {
    /// The 429 answer when `req` exceeds its token's rate, else `None`.
    pub fn check(&self, req: &Request) -> Option<Response> {
        let buckets = self.0.as_ref()?;
        if !req.uri().path().starts_with("/v1/") {
            return None;
        }
        let key: [u8; 32] = Sha256::digest(
            req.headers()
                .get(header::AUTHORIZATION)
                .map_or(&b""[..], |v| v.as_bytes()),
        )
        .into();
        // Buckets of tokens gone quiet are dropped now and then, so the map
        // cannot grow without bound under a flood of distinct bad tokens.
        if buckets.len() > 10_000 {
            buckets.retain_recent();
        }
        let not_until = buckets.check_key(&key).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut res = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for this token; retry in {secs} s"),
        )
        .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        ::metrics::counter!("capacity_rate_limited_total").increment(1);
        Some(res)
    }
}

/// `answer`, or 503 `timeout` if it takes longer than `limit`.
pub async fn timeout(limit: Duration, answer: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout(limit, answer).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request did not finish within {} ms; it may or may not have been applied, so retry with the same Idempotency-Key",
                    limit.as_millis()
                ),
            )
            .into_response()
        }
    }
}
