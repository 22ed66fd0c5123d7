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

/// The authenticated caller.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "an Authorization: Bearer token is required",
                "Bearer",
            ));
        };
        let invalid = || {
            ApiError::unauthorized(
                "the bearer token is not valid",
                "Bearer error=\"invalid_token\"",
            )
        };
        let value = value.to_str().map_err(|_| invalid())?;
        let (scheme, secret) = value.trim().split_once(' ').ok_or_else(invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(invalid());
        }
        let secret = secret.trim();
        if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 200 {
            return Err(invalid());
        }
        let hash = hash_secret(secret);
        let principal = match state.tokens.get(&hash) {
            Some(p) => p,
            None => {
                let p = state.store.authenticate(hash).await?.ok_or_else(invalid)?;
                state.tokens.put(hash, p.clone());
                p
            }
        };
        if let Some(slot) = parts.extensions.get::<TokenSlot>() {
            let _ = slot.0.set(principal.token_id.clone());
        }
        Ok(Caller(principal))
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
