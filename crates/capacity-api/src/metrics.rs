//! `GET /metrics` in the Prometheus text format.
//!
//! The `metrics` facade records; a process-wide Prometheus recorder
//! (installed once, on first use) renders. Label sets are bounded: route
//! templates (axum's `MatchedPath`, never a raw path), methods, status codes,
//! problem codes, and one series per pool for the pool gauges — nothing per
//! request.
//!
//! - `http_requests_total{method,route,status}` and
//!   `http_request_duration_seconds{method,route,status}` (histogram)
//! - `capacity_problems_total{code,status}`: every problem+json answer
//! - `capacity_allocation_refusals_total{code="insufficient_capacity"}`: the
//!   no-overcommit invariant refusing a change
//! - `capacity_pool_total|allocated|available{pool_id,workspace_id,resource_type,unit}`:
//!   tenants' figures, so only in a scrape with a platform token (anonymous
//!   and organization scrapes get the rest). Read from the store (so they are
//!   right in every process behind a load balancer), at most once per
//!   [`POOL_FIGURES_TTL`] per process however many scrape, and at most
//!   [`MAX_POOLS`] pools; written straight into the answer, never into the
//!   process-wide recorder, so no other scrape can see them.
//! - `capacity_rate_limited_total`
//! - `capacity_db_connections{state="in_use"|"idle"}`, `capacity_db_connections_max`:
//!   the store's connection pool (`Store::connection_stats`)

use crate::AppState;
use crate::auth::MaybeCaller;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use capacity_store::{Access, PageRequest, PoolFilter, Principal, Tenant};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::OnceLock;

pub const REQUEST_DURATION: &str = "http_request_duration_seconds";
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Pools read per scrape at most: gauges beyond stay unreported rather than
/// let a scrape grow without bound.
pub const MAX_POOLS: usize = 10_000;
/// How long one reading of the pools answers scrapes.
pub const POOL_FIGURES_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// The process-wide recorder's handle, installing it on first use. If some
/// other recorder was installed first (an embedding program's), ours still
/// renders, but only what is recorded through it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), &BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only ours");
        }
        handle
    })
}

/// The request counter and duration histogram of one label set.
#[derive(Clone)]
struct RequestSeries {
    count: metrics::Counter,
    duration: metrics::Histogram,
}

/// Request series by route template, then by (method, status). Registering
/// a series with the recorder builds and hashes its key and labels; looking
/// it up here is a string hash and a short scan, and the label set is
/// bounded (route templates × methods × status codes).
type SeriesCache = std::collections::HashMap<String, Vec<(&'static str, u16, RequestSeries)>>;

/// Records one answered request (called by the request middleware).
pub fn record_request(method: &str, route: &str, status: u16, seconds: f64) {
    static SERIES: OnceLock<std::sync::RwLock<SeriesCache>> = OnceLock::new();
    handle();
    // Custom methods would be an unbounded label set.
    let method = match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let cache = SERIES.get_or_init(Default::default);
    let cached = cache.read().ok().and_then(|c| {
        c.get(route)?
            .iter()
            .find(|(m, s, _)| *m == method && *s == status)
            .map(|(_, _, series)| series.clone())
    });
    let series = cached.unwrap_or_else(|| {
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let series = RequestSeries {
            count: metrics::counter!("http_requests_total", &labels),
            duration: metrics::histogram!(REQUEST_DURATION, &labels),
        };
        if let Ok(mut c) = cache.write() {
            c.entry(route.to_owned())
                .or_default()
                .push((method, status, series.clone()));
        }
        series
    });
    series.count.increment(1);
    series.duration.record(seconds);
}

/// Records a problem answer by its (static, bounded) code.
pub fn record_problem(code: &'static str, status: u16) {
    handle();
    metrics::counter!("capacity_problems_total", "code" => code, "status" => status.to_string())
        .increment(1);
    if code == "insufficient_capacity" {
        metrics::counter!("capacity_allocation_refusals_total", "code" => code).increment(1);
    }
}

/// The pool figures' text, read at most once per [`POOL_FIGURES_TTL`]:
/// scrapes arriving meanwhile wait for the one reading (the lock) and share it.
#[derive(Default)]
pub struct PoolFigures(tokio::sync::Mutex<Option<(std::time::Instant, Arc<String>)>>);

impl PoolFigures {
    async fn text(&self, s: &AppState) -> Arc<String> {
        let mut cached = self.0.lock().await;
        if let Some((at, text)) = cached.as_ref()
            && at.elapsed() < POOL_FIGURES_TTL
        {
            return text.clone();
        }
        let text = Arc::new(read_pool_figures(s).await);
        *cached = Some((std::time::Instant::now(), text.clone()));
        text
    }
}

/// The per-pool gauges in the text format, read from the store.
async fn read_pool_figures(s: &AppState) -> String {
    let platform = Principal {
        token_id: "metrics".to_owned(),
        tenant: Tenant::Platform,
        access: Access::Read,
    };
    let now = s.clock.now();
    let mut after = None;
    let mut seen = 0;
    let mut series: [(&str, String); 3] = [
        ("capacity_pool_total", String::new()),
        ("capacity_pool_allocated", String::new()),
        ("capacity_pool_available", String::new()),
    ];
    loop {
        let page = PageRequest { limit: 100, after };
        let pools = match s
            .store
            .list_pools(&platform, PoolFilter::default(), page, now)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: could not read pools");
                break;
            }
        };
        for p in &pools.items {
            let labels = format!(
                "pool_id=\"{}\",workspace_id=\"{}\",resource_type=\"{}\",unit=\"{}\"",
                p.id,
                p.workspace_id,
                p.resource_type.as_str(),
                capacity_store::unit_name(p.resource_type)
            );
            let units = |t: i64| t as f64 / 1000.0;
            for ((name, out), v) in series.iter_mut().zip([p.total, p.allocated, p.available()]) {
                let _ = writeln!(out, "{name}{{{labels}}} {}", units(v));
            }
        }
        seen += pools.items.len();
        match pools.next {
            Some(n) if seen < MAX_POOLS => after = Some(n),
            _ => break,
        }
    }
    let mut text = String::new();
    for (name, lines) in series {
        let _ = writeln!(text, "# TYPE {name} gauge");
        text.push_str(&lines);
    }
    text
}

/// Prometheus metrics
///
/// Request counts, latencies, problems and connections for anyone; with a
/// platform token, every pool's figures too.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "[`unauthorized`](/docs#problem-unauthorized): a token was sent and does not authenticate", body = crate::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn scrape(State(s): State<AppState>, caller: MaybeCaller) -> Response {
    let handle = handle();
    if let Some(c) = s.store.connection_stats() {
        metrics::gauge!("capacity_db_connections", "state" => "in_use").set(c.in_use as f64);
        metrics::gauge!("capacity_db_connections", "state" => "idle").set(c.idle as f64);
        metrics::gauge!("capacity_db_connections_max").set(c.max as f64);
    }
    handle.run_upkeep();
    let mut text = handle.render();
    if caller.0.is_some_and(|p| p.is_platform()) {
        text.push_str(&s.pool_figures.text(&s).await);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
