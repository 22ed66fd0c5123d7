//! The HTTP API (axum). [`router`] builds the whole service from an
//! [`AppState`]: one module per resource with thin handlers that parse input
//! into domain types ([`extract`]), authenticate ([`auth`]), call the store
//! and shape the answer; every failure is an [`error::ApiError`] rendered as
//! problem+json.
#![forbid(unsafe_code)]

pub mod allocations;
pub mod auth;
pub mod clock;
pub mod demo;
pub mod dispatcher;
pub mod error;
pub mod events;
pub mod extract;
mod idempotency;
mod middleware;
pub mod page;
pub mod params;
pub mod planning;
pub mod pools;
pub mod service_lines;
pub mod usage;
pub mod webhooks;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use capacity_store::Store;
use std::sync::Arc;

pub use clock::Clock;

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    pub settings: Arc<Settings>,
    pub tokens: Arc<auth::TokenCache>,
}

/// Behaviour chosen by configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Let webhook URLs point at private and loopback addresses (tests, labs).
    pub allow_private_webhooks: bool,
    /// How often the webhook dispatcher looks for due deliveries when idle.
    pub dispatch_interval: std::time::Duration,
    /// `capacity.utilisation_low` is recorded weekly for active allocations
    /// below this utilisation, in tenths of a percent (700 = 70 %).
    pub utilisation_low_tenths: i64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            allow_private_webhooks: false,
            dispatch_interval: std::time::Duration::from_secs(1),
            utilisation_low_tenths: 700,
        }
    }
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> AppState {
        AppState {
            store,
            clock,
            settings: Arc::new(Settings::default()),
            tokens: Arc::default(),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/capacity", get(pools::list).post(pools::create))
        .route(
            "/capacity/allocations",
            get(allocations::list).post(allocations::create),
        )
        .route(
            "/capacity/allocations/{id}",
            get(allocations::get).patch(allocations::patch),
        )
        .route(
            "/capacity/allocations/{id}/history",
            get(allocations::history),
        )
        .route(
            "/capacity/allocations/{id}/utilisation",
            get(allocations::utilisation),
        )
        .route(
            "/capacity/requests",
            get(planning::list_requests).post(planning::create_request),
        )
        .route("/capacity/requests/{id}", patch(planning::update_request))
        .route("/capacity/demand", get(planning::demand))
        .route("/capacity/costs", get(planning::costs))
        .route("/capacity/usage", post(usage::ingest))
        .route("/capacity/{id}", get(pools::get))
        .route(
            "/capacity/{id}/adjustments",
            get(pools::list_adjustments).post(pools::adjust),
        )
        .route(
            "/service-lines/{id}",
            get(service_lines::get).put(service_lines::put),
        )
        .route(
            "/webhook-endpoints",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/webhook-endpoints/{id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route(
            "/webhook-endpoints/{id}/deliveries",
            get(webhooks::deliveries),
        )
        .route("/events", get(events::list))
        .route("/events/{id}", get(events::get));
    Router::new()
        .nest("/v1", v1)
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .layer(axum::middleware::from_fn(middleware::problems_and_ids))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            middleware::panic_response,
        ))
        .with_state(state)
}

async fn not_found() -> Response {
    error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
}

/// The dashboard: a self-contained page (no external assets) that asks for a
/// token and reads pools, allocations and next quarter's demand from the API.
async fn dashboard() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        include_str!("../assets/dashboard.html"),
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            error::ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is not reachable",
            )
            .into_response()
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, letting
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let dispatcher = tokio::spawn(dispatcher::run(state.clone()));
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    dispatcher.abort();
    served
}
