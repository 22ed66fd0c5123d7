//! One error type for every handler, answered as RFC 9457
//! `application/problem+json` with a stable `code`. Internal failures are
//! logged and never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use capacity_domain::model::show;
use capacity_store::StoreError;
use serde::Serialize;

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
