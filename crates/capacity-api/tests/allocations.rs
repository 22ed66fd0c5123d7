//! Creating allocations: the no-overcommit rule, service lines, concurrency.

mod common;
use common::*;
use serde_json::json;

fn alloc(pool: &str, line: &str, committed: serde_json::Value) -> serde_json::Value {
    json!({"capacity_pool_id": pool, "service_line_id": line, "committed_per_week": committed})
}

#[tokio::test]
async fn creating_an_allocation_commits_supply() {
    let app = spawn_app().await;
    app.activate_line("LIN-26-090001").await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 12.25,
        "resources": [{"type": "talent", "id": "SCR-200001", "role": "sre", "committed_hours_per_week": 12.25}]});
    let a = app
        .post("/v1/capacity/allocations", &app.tokens.org_write, body)
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let d = &a.body["data"];
    assert!(d["id"].as_str().unwrap().starts_with("ALLOC-26-"));
    assert_eq!(d["committed_per_week"], json!(12.25));
    assert_eq!(d["started_at"], NOW);
    assert_eq!(d["utilisation_percent"], serde_json::Value::Null);
    assert_eq!(d["workspace_id"], WS);
    assert_eq!(d["orphaned"], json!(false));
    assert!(a.headers.get("etag").is_some());
    let pool = app
        .get("/v1/capacity/CAP-26-000112", &app.tokens.platform)
        .await;
    assert_eq!(pool.body["data"]["allocated"], json!(172.25));
    assert_eq!(pool.body["data"]["available"], json!(27.75));
    let events = app
        .get(
            "/v1/events?type=capacity.allocation.created",
            &app.tokens.org_read,
        )
        .await;
    assert!(
        events.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["data"]["object"]["id"] == d["id"])
    );
}

#[tokio::test]
async fn an_allocation_that_would_overcommit_is_409_naming_when_and_by_how_much() {
    let app = spawn_app().await;
    let a = app
        .post(
            "/v1/capacity/allocations",
            &app.tokens.platform,
            alloc("CAP-26-000112", "LIN-26-090001", json!(40.5)),
        )
        .await;
    assert_problem(&a, 409, "insufficient_capacity");
    assert_eq!(a.body["first_violation_at"], NOW);
    assert_eq!(a.body["shortfall"], json!(0.5));
    let pool = app
        .get("/v1/capacity/CAP-26-000112", &app.tokens.platform)
        .await;
    assert_eq!(pool.body["data"]["allocated"], json!(160));
    // Exactly what is left fits.
    let a = app
        .post(
            "/v1/capacity/allocations",
            &app.tokens.platform,
            alloc("CAP-26-000112", "LIN-26-090001", json!(40)),
        )
        .await;
    assert_eq!(a.status, 201);
}

#[tokio::test]
async fn a_scheduled_supply_cut_limits_allocations_from_then_on() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let cut = json!({"delta": -30, "reason": "contract ends", "source": "talent_offboarded", "effective_at": "2026-06-01T00:00:00Z"});
    assert_eq!(
        app.post("/v1/capacity/CAP-26-000112/adjustments", t, cut)
            .await
            .status,
        201
    );
    let a = app
        .post(
            "/v1/capacity/allocations",
            t,
            alloc("CAP-26-000112", "LIN-26-090001", json!(20)),
        )
        .await;
    assert_problem(&a, 409, "insufficient_capacity");
    assert_eq!(a.body["first_violation_at"], "2026-06-01T00:00:00Z");
    assert_eq!(a.body["shortfall"], json!(10));
    // Ending before the cut fits.
    let mut ok = alloc("CAP-26-000112", "LIN-26-090001", json!(20));
    ok["ends_at"] = json!("2026-06-01T00:00:00Z");
    assert_eq!(
        app.post("/v1/capacity/allocations", t, ok).await.status,
        201
    );
}

#[tokio::test]
async fn monthly_pools_take_committed_per_week_converted_to_the_month() {
    let app = spawn_app().await;
    let a = app
        .post(
            "/v1/capacity/allocations",
            &app.tokens.platform,
            alloc("CAP-26-000198", "LIN-26-090002", json!(1000)),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["data"]["committed"], json!(4333.333));
    assert_eq!(a.body["data"]["committed_per_week"], json!(1000));
}

#[tokio::test]
async fn committed_and_committed_per_week_are_exclusive() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed": 1, "committed_per_week": 1});
    assert_problem(
        &app.post("/v1/capacity/allocations", &app.tokens.platform, body)
            .await,
        422,
        "validation_failed",
    );
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001"});
    assert_problem(
        &app.post("/v1/capacity/allocations", &app.tokens.platform, body)
            .await,
        422,
        "validation_failed",
    );
}

#[tokio::test]
async fn backfilled_allocations_are_judged_from_now_on() {
    let app = spawn_app().await;
    let mut body = alloc("CAP-26-000112", "LIN-26-090001", json!(10));
    body["starts_at"] = json!("2026-02-01T00:00:00Z");
    let a = app
        .post("/v1/capacity/allocations", &app.tokens.platform, body)
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["data"]["started_at"], "2026-02-01T00:00:00Z");
    let mut past_end = alloc("CAP-26-000112", "LIN-26-090003", json!(1));
    past_end["ends_at"] = json!("2026-04-01T00:00:00Z");
    let a = app
        .post("/v1/capacity/allocations", &app.tokens.platform, past_end)
        .await;
    assert_problem(&a, 422, "validation_failed");
    assert_eq!(a.body["errors"][0]["field"], "ends_at");
}

#[tokio::test]
async fn a_service_line_of_another_workspace_is_refused() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let pool = json!({"workspace_id": "WS-26-000022", "organization_id": ORG, "resource_type": "talent_hours", "total": 100});
    let p = app.post("/v1/capacity", t, pool).await;
    let other_pool = p.body["data"]["id"].as_str().unwrap().to_owned();
    let a = app
        .post(
            "/v1/capacity/allocations",
            t,
            alloc(&other_pool, "LIN-26-084729", json!(1)),
        )
        .await;
    assert_problem(&a, 409, "service_line_workspace_mismatch");
}

#[tokio::test]
async fn filters_select_allocations() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let by_line = app
        .get("/v1/capacity/allocations?service_line_id=LIN-26-084729", t)
        .await;
    assert_eq!(by_line.body["data"].as_array().unwrap().len(), 1);
    let by_type = app
        .get("/v1/capacity/allocations?resource_type=agent_credits", t)
        .await;
    assert_eq!(by_type.body["data"][0]["id"], "ALLOC-26-000444");
    let by_pool = app
        .get("/v1/capacity/allocations?capacity_pool_id=CAP-26-000112", t)
        .await;
    assert_eq!(by_pool.body["data"].as_array().unwrap().len(), 3);
    let closed = app.get("/v1/capacity/allocations?status=closed", t).await;
    assert_eq!(closed.body["data"], json!([]));
    let orphaned = app.get("/v1/capacity/allocations?orphaned=true", t).await;
    assert_eq!(orphaned.body["data"], json!([]));
}

/// 60 concurrent 1-unit creates on a pool with 10 available: exactly 10 win.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_overcommit() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let pool = json!({"workspace_id": "WS-26-000030", "organization_id": ORG, "resource_type": "compute", "total": 10});
    let p = app.post("/v1/capacity", t, pool).await;
    let pool_id = p.body["data"]["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (client, url, token) = (
            app.client.clone(),
            format!("{}/v1/capacity/allocations", app.base),
            t.clone(),
        );
        let body = json!({"capacity_pool_id": pool_id, "service_line_id": format!("LIN-26-5{i:05}"), "committed": 1});
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 10);
    assert_eq!(statuses.iter().filter(|&&s| s == 409).count(), 50);
    let pool = app.get(&format!("/v1/capacity/{pool_id}"), t).await;
    assert_eq!(pool.body["data"]["allocated"], json!(10));
    assert_eq!(pool.body["data"]["available"], json!(0));
}
