//! SPEC §6: tokens, scopes and tenant isolation.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn missing_token_is_401_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let a = app.send("GET", "/v1/capacity", None, None).await;
    assert_problem(&a, 401, "unauthorized");
    assert_eq!(a.headers["www-authenticate"].to_str().unwrap(), "Bearer");
}

#[tokio::test]
async fn unknown_or_malformed_token_is_401() {
    let app = spawn_app().await;
    for bad in ["cap_notarealtoken", "nonsense", "cap_", ""] {
        let a = app.send("GET", "/v1/capacity", Some(bad), None).await;
        assert_problem(&a, 401, "unauthorized");
        assert!(
            a.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    let res = app
        .client
        .get(format!("{}/v1/capacity", app.base))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn revoked_token_is_401() {
    let app = spawn_app().await;
    let tokens = app.store.list_tokens().await.unwrap();
    let platform_read = &tokens[1];
    assert!(
        app.store
            .revoke_token(&platform_read.id, at(NOW))
            .await
            .unwrap()
    );
    let a = app.get("/v1/capacity", &app.tokens.platform_read).await;
    assert_problem(&a, 401, "unauthorized");
}

#[tokio::test]
async fn another_organizations_objects_answer_404_as_if_missing() {
    let app = spawn_app().await;
    let t = &app.tokens.other_org;
    let pool = app.get("/v1/capacity/CAP-26-000112", t).await;
    let missing = app.get("/v1/capacity/CAP-26-999999", t).await;
    assert_problem(&pool, 404, "not_found");
    assert_eq!(pool.body, missing.body);
    assert_problem(
        &app.get("/v1/capacity/allocations/ALLOC-26-000441", t).await,
        404,
        "not_found",
    );
    assert_problem(
        &app.get("/v1/capacity/CAP-26-000112/adjustments", t).await,
        404,
        "not_found",
    );
    let list = app.get("/v1/capacity?workspace_id=WS-26-000021", t).await;
    assert_eq!(list.body["data"], json!([]));
    let list = app.get("/v1/capacity/allocations", t).await;
    assert_eq!(list.body["data"], json!([]));
    let events = app.get("/v1/events", t).await;
    assert_eq!(events.body["data"], json!([]));
    // Writing through another organization's pool is 404 too.
    let a = app
        .post("/v1/capacity/allocations", t, json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-000001", "committed": 1}))
        .await;
    assert_problem(&a, 404, "not_found");
}

#[tokio::test]
async fn a_token_narrowed_to_other_workspaces_sees_nothing_here() {
    let app = spawn_app().await;
    let t = &app.tokens.org_other_workspace;
    assert_problem(
        &app.get("/v1/capacity/CAP-26-000112", t).await,
        404,
        "not_found",
    );
    assert_eq!(app.get("/v1/capacity", t).await.body["data"], json!([]));
    assert_eq!(
        app.get("/v1/capacity/allocations", t).await.body["data"],
        json!([])
    );
}

#[tokio::test]
async fn organization_tokens_see_their_own_organization() {
    let app = spawn_app().await;
    let a = app.get("/v1/capacity", &app.tokens.org_read).await;
    assert_eq!(a.body["data"].as_array().unwrap().len(), 2);
    let a = app
        .get(
            "/v1/capacity/allocations/ALLOC-26-000441",
            &app.tokens.org_read,
        )
        .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn read_scope_cannot_write() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-000001", "committed": 1});
    assert_problem(
        &app.post(
            "/v1/capacity/allocations",
            &app.tokens.org_read,
            body.clone(),
        )
        .await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.post("/v1/capacity/allocations", &app.tokens.platform_read, body)
            .await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn only_platform_tokens_create_pools_adjust_supply_and_meter_usage() {
    let app = spawn_app().await;
    let t = &app.tokens.org_write;
    let pool = json!({"workspace_id": "WS-26-000021", "organization_id": ORG, "resource_type": "compute", "total": 10});
    assert_problem(&app.post("/v1/capacity", t, pool).await, 403, "forbidden");
    let adj = json!({"delta": 10, "reason": "more", "source": "correction"});
    assert_problem(
        &app.post("/v1/capacity/CAP-26-000112/adjustments", t, adj)
            .await,
        403,
        "forbidden",
    );
    let usage = json!({"records": [{"id": "u1", "allocation_id": "ALLOC-26-000441", "quantity": 1, "occurred_at": NOW}]});
    assert_problem(
        &app.post("/v1/capacity/usage", t, usage).await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn organization_filter_is_for_platform_tokens_only() {
    let app = spawn_app().await;
    let a = app
        .get(
            "/v1/capacity?organization_id=ORG-26-090500",
            &app.tokens.platform,
        )
        .await;
    assert_eq!(a.body["data"].as_array().unwrap().len(), 2);
    let a = app
        .get(
            "/v1/capacity?organization_id=ORG-26-090500",
            &app.tokens.org_read,
        )
        .await;
    assert_problem(&a, 422, "validation_failed");
    assert_eq!(a.body["errors"][0]["field"], "organization_id");
}
