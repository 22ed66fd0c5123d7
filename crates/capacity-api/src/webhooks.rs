//! `/v1/webhook-endpoints`: where events are delivered, and what came of it.

use crate::AppState;
use crate::auth::Caller;
use crate::dispatcher::WebhookNet;
use crate::error::not_found;
use crate::error::{ApiError, ApiResult};
use crate::events::EVENT_TYPES;
use crate::extract::{Json, Query};
use crate::page::ListBody;
use crate::page::PageQuery;
use crate::page::{DataBody, list_body, page_request};
use crate::schemas::{DeliveryView, WebhookEndpointCreated, WebhookEndpointView};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capacity_domain::webhook::secret_from_bytes;
use capacity_store::{NewWebhookEndpoint, Principal};
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// An absolute http(s) URL without credentials, at most 2048
    /// characters. Unless the server allows it, its host must not resolve
    /// to a private, loopback or link-local address (SSRF).
    /// The shape is [`URL_PATTERN`] (set on the schema in `openapi.rs`):
    /// a host name or IPv4 address, no IPv6 literal, no fragment.
    #[schema(max_length = 2048, example = "https://hooks.example.com/capacity")]
    url: String,
    /// Event types to deliver (`*` or none = all).
    #[serde(default)]
    #[schema(value_type = Vec<WebhookEventType>)]
    event_types: Vec<String>,
    /// 1 to 500 characters.
    #[schema(
        max_length = 500,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    description: Option<String>,
}

/// An event type, or `*` for all.
pub struct WebhookEventType;

impl utoipa::PartialSchema for WebhookEventType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut types: Vec<&str> = EVENT_TYPES.to_vec();
        types.push("*");
        capacity_domain::openapi::schema_from_json(
            serde_json::json!({ "type": "string", "enum": types }),
        )
    }
}
impl ToSchema for WebhookEventType {}

const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const LABEL: &str = "[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const PORT: &str =
    "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";

/// What a webhook URL may look like, as the API checks it and its schema
/// states it: http(s), a host name (labels start with a letter) or an IPv4
/// address, an optional port, path and query.
pub fn url_pattern() -> String {
    format!(
        "^https?://({LABEL}(\\.{LABEL})*|{OCTET}(\\.{OCTET}){{3}})(:{PORT})?(/[A-Za-z0-9._~%/-]*)?(\\?[A-Za-z0-9._~%=&-]*)?$"
    )
}

fn url_shape() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(&url_pattern()).expect("the URL pattern compiles"))
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

const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks a webhook URL at creation: http(s), a host, and (unless allowed)
/// no private, loopback or link-local address behind it. This check tells
/// the caller early; what protects the network is the sender's, which
/// resolves again and connects only to the addresses it checked
/// (`dispatcher::PinnedResolver`).
pub async fn check_url(
    raw: &str,
    allow_private: bool,
    net: &WebhookNet,
) -> Result<url::Url, String> {
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
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<std::net::IpAddr> = match host.parse() {
        Ok(ip) => vec![ip],
        Err(_) => {
            let name: reqwest::dns::Name = host
                .parse()
                .map_err(|_| "names a host that does not resolve".to_owned())?;
            // A lookup that hangs must not hang the request.
            tokio::time::timeout(LOOKUP_TIMEOUT, net.resolver.resolve(name))
                .await
                .map_err(|_| "names a host that does not resolve".to_owned())?
                .map_err(|_| "names a host that does not resolve".to_owned())?
                .map(|a| a.ip())
                .collect()
        }
    };
    if addrs.is_empty() || addrs.iter().any(|a| (net.refused)(*a)) {
        return Err("must not point to a private, loopback or link-local address".into());
    }
    Ok(url)
}

/// Create a webhook endpoint
///
/// The answer shows the signing secret, once. Deliveries are signed per
/// Standard Webhooks and retried with growing back-off for up to 3 days.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints",
    operation_id = "createWebhookEndpoint",
    tag = "events",
    request_body = CreateEndpoint,
    responses((status = 201, description = "The endpoint and its secret", body = DataBody<WebhookEndpointCreated>))
)]
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
    if !url_shape().is_match(&b.url) {
        return Err(ApiError::validation(
            "url",
            "must be an http or https URL with a host name or IPv4 address, and an optional port, path and query",
        ));
    }
    let url = check_url(
        &b.url,
        s.settings.allow_private_webhooks,
        &s.settings.webhook_net,
    )
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

/// List webhook endpoints
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints",
    operation_id = "listWebhookEndpoints",
    tag = "events",
    params(PageQuery),
    responses((status = 200, description = "The endpoints the token manages", body = ListBody<WebhookEndpointView>))
)]
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

/// Get a webhook endpoint
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}",
    operation_id = "getWebhookEndpoint",
    tag = "events",
    params(("id" = String, Path, description = "The endpoint's id", pattern = "^WHE-[0-9]{2}-[0-9]{6,15}$")),
    responses((status = 200, description = "The endpoint (without its secret)", body = DataBody<WebhookEndpointView>))
)]
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

/// Delete a webhook endpoint
#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{id}",
    operation_id = "deleteWebhookEndpoint",
    tag = "events",
    params(("id" = String, Path, description = "The endpoint's id", pattern = "^WHE-[0-9]{2}-[0-9]{6,15}$")),
    responses((status = 204, description = "Deleted; nothing more is delivered to it"))
)]
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

/// List an endpoint's deliveries
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}/deliveries",
    operation_id = "listDeliveries",
    tag = "events",
    params(("id" = String, Path, description = "The endpoint's id", pattern = "^WHE-[0-9]{2}-[0-9]{6,15}$"), PageQuery),
    responses((status = 200, description = "Attempts, status codes and next retry, per event", body = ListBody<DeliveryView>))
)]
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
