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
        let principal = state
            .store
            .authenticate(hash_secret(secret))
            .await?
            .ok_or_else(invalid)?;
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
