//! Service-line lifecycle signals and orphaned allocations.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn closing_a_line_orphans_its_open_allocations() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let a = app
        .send(
            "PUT",
            "/v1/service-lines/LIN-26-084729",
            Some(t),
            Some(json!({"workspace_id": WS, "status": "closed"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["status"], "closed");
    assert_eq!(a.body["data"]["allocations"][0]["orphaned"], json!(true));
    let orphaned = app
        .get(
            "/v1/capacity/allocations?orphaned=true",
            &app.tokens.org_read,
        )
        .await;
    let list = orphaned.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], "ALLOC-26-000441");
    // Orphaned allocations still count against supply.
    let pool = app.get("/v1/capacity/CAP-26-000112", t).await;
    assert_eq!(pool.body["data"]["allocated"], json!(160));
    let events = app
        .get("/v1/events?type=capacity.allocation_orphaned", t)
        .await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 1);
    // Closing the orphan ends it.
    app.patch(
        "/v1/capacity/allocations/ALLOC-26-000441",
        t,
        json!({"status": "closed"}),
    )
    .await;
    let orphaned = app.get("/v1/capacity/allocations?orphaned=true", t).await;
    assert_eq!(orphaned.body["data"], json!([]));
}

#[tokio::test]
async fn closing_with_close_allocations_closes_them_and_releases_supply() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let body = json!({"workspace_id": WS, "status": "closed", "close_allocations": true});
    let a = app
        .send(
            "PUT",
            "/v1/service-lines/LIN-26-084729",
            Some(t),
            Some(body),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["allocations"][0]["status"], "closed");
    assert_eq!(a.body["data"]["allocations"][0]["orphaned"], json!(false));
    let pool = app.get("/v1/capacity/CAP-26-000112", t).await;
    assert_eq!(pool.body["data"]["allocated"], json!(120));
}

#[tokio::test]
async fn lines_are_registered_and_read_within_the_tenant() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let a = app
        .send(
            "PUT",
            "/v1/service-lines/LIN-26-090009",
            Some(t),
            Some(json!({"workspace_id": WS, "status": "active"})),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["organization_id"], ORG);
    assert_eq!(a.body["data"]["allocations"], json!([]));
    let got = app
        .get("/v1/service-lines/LIN-26-084729", &app.tokens.org_read)
        .await;
    assert_eq!(got.body["data"]["allocations"][0]["id"], "ALLOC-26-000441");
    assert_problem(
        &app.get("/v1/service-lines/LIN-26-084729", &app.tokens.other_org)
            .await,
        404,
        "not_found",
    );
    let other_ws = app
        .send(
            "PUT",
            "/v1/service-lines/LIN-26-084729",
            Some(t),
            Some(json!({"workspace_id": "WS-26-000022", "status": "active"})),
        )
        .await;
    assert_problem(&other_ws, 409, "service_line_workspace_mismatch");
    let unknown_ws = app
        .send(
            "PUT",
            "/v1/service-lines/LIN-26-090010",
            Some(t),
            Some(json!({"workspace_id": "WS-26-000555", "status": "active"})),
        )
        .await;
    assert_problem(&unknown_ws, 422, "validation_failed");
    let org_token = app
        .send(
            "PUT",
            "/v1/service-lines/LIN-26-090010",
            Some(&app.tokens.org_write),
            Some(json!({"workspace_id": WS, "status": "active"})),
        )
        .await;
    assert_problem(&org_token, 403, "forbidden");
}

#[tokio::test]
async fn allocations_on_a_closed_line_are_refused() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    app.send(
        "PUT",
        "/v1/service-lines/LIN-26-090011",
        Some(t),
        Some(json!({"workspace_id": WS, "status": "closed"})),
    )
    .await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090011", "committed": 1});
    assert_problem(
        &app.post("/v1/capacity/allocations", t, body).await,
        409,
        "service_line_closed",
    );
}

#[tokio::test]
async fn a_lines_allocations_are_paged_by_cursor() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    for _ in 0..2 {
        let made = app
            .post(
                "/v1/capacity/allocations",
                t,
                json!({"capacity_pool_id": "CAP-26-000112",
                       "service_line_id": "LIN-26-084729", "committed_per_week": 1}),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.body);
    }
    let whole = app.get("/v1/service-lines/LIN-26-084729", t).await;
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert_eq!(whole.body["meta"]["has_more"], json!(false));
    let all = whole.body["data"]["allocations"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(all.len(), 3);
    let first = app.get("/v1/service-lines/LIN-26-084729?limit=2", t).await;
    assert_eq!(first.body["meta"]["has_more"], json!(true));
    assert_eq!(first.body["data"]["status"], whole.body["data"]["status"]);
    let cursor = first.body["meta"]["cursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/v1/service-lines/LIN-26-084729?limit=2&cursor={cursor}"),
            t,
        )
        .await;
    assert_eq!(rest.body["meta"]["has_more"], json!(false));
    let mut paged = first.body["data"]["allocations"]
        .as_array()
        .unwrap()
        .clone();
    paged.extend(
        rest.body["data"]["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .cloned(),
    );
    assert_eq!(paged, all);
    assert_problem(
        &app.get("/v1/service-lines/LIN-26-084729?limit=0", t).await,
        422,
        "validation_failed",
    );
}
