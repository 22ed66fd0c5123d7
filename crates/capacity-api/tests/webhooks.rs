//! Webhook endpoints and signed, retried delivery (SPEC §5 Events and webhooks).

mod common;
use axum::http::HeaderMap;
use common::*;
use serde_json::json;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, String)>>>);

/// A receiver on loopback that answers `status` to everything.
async fn receiver(status: u16) -> (String, Received) {
    let got = Received::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let g = g.clone();
            async move {
                g.0.lock().unwrap().push((headers, body));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..250 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting");
}

#[tokio::test]
async fn events_are_delivered_signed_per_standard_webhooks() {
    let app = spawn_app().await;
    let (url, got) = receiver(200).await;
    let t = &app.tokens.org_write;
    let a = app
        .post(
            "/v1/webhook-endpoints",
            t,
            json!({"url": url, "event_types": ["capacity.allocation.updated"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let secret = a.body["data"]["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = a.body["data"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("WHE-26-"));
    // The secret is shown once.
    let again = app.get(&format!("/v1/webhook-endpoints/{id}"), t).await;
    assert!(again.body["data"].get("secret").is_none());

    app.patch(
        "/v1/capacity/allocations/ALLOC-26-000441",
        t,
        json!({"status": "paused"}),
    )
    .await;
    wait_for(|| !got.0.lock().unwrap().is_empty()).await;
    let (headers, body) = got.0.lock().unwrap()[0].clone();
    let msg_id = headers["webhook-id"].to_str().unwrap();
    let ts: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = capacity_domain::webhook::sign(&secret, msg_id, ts, body.as_bytes()).unwrap();
    assert_eq!(headers["webhook-signature"].to_str().unwrap(), expected);
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "capacity.allocation.updated");
    assert_eq!(event["id"], msg_id);
    assert_eq!(event["data"]["object"]["id"], "ALLOC-26-000441");

    let d = app
        .get(&format!("/v1/webhook-endpoints/{id}/deliveries"), t)
        .await;
    let list = d.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["event_id"], msg_id);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_back_off() {
    let app = spawn_app().await;
    let (url, got) = receiver(500).await;
    let t = &app.tokens.platform;
    // Only this type: the weekly evaluation's events may come at any moment.
    let a = app
        .post(
            "/v1/webhook-endpoints",
            t,
            json!({"url": url, "event_types": ["capacity.allocation.updated"]}),
        )
        .await;
    let id = a.body["data"]["id"].as_str().unwrap().to_owned();
    app.patch(
        "/v1/capacity/allocations/ALLOC-26-000441",
        t,
        json!({"status": "paused"}),
    )
    .await;
    wait_for(|| !got.0.lock().unwrap().is_empty()).await;
    let path = format!("/v1/webhook-endpoints/{id}/deliveries");
    let mut d = serde_json::Value::Null;
    for _ in 0..100 {
        d = app.get(&path, t).await.body;
        if d["data"][0]["attempts"] == json!(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(d["data"][0]["status"], "pending");
    assert_eq!(d["data"][0]["last_status_code"], json!(500));
    assert_eq!(d["data"][0]["next_retry_at"], "2026-04-15T06:00:05Z");
    // Nothing is resent before the retry is due; once the clock passes it, it is.
    assert_eq!(got.0.lock().unwrap().len(), 1);
    app.clock.set(at("2026-04-15T06:00:06Z"));
    wait_for(|| got.0.lock().unwrap().len() >= 2).await;
}

#[tokio::test]
async fn endpoints_are_per_organization() {
    let app = spawn_app().await;
    let (url, _) = receiver(200).await;
    let a = app
        .post(
            "/v1/webhook-endpoints",
            &app.tokens.org_write,
            json!({"url": url}),
        )
        .await;
    let id = a.body["data"]["id"].as_str().unwrap().to_owned();
    assert_problem(
        &app.get(
            &format!("/v1/webhook-endpoints/{id}"),
            &app.tokens.other_org,
        )
        .await,
        404,
        "not_found",
    );
    assert_problem(
        &app.get("/v1/webhook-endpoints", &app.tokens.org_read).await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.post(
            "/v1/webhook-endpoints",
            &app.tokens.org_other_workspace,
            json!({"url": url}),
        )
        .await,
        403,
        "forbidden",
    );
    let del = app
        .send(
            "DELETE",
            &format!("/v1/webhook-endpoints/{id}"),
            Some(&app.tokens.org_write),
            None,
        )
        .await;
    assert_eq!(del.status, 204);
    assert_problem(
        &app.get(
            &format!("/v1/webhook-endpoints/{id}"),
            &app.tokens.org_write,
        )
        .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn endpoint_input_is_validated() {
    let app = spawn_app().await;
    let t = &app.tokens.org_write;
    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": "http://example.com/x", "event_types": ["capacity.nope"]}),
            "event_types[0]",
        ),
    ] {
        let a = app.post("/v1/webhook-endpoints", t, body).await;
        assert_problem(&a, 422, "validation_failed");
        assert_eq!(a.body["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn private_and_loopback_urls_are_refused_unless_allowed() {
    for url in [
        "http://127.0.0.1:9/x",
        "http://10.0.0.5/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "http://localhost/x",
    ] {
        let e = capacity_api::webhooks::check_url(url, false)
            .await
            .unwrap_err();
        assert!(e.contains("private") || e.contains("resolve"), "{url}: {e}");
        assert!(capacity_api::webhooks::check_url(url, true).await.is_ok());
    }
}
