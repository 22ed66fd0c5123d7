//! Extractors that reject bad input in our problem format: a JSON body
//! (malformed → 400, wrong shape or value → 422 naming the field, too large →
//! 413, wrong media type → 415) and a query string (→ 422 naming the
//! parameter).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBody(bytes) = JsonBody::from_request(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// The raw bytes of a JSON request body (media type and size checked as for
/// [`Json`]), for handlers that parse it themselves, borrowing from it.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let mime = ct.split(';').next().unwrap_or("").trim();
            if !(mime == "application/json" || mime.ends_with("+json")) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "request bodies must be application/json",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    "payload_too_large",
                    "request bodies are limited to 1 MiB",
                )
            } else {
                ApiError::bad_request("the request body could not be read")
            }
        })?;
        Ok(JsonBody(bytes))
    }
}

/// Parses a JSON document, naming the offending field on a data error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("a JSON request body is required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    let value = result.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => data_error(&path, &inner),
            _ => ApiError::bad_request(format!("the request body is not valid JSON: {inner}")),
        }
    })?;
    // Trailing garbage after the document.
    if serde_json::Deserializer::from_slice(bytes)
        .into_iter::<serde::de::IgnoredAny>()
        .nth(1)
        .is_some()
    {
        return Err(ApiError::bad_request(
            "the request body holds more than one JSON document",
        ));
    }
    Ok(value)
}

/// Deserializes an already parsed JSON value, naming the offending field.
pub fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        data_error(&path, err.inner())
    })
}

/// A serde data error as a field error: unknown and missing fields are named
/// from the message, other errors from the path.
fn data_error(path: &str, err: &serde_json::Error) -> ApiError {
    let msg = err.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
    let quoted = || msg.split('`').nth(1).map(str::to_owned);
    let join = |name: String| {
        if path == "." || path.is_empty() {
            name
        } else {
            format!("{path}.{name}")
        }
    };
    if msg.starts_with("unknown field") {
        // serde_path_to_error's path already ends with the unknown field.
        let field = if path == "." || path.is_empty() {
            quoted().unwrap_or_default()
        } else {
            path.to_owned()
        };
        return ApiError::validation(field, "is not a known field");
    }
    if msg.starts_with("missing field") {
        let field = join(quoted().unwrap_or_default());
        return ApiError::validation(field, "is required");
    }
    let field = if path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    ApiError::validation(field, humanize(&msg))
}

fn humanize(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        return format!("has the wrong type ({rest})");
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return format!("must be one of the listed values: {rest}");
    }
    msg.to_owned()
}

/// A query string parsed into `T` (which should deny unknown fields).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|err| {
                let path = err.path().to_string();
                let msg = err.into_inner().to_string();
                let quoted = msg.split('`').nth(1).map(str::to_owned);
                if msg.starts_with("unknown field") {
                    ApiError::validation(
                        quoted.unwrap_or_default(),
                        "is not a known query parameter",
                    )
                } else if msg.starts_with("duplicate field") {
                    ApiError::validation(quoted.unwrap_or_default(), "is given more than once")
                } else {
                    let field = if path == "." {
                        "query".to_owned()
                    } else {
                        path
                    };
                    ApiError::validation(field, humanize(&msg))
                }
            })
    }
}
