//! The operations surface: /metrics, the per-token rate limit and the
//! request timeout.

mod common;

use common::{assert_problem, spawn_app, spawn_app_with_limits};
use serde_json::json;
use std::num::NonZeroU32;
use std::time::Duration;

async fn scrape(app: &common::TestApp) -> prometheus_parse::Scrape {
    scrape_as(app, None).await
}

async fn scrape_as(app: &common::TestApp, token: Option<&str>) -> prometheus_parse::Scrape {
    let mut req = app.client.get(format!("{}/metrics", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn_app().await;
    let a = app
        .get(
            "/v1/capacity?workspace_id=WS-26-000021",
            &app.tokens.platform,
        )
        .await;
    assert_eq!(a.status, 200);
    let b = app
        .get(
            "/v1/capacity/allocations/ALLOC-26-000441",
            &app.tokens.platform,
        )
        .await;
    assert_eq!(b.status, 200);
    let s = scrape(&app).await;
    let labels = [
        ("method", "GET"),
        ("route", "/v1/capacity"),
        ("status", "200"),
    ];
    assert!(value(&s, "http_requests_total", &labels).unwrap() >= 1.0);
    // The latency histogram has buckets for the same labels.
    assert!(s.samples.iter().any(|x| {
        x.metric == "http_request_duration_seconds"
            && x.labels.get("route") == Some("/v1/capacity")
            && matches!(x.value, prometheus_parse::Value::Histogram(_))
    }));
    // Routes with a parameter are labelled by their template, never the id.
    // (prometheus-parse cannot read a `}` inside a label value, which the
    // format allows, so these lines are checked as text.)
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.lines().any(|l| l.starts_with(
        "http_requests_total{method=\"GET\",route=\"/v1/capacity/allocations/{id}\",status=\"200\"}"
    )));
    assert!(!text.contains("ALLOC-26-000441"));
}

#[tokio::test]
async fn metrics_show_pool_gauges_read_from_the_store() {
    let app = spawn_app().await;
    let s = scrape_as(&app, Some(&app.tokens.platform_read)).await;
    let pool = [
        ("pool_id", "CAP-26-000112"),
        ("resource_type", "talent_hours"),
    ];
    assert_eq!(value(&s, "capacity_pool_total", &pool), Some(200.0));
    assert_eq!(value(&s, "capacity_pool_allocated", &pool), Some(160.0));
    assert_eq!(value(&s, "capacity_pool_available", &pool), Some(40.0));
    // The store's connection pool, by state.
    assert!(value(&s, "capacity_db_connections", &[("state", "idle")]).is_some());
    assert!(value(&s, "capacity_db_connections", &[("state", "in_use")]).is_some());
    assert!(value(&s, "capacity_db_connections_max", &[]).unwrap() >= 1.0);
}

#[tokio::test]
async fn metrics_count_allocations_refused_for_insufficient_capacity() {
    let app = spawn_app().await;
    let before = value(
        &scrape(&app).await,
        "capacity_allocation_refusals_total",
        &[("code", "insufficient_capacity")],
    )
    .unwrap_or(0.0);
    let a = app
        .post(
            "/v1/capacity/allocations",
            &app.tokens.platform,
            json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090002", "committed_per_week": 100}),
        )
        .await;
    assert_problem(&a, 409, "insufficient_capacity");
    let after = value(
        &scrape(&app).await,
        "capacity_allocation_refusals_total",
        &[("code", "insufficient_capacity")],
    )
    .unwrap();
    // Tests share the process's recorder, so others may add to it too.
    assert!(after >= before + 1.0);
}

#[tokio::test]
async fn a_token_over_its_rate_limit_is_answered_429_with_retry_after() {
    let app = spawn_app_with_limits(capacity_api::Limits {
        rate_limit_per_second: NonZeroU32::new(1),
        rate_limit_burst: NonZeroU32::new(2).unwrap(),
        ..capacity_api::Limits::default()
    })
    .await;
    for _ in 0..2 {
        let a = app.get("/v1/capacity", &app.tokens.platform).await;
        assert_eq!(a.status, 200);
    }
    let a = app.get("/v1/capacity", &app.tokens.platform).await;
    assert_problem(&a, 429, "rate_limited");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry));
    // The limit is per token: another token still passes.
    let b = app.get("/v1/capacity", &app.tokens.org_read).await;
    assert_eq!(b.status, 200);
    // Health checks are never limited.
    let h = app.send("GET", "/healthz", None, None).await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn a_request_over_the_timeout_is_answered_503_timeout() {
    // The service's timeout middleware around a handler that never finishes,
    // served over HTTP: deterministic, where a real route is only slow
    // enough by luck of scheduling.
    let router = axum::Router::new()
        .route(
            "/slow",
            axum::routing::get(std::future::pending::<&'static str>),
        )
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| {
                capacity_api::limits::timeout(Duration::from_millis(1), next.run(req))
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    capacity_api::dispatcher::install_crypto_provider();
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "timeout");
    assert_eq!(body["status"], 503);
}

#[tokio::test]
async fn pool_figures_are_shown_only_to_a_platform_token() {
    let app = spawn_app().await;
    let pool = [("pool_id", "CAP-26-000112")];
    for token in [None, Some(app.tokens.org_read.as_str())] {
        let s = scrape_as(&app, token).await;
        for m in [
            "capacity_pool_total",
            "capacity_pool_allocated",
            "capacity_pool_available",
        ] {
            assert!(
                !s.samples.iter().any(|x| x.metric == m),
                "{m} shown to {token:?}"
            );
        }
    }
    // Even after a platform scrape, an anonymous one shows none.
    let s = scrape_as(&app, Some(&app.tokens.platform)).await;
    assert_eq!(value(&s, "capacity_pool_total", &pool), Some(200.0));
    let s = scrape(&app).await;
    assert!(
        !s.samples
            .iter()
            .any(|x| x.metric.starts_with("capacity_pool_"))
    );
    // A token that does not authenticate is 401, not a public scrape.
    let a = app
        .send("GET", "/metrics", Some("cap_invented"), None)
        .await;
    assert_problem(&a, 401, "unauthorized");
}

fn limited(burst: u32) -> capacity_api::Limits {
    capacity_api::Limits {
        rate_limit_per_second: NonZeroU32::new(1),
        rate_limit_burst: NonZeroU32::new(burst).unwrap(),
        ..capacity_api::Limits::default()
    }
}

async fn get_with_authorization(app: &common::TestApp, value: &str) -> common::Answer {
    let res = app
        .client
        .get(format!("{}/v1/capacity", app.base))
        .header("authorization", value)
        .send()
        .await
        .unwrap();
    common::answer(res).await
}

#[tokio::test]
async fn the_rate_limit_is_per_token_however_its_header_is_spelled() {
    let app = spawn_app_with_limits(limited(2)).await;
    let t = &app.tokens.platform;
    let spellings = [
        format!("Bearer {t}"),
        format!("bearer {t}"),
        format!("BEARER {t}"),
        format!("Bearer  {t}"),
    ];
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for s in &spellings {
            v.push(get_with_authorization(&app, s).await.status);
        }
        v
    };
    assert_eq!(statuses, [200, 200, 429, 429]);
}

#[tokio::test]
async fn failed_authentications_are_limited_per_client_address() {
    let app = spawn_app_with_limits(limited(2)).await;
    // The valid token is looked up (and cached) before the flood.
    assert_eq!(
        app.get("/v1/capacity", &app.tokens.platform).await.status,
        200
    );
    let mut statuses = Vec::new();
    for i in 0..4 {
        let a = app.get("/v1/capacity", &format!("cap_invented_{i}")).await;
        statuses.push(a.status);
    }
    assert_eq!(statuses, [401, 401, 429, 429]);
    let a = app.send("GET", "/v1/capacity", None, None).await;
    assert_problem(&a, 429, "rate_limited");
    // A token that authenticates has its own bucket.
    assert_eq!(
        app.get("/v1/capacity", &app.tokens.platform).await.status,
        200
    );
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_request_head_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with_limits(capacity_api::Limits {
        header_read_timeout: Duration::from_millis(200),
        ..capacity_api::Limits::default()
    })
    .await;
    let addr = app.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // Not a timing assertion: only a guard so that a hang fails the test.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the server held a half-sent request open");
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with_limits(capacity_api::Limits {
        max_connections: 1,
        ..capacity_api::Limits::default()
    })
    .await;
    let addr = app.base.trim_start_matches("http://");
    // One connection, kept alive after a whole answer: it holds the only slot.
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    held.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = held.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let a = app.send("GET", "/healthz", None, None).await;
    assert_problem(&a, 503, "too_many_connections");
    drop(held);
}
