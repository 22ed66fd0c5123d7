//! Bearer-token authentication. Tokens are random secrets shown once; only
//! their SHA-256 is stored and looked up. The extractor turns the header into
//! the caller's [`Principal`], which is the tenant scope of every store call.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use capacity_store::{Access, Principal};
use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "cap_";

/// Mints a new secret: 256 random bits, URL-safe.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Why a request is not authenticated (what the 401 says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    /// No `Authorization` header.
    Missing,
    /// A header that names no live token.
    Invalid,
}

impl Unauthenticated {
    pub fn error(self) -> ApiError {
        match self {
            Unauthenticated::Missing => {
                ApiError::unauthorized("an Authorization: Bearer token is required", "Bearer")
            }
            Unauthenticated::Invalid => ApiError::unauthorized(
                "the bearer token is not valid",
                "Bearer error=\"invalid_token\"",
            ),
        }
    }
}

/// The one authentication of a request, made by the guards layer before
/// any rate limit, idempotency key or body is looked at. `Err(Ok(_))`: the
/// caller did not authenticate; `Err(Err(_))`: the store could not say.
pub async fn authenticate(
    headers: &axum::http::HeaderMap,
    state: &AppState,
) -> Result<Principal, Result<Unauthenticated, ApiError>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Ok(Unauthenticated::Missing));
    };
    let invalid = Err(Ok(Unauthenticated::Invalid));
    let Ok(value) = value.to_str() else {
        return invalid;
    };
    let Some((scheme, secret)) = value.trim().split_once(' ') else {
        return invalid;
    };
    let secret = secret.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || !secret.starts_with(TOKEN_PREFIX)
        || secret.len() > 200
    {
        return invalid;
    }
    let hash = hash_secret(secret);
    if let Some(p) = state.tokens.get(&hash) {
        return Ok(p);
    }
    match state.store.authenticate(hash).await {
        Ok(Some(p)) => {
            state.tokens.put(hash, p.clone());
            Ok(p)
        }
        Ok(None) => invalid,
        Err(e) => {
            // An unreadable token row fails closed: logged, answered 500.
            tracing::error!(error = %e, "could not authenticate a token");
            Err(Err(ApiError::from(e)))
        }
    }
}

/// Leaves the outcome of [`authenticate`] for the extractors (and the token
/// id for the request log line).
pub fn record(parts: &mut axum::http::Extensions, outcome: Result<Principal, Unauthenticated>) {
    match outcome {
        Ok(p) => {
            if let Some(slot) = parts.get::<TokenSlot>() {
                let _ = slot.0.set(p.token_id.clone());
            }
            parts.insert(p);
        }
        Err(u) => {
            parts.insert(u);
        }
    }
}

/// The authenticated caller: what the guards layer found (a request that
/// did not pass through it is authenticated here, the same way).
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match MaybeCaller::from_request_parts(parts, state).await? {
            MaybeCaller(Some(p)) => Ok(Caller(p)),
            MaybeCaller(None) => Err(Unauthenticated::Missing.error()),
        }
    }
}

/// A caller who may be anonymous (`/metrics`): no header is `None`, a
/// header that does not authenticate is still 401.
pub struct MaybeCaller(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(MaybeCaller(Some(p.clone())));
        }
        let outcome = match parts.extensions.get::<Unauthenticated>() {
            Some(u) => Err(*u),
            None => match authenticate(&parts.headers, state).await {
                Ok(p) => Ok(p),
                Err(Ok(u)) => Err(u),
                Err(Err(e)) => return Err(e),
            },
        };
        record(&mut parts.extensions, outcome.clone());
        match outcome {
            Ok(p) => Ok(MaybeCaller(Some(p))),
            Err(Unauthenticated::Missing) => Ok(MaybeCaller(None)),
            Err(u) => Err(u.error()),
        }
    }
}

/// Where the authenticated token id is left for the request log line.
#[derive(Clone, Default)]
pub struct TokenSlot(pub std::sync::Arc<std::sync::OnceLock<String>>);

impl Caller {
    /// Writes need a `write` token.
    pub fn require_write(&self) -> Result<&Principal, ApiError> {
        if self.0.access == Access::Write {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(
                "this token has read scope; this request needs write scope",
            ))
        }
    }
    /// Platform operations need a platform token with write scope.
    pub fn require_platform_write(&self) -> Result<&Principal, ApiError> {
        if !self.0.is_platform() {
            return Err(ApiError::forbidden("only platform tokens may do this"));
        }
        self.require_write()
    }
}

/// A short-lived cache of authenticated tokens, so a busy client costs one
/// lookup every few seconds rather than one per request. A revoked token
/// stops working within [`TokenCache::TTL`].
#[derive(Default)]
pub struct TokenCache {
    entries:
        std::sync::RwLock<std::collections::HashMap<[u8; 32], (Principal, std::time::Instant)>>,
}

impl TokenCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(5);
    const MAX_ENTRIES: usize = 10_000;

    /// Forgets every cached token (tests: a revocation takes effect now).
    #[doc(hidden)]
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }

    fn get(&self, hash: &[u8; 32]) -> Option<Principal> {
        let entries = self.entries.read().ok()?;
        let (p, at) = entries.get(hash)?;
        (at.elapsed() < Self::TTL).then(|| p.clone())
    }

    fn put(&self, hash: [u8; 32], p: Principal) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= Self::MAX_ENTRIES {
                entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
                if entries.len() >= Self::MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(hash, (p, std::time::Instant::now()));
        }
    }
}
