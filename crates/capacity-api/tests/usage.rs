//! Metering: per-record outcomes, de-duplication, and actual_last_week.

mod common;
use common::*;
use serde_json::json;

fn record(id: &str, alloc: &str, q: serde_json::Value, at: &str) -> serde_json::Value {
    json!({"id": id, "allocation_id": alloc, "quantity": q, "occurred_at": at})
}

#[tokio::test]
async fn a_batch_answers_each_record() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let batch = json!({"records": [
        record("r1", "ALLOC-26-000442", json!(2.5), "2026-04-14T10:00:00Z"),
        record("r1", "ALLOC-26-000442", json!(2.5), "2026-04-14T10:00:00Z"),
        record("r2", "ALLOC-26-999999", json!(1), "2026-04-14T10:00:00Z"),
        record("r3", "ALLOC-26-000442", json!(1), "2026-04-16T10:00:00Z"),
        record("r4", "ALLOC-26-000442", json!(1), "2025-01-01T10:00:00Z"),
        record("r5", "ALLOC-26-000442", json!(-1), "2026-04-14T10:00:00Z"),
        json!({"id": "r6"}),
    ]});
    let a = app.post("/v1/capacity/usage", t, batch).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = &a.body["data"]["results"];
    assert_eq!(r[0]["status"], "accepted");
    assert_eq!(r[1]["status"], "duplicate");
    assert_eq!(r[2]["code"], "unknown_allocation");
    assert_eq!(r[3]["code"], "occurred_in_future");
    assert_eq!(r[4]["code"], "too_old");
    assert_eq!(r[5]["code"], "invalid_record");
    assert_eq!(r[6]["status"], "rejected");
    assert_eq!(a.body["data"]["accepted"], json!(1));
    // The same id in a later batch still counts once.
    let again = app.post("/v1/capacity/usage", t, json!({"records": [record("r1", "ALLOC-26-000442", json!(2.5), "2026-04-14T10:00:00Z")]})).await;
    assert_eq!(again.body["data"]["results"][0]["status"], "duplicate");
}

#[tokio::test]
async fn actual_last_week_counts_the_last_complete_iso_week() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let batch = json!({"records": [
        record("edge-last-second", "ALLOC-26-000441", json!(1), "2026-04-12T23:59:59Z"),
        record("edge-this-week", "ALLOC-26-000441", json!(1), "2026-04-13T00:00:00Z"),
    ]});
    assert_eq!(app.post("/v1/capacity/usage", t, batch).await.status, 200);
    let a = app.get("/v1/capacity/allocations/ALLOC-26-000441", t).await;
    assert_eq!(a.body["data"]["actual_last_week"], json!(39.5));
    assert_eq!(a.body["data"]["utilisation_percent"], json!(98.8));
}

#[tokio::test]
async fn batches_are_bounded() {
    let app = spawn_app().await;
    let a = app
        .post(
            "/v1/capacity/usage",
            &app.tokens.platform,
            json!({"records": []}),
        )
        .await;
    assert_problem(&a, 422, "validation_failed");
    let many: Vec<_> = (0..1001)
        .map(|i| record(&format!("x{i}"), "ALLOC-26-000441", json!(0.001), NOW))
        .collect();
    let a = app
        .post(
            "/v1/capacity/usage",
            &app.tokens.platform,
            json!({"records": many}),
        )
        .await;
    assert_problem(&a, 422, "validation_failed");
}

#[tokio::test]
async fn a_bad_record_does_not_change_how_the_good_ones_are_read() {
    // Well-formed batches are read in one pass, others record by record;
    // both must read the same records the same way.
    let good = |suffix: &str| {
        vec![
            record(
                &format!("e\\u0073c-{suffix}"),
                "ALLOC-26-000442",
                json!(1.250),
                "2026-04-14T10:00:00+02:00",
            ),
            record(
                &format!("exp-{suffix}"),
                "ALLOC-26-000442",
                json!(2.5e-2),
                "2026-04-14T10:00:00.5Z",
            ),
        ]
    };
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let a = app
        .post("/v1/capacity/usage", t, json!({"records": good("a")}))
        .await;
    let mut with_bad = good("b");
    with_bad.push(json!({"id": "bad", "quantity": "1"}));
    let b = app
        .post("/v1/capacity/usage", t, json!({"records": with_bad}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(b.status, 200, "{}", b.body);
    for (r, suffix) in [
        (&a.body["data"]["results"], "a"),
        (&b.body["data"]["results"], "b"),
    ] {
        assert_eq!(
            r[0],
            json!({"id": format!("e\\u0073c-{suffix}"), "status": "accepted"})
        );
        assert_eq!(
            r[1],
            json!({"id": format!("exp-{suffix}"), "status": "accepted"})
        );
    }
    assert_eq!(b.body["data"]["results"][2]["code"], "invalid_record");
    assert_eq!(a.body["data"]["accepted"], json!(2));
    assert_eq!(b.body["data"]["rejected"], json!(1));
    // The escaped id was stored as read: sent again, it is a duplicate.
    let again = app
        .post("/v1/capacity/usage", t, json!({"records": good("a")}))
        .await;
    assert_eq!(again.body["data"]["duplicates"], json!(2));
}

async fn post_raw(app: &TestApp, token: &str, body: String) -> Answer {
    let res = app
        .client
        .post(format!("{}/v1/capacity/usage", app.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    answer(res).await
}

#[tokio::test]
async fn usage_scope_is_checked_before_the_body_is_read() {
    let app = spawn_app().await;
    let a = post_raw(&app, &app.tokens.org_write, "{not json".to_owned()).await;
    assert_problem(&a, 403, "forbidden");
}

#[tokio::test]
async fn a_batch_over_1000_records_is_refused_before_the_rest_is_read() {
    let app = spawn_app().await;
    let record = r#"{"id":"r","allocation_id":"ALLOC-26-000441","quantity":1,"occurred_at":"2026-04-14T10:00:00Z"}"#;
    // 1001 records, then a tail that is not JSON: only a reader that stops at
    // the 1001st record can tell the batch is too large.
    let body = format!("{{\"records\":[{}, garbage", vec![record; 1001].join(","));
    let a = post_raw(&app, &app.tokens.platform, body).await;
    assert_problem(&a, 422, "validation_failed");
    assert_eq!(a.body["errors"][0]["field"], "records");
}
