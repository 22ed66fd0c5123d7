//! `/v1/webhook-endpoints`: where events are delivered, and what came of it.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::events::EVENT_TYPES;
use crate::extract::{Json, Query};
use crate::page::{DataBody, list_body, page_request};
use crate::pools::{PageQuery, not_found};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capacity_domain::webhook::{is_private, secret_from_bytes};
use capacity_store::{NewWebhookEndpoint, Principal};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    description: Option<String>,
}

/// Webhook endpoints receive a whole organization's events, so a token
/// narrowed to some workspaces may not manage them.
fn manager(caller: &Caller) -> Result<&Principal, ApiError> {
    let p = caller.require_write()?;
    if p.workspaces().is_some() {
        return Err(ApiError::forbidden(
            "tokens narrowed to workspaces cannot manage webhook endpoints",
        ));
    }
    Ok(p)
}

/// Checks a webhook URL: http(s), a host, and (unless allowed) no private,
/// loopback or link-local address behind it.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, String> {
    let url =
        url::Url::parse(raw).map_err(|_| "must be an absolute http or https URL".to_owned())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let host = url.host_str().ok_or("must name a host")?.to_owned();
    if allow_private {
        return Ok(url);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| "names a host that does not resolve".to_owned())?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| is_private(a.ip())) {
        return Err("must not point to a private, loopback or link-local address".into());
    }
    Ok(url)
}

pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Json(b): Json<CreateEndpoint>,
) -> ApiResult<Response> {
    let scope = manager(&caller)?;
    if b.url.len() > 2048 {
        return Err(ApiError::validation(
            "url",
            "must be at most 2048 characters",
        ));
    }
    let url = check_url(&b.url, s.settings.allow_private_webhooks)
        .await
        .map_err(|m| ApiError::validation("url", m))?;
    for (i, t) in b.event_types.iter().enumerate() {
        if t != "*" && !EVENT_TYPES.contains(&t.as_str()) {
            return Err(ApiError::validation(
                format!("event_types[{i}]"),
                "is not a known event type",
            ));
        }
    }
    let description = b
        .description
        .as_deref()
        .map(|d| crate::params::text("description", d, 500))
        .transpose()?;
    let secret = secret_from_bytes(rand::random());
    let new = NewWebhookEndpoint {
        url: url.to_string(),
        event_types: b.event_types,
        secret: secret.clone(),
        description,
    };
    let endpoint = s
        .store
        .create_webhook_endpoint(scope, new, s.clock.now())
        .await?;
    let mut data = serde_json::to_value(&endpoint).unwrap_or_default();
    // The signing secret is shown once, here.
    data["secret"] = serde_json::Value::String(secret);
    Ok((StatusCode::CREATED, axum::Json(DataBody { data })).into_response())
}

pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let scope = manager(&caller)?;
    let page = page_request(q.limit.as_deref(), q.cursor.as_deref())?;
    let endpoints = s.store.list_webhook_endpoints(scope, page).await?;
    Ok(axum::Json(list_body(endpoints, |e| e)).into_response())
}

pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let scope = manager(&caller)?;
    let e = s
        .store
        .get_webhook_endpoint(scope, &id)
        .await
        .map_err(|e| not_found(e, "webhook endpoint"))?;
    Ok(axum::Json(DataBody { data: e }).into_response())
}

pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let scope = manager(&caller)?;
    s.store
        .delete_webhook_endpoint(scope, &id)
        .await
        .map_err(|e| not_found(e, "webhook endpoint"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn deliveries(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let scope = manager(&caller)?;
    let page = page_request(q.limit.as_deref(), q.cursor.as_deref())?;
    let d = s
        .store
        .list_deliveries(scope, &id, page)
        .await
        .map_err(|e| not_found(e, "webhook endpoint"))?;
    Ok(axum::Json(list_body(d, |d| d)).into_response())
}
