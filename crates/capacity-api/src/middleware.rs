//! Cross-cutting HTTP behaviour: `X-Request-Id` echoed or minted, one log
//! line and one metrics sample per request (by route template, never the raw
//! path; the token's id, never the token), and any error answer that is not yet problem+json (a 405
//! from the router, a rejection from axum) rewritten into one.

use crate::auth::TokenSlot;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn request_id(req: &Request) -> HeaderValue {
    req.headers()
        .get(REQUEST_ID)
        .filter(|v| v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .cloned()
        .unwrap_or_else(|| {
            let bytes: [u8; 16] = rand::random();
            // Hex on the stack (`hex::encode` collects chars into a String).
            let mut hex = [0u8; 32];
            hex::encode_to_slice(bytes, &mut hex)
                .ok()
                .and_then(|()| HeaderValue::from_bytes(&hex).ok())
                .unwrap_or(HeaderValue::from_static("unknown"))
        })
}

pub async fn problems_and_ids(mut req: Request, next: Next) -> Response {
    let slot = TokenSlot::default();
    req.extensions_mut().insert(slot.clone());
    let started = std::time::Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let mut res = next.run(req).await;
    if res.status().as_u16() >= 400 && !is_problem(&res) {
        res = rewrite(res.status());
    }
    let token = slot.0.get().cloned();
    let elapsed = started.elapsed();
    crate::metrics::record_request(
        method.as_str(),
        &route,
        res.status().as_u16(),
        elapsed.as_secs_f64(),
    );
    tracing::info!(
        target: "capacity::http",
        request_id = id.to_str().unwrap_or(""),
        // `&str`s, not `%` (Display): each `%` field is formatted into a
        // String of its own before the line is.
        method = method.as_str(),
        route = route.as_str(),
        status = res.status().as_u16(),
        latency_us = elapsed.as_micros() as u64,
        token_id = token.as_deref().unwrap_or("-"),
        "request"
    );
    res.headers_mut().insert(REQUEST_ID, id);
    res
}

fn is_problem(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
}

fn rewrite(status: StatusCode) -> Response {
    let (code, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not accept that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "request bodies are limited to 1 MiB")
        }
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "request bodies must be application/json",
        ),
        s if s.is_server_error() => (
            "internal_error",
            "an internal error occurred; it has been logged",
        ),
        _ => ("malformed_request", "the request could not be understood"),
    };
    ApiError::new(status, code, detail).into_response()
}

pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(panic = detail, "handler panicked");
    ApiError::internal().into_response()
}
