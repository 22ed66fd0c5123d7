//! The HTTP API (axum). [`router`] builds the whole service from an
//! [`AppState`]: one module per resource with thin handlers that parse input
//! into domain types ([`extract`]), authenticate ([`auth`]), call the store
//! and shape the answer; every failure is an [`error::ApiError`] rendered as
//! problem+json.
//!
//! The operations surface lives beside them: [`openapi`] (the document,
//! generated from the handlers' annotations, served at `/openapi.json`),
//! [`docs`] (the rendered reference at `/docs`), [`metrics`] (`/metrics`),
//! and [`limits`] (per-token rate limit and request timeout).
#![forbid(unsafe_code)]

pub mod allocations;
pub mod auth;
pub mod clock;
pub mod demo;
pub mod dispatcher;
pub mod docs;
pub mod error;
pub mod events;
mod examples;
pub mod extract;
mod idempotency;
pub mod limits;
pub mod metrics;
mod middleware;
pub mod openapi;
pub mod page;
pub mod params;
pub mod planning;
pub mod pools;
pub mod schemas;
mod server;
pub mod service_lines;
pub mod usage;
pub mod webhooks;
pub mod workspaces;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capacity_store::Store;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use clock::Clock;
pub use limits::Limits;

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    pub settings: Arc<Settings>,
    pub tokens: Arc<auth::TokenCache>,
    /// The pool gauges of `/metrics`, read at most every few seconds.
    pub pool_figures: Arc<metrics::PoolFigures>,
}

/// Behaviour chosen by configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Let webhook URLs point at private and loopback addresses (tests, labs).
    pub allow_private_webhooks: bool,
    /// How webhook hosts are resolved and which addresses are refused
    /// (tests replace the resolver).
    pub webhook_net: dispatcher::WebhookNet,
    /// How often the webhook dispatcher looks for due deliveries when idle.
    pub dispatch_interval: std::time::Duration,
    /// Run the webhook dispatcher. Off, deliveries are recorded and nothing
    /// is sent (the contract run, whose generated URLs must not be called).
    pub deliver_webhooks: bool,
    /// `capacity.utilisation_low` is recorded weekly for active allocations
    /// below this utilisation, in tenths of a percent (700 = 70 %).
    pub utilisation_low_tenths: i64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            allow_private_webhooks: false,
            webhook_net: dispatcher::WebhookNet::default(),
            dispatch_interval: std::time::Duration::from_secs(1),
            deliver_webhooks: true,
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
            pool_figures: Arc::default(),
        }
    }
}

/// Every route with its OpenAPI entry: the router and the document come
/// from the same `routes!` calls, so neither can list a route the other lacks.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    let (router, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(workspaces::list))
        .routes(routes!(workspaces::get, workspaces::put))
        .routes(routes!(pools::list, pools::create))
        .routes(routes!(allocations::list, allocations::create))
        .routes(routes!(allocations::get, allocations::patch))
        .routes(routes!(allocations::history))
        .routes(routes!(allocations::utilisation))
        .routes(routes!(planning::list_requests, planning::create_request))
        .routes(routes!(planning::get_request, planning::update_request))
        .routes(routes!(planning::demand))
        .routes(routes!(planning::costs))
        .routes(routes!(usage::ingest))
        .routes(routes!(pools::get))
        .routes(routes!(pools::list_adjustments, pools::adjust))
        .routes(routes!(service_lines::get, service_lines::put))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::get, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(events::list))
        .routes(routes!(events::get))
        .routes(routes!(dashboard))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics::scrape))
        .routes(routes!(openapi_json))
        .routes(routes!(docs::page))
        .split_for_parts();
    (router, doc)
}

/// The whole service with the default [`Limits`].
pub fn router(state: AppState) -> Router {
    router_with(state, Limits::default())
}

/// The whole service: the routes of [`api`], the fallback, and the layers
/// every request passes (outermost first): panic → 500 problem, request id +
/// log line + metrics + problem rewriting, then [`guards`] (per-token rate
/// limit, timeout, idempotency keys), body limit.
pub fn router_with(state: AppState, limits: Limits) -> Router {
    let (routes, doc) = api();
    let guards = Guards {
        state: state.clone(),
        writes: Arc::new(write_operations(&doc)),
        limiter: limits::Limiter::new(&limits),
        timeout: limits.request_timeout,
    };
    routes
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(guards, guards_layer))
        .layer(axum::middleware::from_fn(middleware::problems_and_ids))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            middleware::panic_response,
        ))
        .with_state(state)
}

/// The POST and PATCH operations, as (method, route template).
type WriteOperations = std::collections::HashSet<(axum::http::Method, String)>;

fn write_operations(doc: &utoipa::openapi::OpenApi) -> WriteOperations {
    let mut ops = WriteOperations::new();
    for (path, item) in &doc.paths.paths {
        if item.post.is_some() {
            ops.insert((axum::http::Method::POST, path.clone()));
        }
        if item.patch.is_some() {
            ops.insert((axum::http::Method::PATCH, path.clone()));
        }
    }
    ops
}

/// What [`guards_layer`] needs. One layer rather than three: each layer
/// costs every request a clone of the inner service and a boxed future.
#[derive(Clone)]
struct Guards {
    state: AppState,
    writes: Arc<WriteOperations>,
    limiter: limits::Limiter,
    timeout: std::time::Duration,
}

/// In order: authentication, once, for every request under `/v1` or with
/// credentials (the outcome is left in the request's extensions for the
/// extractors); the rate limit of the token, or of the client's address
/// when authentication failed (429 before any other work); then the
/// request timeout around `Idempotency-Key` handling and the handler.
async fn guards_layer(
    State(g): State<Guards>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let credentials = req
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION);
    if credentials || req.uri().path().starts_with("/v1/") {
        match auth::authenticate(req.headers(), &g.state).await {
            Ok(p) => {
                if let Some(refused) = g.limiter.check_token(&p.token_id) {
                    return refused;
                }
                auth::record(req.extensions_mut(), Ok(p));
            }
            Err(Ok(failed)) => {
                let addr = req
                    .extensions()
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
                if let Some(refused) = g.limiter.check_failure(addr) {
                    return refused;
                }
                auth::record(req.extensions_mut(), Err(failed));
            }
            Err(Err(e)) => return e.into_response(),
        }
    }
    let abandon_after = abandon_after(g.timeout);
    limits::timeout(
        g.timeout,
        idempotent_writes(g.state, &g.writes, abandon_after, req, next),
    )
    .await
}

/// How long a request holding an idempotency key may run at most (its
/// answer is sent at the request timeout; the work goes on until this),
/// after which its key is released.
fn abandon_after(request_timeout: std::time::Duration) -> std::time::Duration {
    request_timeout.saturating_mul(2)
}

/// `Idempotency-Key` handling for the write operations that exist, for a
/// caller already authenticated with write scope: a method a route does not
/// have is 405 whatever its key, and an unauthenticated or read-only caller
/// is refused by the handler without the key store being touched.
async fn idempotent_writes(
    state: AppState,
    writes: &WriteOperations,
    abandon_after: std::time::Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Reads (most requests) never look the route up.
    let method = req.method();
    let write = (method == axum::http::Method::POST || method == axum::http::Method::PATCH)
        && req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .is_some_and(|m| writes.contains(&(method.clone(), m.as_str().to_owned())));
    let owner = req
        .extensions()
        .get::<capacity_store::Principal>()
        .filter(|p| p.access == capacity_store::Access::Write)
        .map(|p| p.token_id.clone());
    match owner {
        Some(owner) if write => idempotency::layer(state, owner, abandon_after, req, next).await,
        _ => next.run(req).await,
    }
}

/// The OpenAPI 3.1 document of this service
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOC.get_or_init(|| openapi::document().to_string());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.as_str(),
    )
        .into_response()
}

async fn not_found() -> Response {
    error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
}

/// The dashboard
///
/// A self-contained page (no external assets) that asks for a
/// token and reads pools, allocations and next quarter's demand from the API.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "dashboard",
    tag = "operations",
    responses((status = 200, description = "An HTML page; it asks for a token and reads the API", content_type = "text/html", body = String))
)]
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

/// Liveness: the process answers
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "Alive, with the service's clock (the dashboard plans from it)", body = schemas::Liveness))
)]
async fn healthz(State(s): State<AppState>) -> Response {
    axum::Json(schemas::Liveness {
        status: "ok",
        now: s.clock.now(),
    })
    .into_response()
}

/// Readiness: the database is reachable
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = schemas::Health),
        (status = 503, description = "[`unavailable`](/docs#problem-unavailable): the database is not reachable", body = openapi::Problem, content_type = "application/problem+json"),
    )
)]
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
    serve_with(listener, state, Limits::default(), shutdown).await
}

/// [`serve`] with explicit [`Limits`]; also runs the webhook dispatcher and
/// the purge of idempotency keys (once before the first connection is
/// accepted, so keys a crashed process left in flight are free, then every
/// minute).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let abandon_after = abandon_after(limits.request_timeout);
    idempotency::purge(&state, abandon_after).await;
    let purger = tokio::spawn(idempotency::purge_every_minute(
        state.clone(),
        abandon_after,
    ));
    let dispatcher = state
        .settings
        .deliver_webhooks
        .then(|| tokio::spawn(dispatcher::run(state.clone())));
    let served = server::run(
        listener,
        router_with(state, limits.clone()),
        &limits,
        shutdown,
    )
    .await;
    if let Some(d) = dispatcher {
        d.abort();
    }
    purger.abort();
    served
}

/// The reference examples the OpenAPI document shows, as
/// `(method, path, query, request body, answer)`; for the tests that replay them.
#[doc(hidden)]
pub fn examples_for_tests() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    Option<serde_json::Value>,
    serde_json::Value,
)> {
    examples::all()
}
