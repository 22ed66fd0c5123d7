//! One error type for every handler, answered as RFC 9457
//! `application/problem+json` with a stable `code`. Internal failures are
//! logged and never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use capacity_domain::model::show;
use capacity_store::StoreError;
use serde::Serialize;

/// Every problem `code` the API answers, with its status and meaning. The
/// OpenAPI document lists them (the `code` enum, each error response) and
/// `/docs` gives each an anchor `#problem-<code>`, the problem's `type`.
/// A test scans the sources, so a new code must be added here.
pub const PROBLEM_CODES: &[(&str, u16, &str)] = &[
    (
        "malformed_request",
        400,
        "The request could not be read: the body is not JSON, holds more than one document, or is missing.",
    ),
    (
        "unauthorized",
        401,
        "No bearer token, or one that is unknown or revoked. The answer carries `WWW-Authenticate: Bearer`.",
    ),
    (
        "forbidden",
        403,
        "The token is valid but may not do this: a read-scope token writing, or an organization token doing a platform operation.",
    ),
    (
        "not_found",
        404,
        "No such resource, or one outside the token's organization or workspaces (the two are indistinguishable). A path id of the wrong shape answers this too.",
    ),
    (
        "method_not_allowed",
        405,
        "The route does not accept this method.",
    ),
    (
        "insufficient_capacity",
        409,
        "The change would commit more than the pool's supply × overcommit_ratio at some instant from now on. The problem names `first_violation_at`, `shortfall`, `committed`, `capacity` and `unit`.",
    ),
    (
        "pool_exists",
        409,
        "The workspace already has a pool of this resource type.",
    ),
    (
        "workspace_organization_mismatch",
        409,
        "The workspace belongs to another organization.",
    ),
    (
        "service_line_workspace_mismatch",
        409,
        "The service line belongs to another workspace.",
    ),
    (
        "service_line_closed",
        409,
        "The service line is closed; it takes no new allocations.",
    ),
    (
        "allocation_closed",
        409,
        "The allocation is closed; closed is final.",
    ),
    (
        "request_not_pending",
        409,
        "Only pending demand requests change status.",
    ),
    (
        "pending_demand_limit",
        409,
        "The request would take the workspace's pending demand of its resource type above 10^12 units at some instant; cancel or fulfil pending requests first.",
    ),
    (
        "usage_week_limit",
        409,
        "The batch would take an allocation's or a pool's usage in one ISO week above 10^12 units; nothing of it was recorded.",
    ),
    (
        "webhook_endpoint_limit",
        409,
        "The organization (or the platform) already has the most webhook endpoints it may have (20); delete one first.",
    ),
    (
        "idempotency_key_in_use",
        409,
        "A request with this Idempotency-Key is still being processed; retry shortly.",
    ),
    (
        "precondition_failed",
        412,
        "`If-Match` names a version other than the current one; read the resource again.",
    ),
    (
        "payload_too_large",
        413,
        "Request bodies are limited to 1 MiB.",
    ),
    (
        "unsupported_media_type",
        415,
        "Request bodies must be `application/json`.",
    ),
    (
        "validation_failed",
        422,
        "A field or query parameter is missing, unknown or has a wrong value; `errors[]` names each (`field`, `message`).",
    ),
    (
        "idempotency_key_reused",
        422,
        "This Idempotency-Key was used for a different request; use a new key.",
    ),
    (
        "rate_limited",
        429,
        "Too many requests for this token, or too many failed authentications from this address; wait for `Retry-After` seconds.",
    ),
    (
        "internal_error",
        500,
        "An unexpected failure; it has been logged with the request id.",
    ),
    (
        "unavailable",
        503,
        "The database is unreachable or overloaded; retry shortly.",
    ),
    (
        "timeout",
        503,
        "The request took longer than the server's request timeout; it may or may not have been applied, so retry with the same Idempotency-Key.",
    ),
    (
        "too_many_connections",
        503,
        "The server is serving as many connections as it allows; this one is closed. Retry shortly.",
    ),
];

#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An error answer. Boxed so `Result<T, ApiError>` stays small.
#[derive(Debug)]
pub struct ApiError(Box<Problem>);

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Extra members of the problem object (e.g. the overcommit figures).
    pub extra: Option<serde_json::Value>,
    pub www_authenticate: Option<&'static str>,
}

impl std::ops::Deref for ApiError {
    type Target = Problem;
    fn deref(&self) -> &Problem {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut Problem {
        &mut self.0
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError(Box::new(Problem {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            extra: None,
            www_authenticate: None,
        }))
    }
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let (field, message) = (field.into(), message.into());
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {message}"),
        );
        e.errors.push(FieldError { field, message });
        e
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", detail)
    }
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    pub fn unauthorized(detail: &str, challenge: &'static str) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        e.www_authenticate = Some(challenge);
        e
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; it has been logged",
        )
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let p = *self.0;
        crate::metrics::record_problem(p.code, p.status.as_u16());
        let mut body = serde_json::json!({
            "type": format!("/docs#problem-{}", p.code),
            "title": title(p.status),
            "status": p.status.as_u16(),
            "detail": p.detail,
            "code": p.code,
        });
        if !p.errors.is_empty() {
            body["errors"] = serde_json::to_value(&p.errors).unwrap_or_default();
        }
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (p.extra, body.as_object_mut())
        {
            obj.extend(extra);
        }
        let mut res = (p.status, body.to_string()).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(c) = p.www_authenticate {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Missing(what) => ApiError::not_found(what),
            StoreError::InsufficientCapacity { overcommit, unit } => {
                let mut err = ApiError::new(
                    StatusCode::CONFLICT,
                    "insufficient_capacity",
                    format!(
                        "the pool would be over-committed from {} by {} {unit}",
                        overcommit.at,
                        show(overcommit.shortfall)
                    ),
                );
                err.extra = Some(serde_json::json!({
                    "first_violation_at": overcommit.at,
                    "shortfall": serde_json::Number::from_string_unchecked_compat(show(overcommit.shortfall)),
                    "committed": serde_json::Number::from_string_unchecked_compat(show(overcommit.committed)),
                    "capacity": serde_json::Number::from_string_unchecked_compat(show(overcommit.capacity)),
                    "unit": unit,
                }));
                err
            }
            StoreError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            StoreError::Invalid { field, message } => ApiError::validation(field, message),
            StoreError::Forbidden(detail) => ApiError::forbidden(detail),
            StoreError::PreconditionFailed { expected } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                format!(
                    "If-Match named version \"{expected}\", but the resource has changed since; read it again"
                ),
            ),
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is temporarily unavailable; retry shortly",
                )
            }
            StoreError::Internal(detail) => {
                tracing::error!(%detail, "storage failure");
                ApiError::internal()
            }
        }
    }
}

/// Exact decimal JSON numbers from our own formatted strings.
trait NumberCompat {
    fn from_string_unchecked_compat(s: String) -> serde_json::Value;
}
impl NumberCompat for serde_json::Number {
    fn from_string_unchecked_compat(s: String) -> serde_json::Value {
        s.parse::<serde_json::Number>()
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::String(s))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Maps a store "not found" to a message naming the resource.
pub fn not_found(e: StoreError, what: &str) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(what),
        e => e.into(),
    }
}
