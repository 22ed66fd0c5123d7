//! Limits against resource exhaustion (OWASP API4), besides the 1 MiB body
//! limit and the page size cap: a per-token rate limit (429 with
//! `Retry-After`) and a request timeout (503 `timeout`).
//!
//! The rate limit is a token bucket per authenticated token, keyed by the
//! token's id (so every spelling of one `Authorization` header shares it),
//! and one per client address for requests that fail to authenticate
//! (missing, malformed, unknown or revoked tokens), so inventing tokens buys
//! no fresh burst. Both are checked by the guards layer right after it
//! authenticated the request, before any idempotency key or body is read.
//! Requests that carry no credentials outside `/v1` (health checks,
//! anonymous scrapes) are never limited.

use crate::error::ApiError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{Quota, RateLimiter};
use std::net::IpAddr;
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
    /// A connection that has not sent a whole request head within this is
    /// closed (slow-loris).
    pub header_read_timeout: Duration,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            rate_limit_per_second: None,
            rate_limit_burst: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

type Keyed<K> = RateLimiter<K, governor::state::keyed::DefaultKeyedStateStore<K>, DefaultClock>;

/// The shared buckets (or none, when rate limiting is off).
#[derive(Clone)]
pub struct Limiter(Option<Arc<Buckets>>);

struct Buckets {
    tokens: Keyed<String>,
    addresses: Keyed<IpAddr>,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Limiter {
        Limiter(limits.rate_limit_per_second.map(|rate| {
            let quota = Quota::per_second(rate).allow_burst(limits.rate_limit_burst);
            Arc::new(Buckets {
                tokens: RateLimiter::keyed(quota),
                addresses: RateLimiter::keyed(quota),
            })
        }))
    }

    /// The 429 answer when the token `token_id` is over its rate, else `None`.
    pub fn check_token(&self, token_id: &str) -> Option<Response> {
        let buckets = self.0.as_ref()?;
        check(&buckets.tokens, token_id.to_owned(), "this token")
    }

    /// The 429 answer when `addr` has failed to authenticate too often.
    pub fn check_failure(&self, addr: IpAddr) -> Option<Response> {
        let buckets = self.0.as_ref()?;
        check(
            &buckets.addresses,
            addr,
            "this address failing to authenticate",
        )
    }
}

fn check<K: Clone + std::hash::Hash + Eq>(
    buckets: &Keyed<K>,
    key: K,
    whose: &str,
) -> Option<Response> {
    // Buckets gone quiet are dropped now and then, so the map cannot grow
    // without bound under a flood of distinct keys.
    if buckets.len() > 10_000 {
        buckets.retain_recent();
    }
    let not_until = buckets.check_key(&key).err()?;
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests for {whose}; retry in {secs} s"),
    )
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    ::metrics::counter!("capacity_rate_limited_total").increment(1);
    Some(res)
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
