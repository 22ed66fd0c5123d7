//! `/v1/events`: listing with filters, and single events.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn events_are_listed_by_type_and_time_and_read_one_by_one() {
    let app = spawn_app().await;
    let all = app.get("/v1/events?limit=100", &app.tokens.org_read).await;
    let list = all.body["data"].as_array().unwrap();
    assert!(list.iter().any(|e| e["type"] == "capacity.pool.created"));
    assert!(
        list.iter()
            .any(|e| e["type"] == "capacity.allocation.created")
    );
    let first = &list[0];
    let one = app
        .get(
            &format!("/v1/events/{}", first["id"].as_str().unwrap()),
            &app.tokens.org_read,
        )
        .await;
    assert_eq!(one.body["data"], *first);
    app.clock.set(at("2026-04-15T07:00:00Z"));
    app.patch(
        "/v1/capacity/allocations/ALLOC-26-000442",
        &app.tokens.org_write,
        json!({"status": "paused"}),
    )
    .await;
    let later = app
        .get(
            "/v1/events?created_after=2026-04-15T06:30:00Z",
            &app.tokens.org_read,
        )
        .await;
    let later = later.body["data"].as_array().unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0]["type"], "capacity.allocation.updated");
    assert_eq!(later[0]["created_at"], "2026-04-15T07:00:00Z");
    let bad = app
        .get("/v1/events?type=capacity.nothing", &app.tokens.org_read)
        .await;
    assert_problem(&bad, 422, "validation_failed");
    assert_problem(
        &app.get("/v1/events/EVT-26-000001", &app.tokens.other_org)
            .await,
        404,
        "not_found",
    );
}
