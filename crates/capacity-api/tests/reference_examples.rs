//! The pool and allocation examples of `reference-examples.md`, answered on
//! the seed dataset with the clock pinned.

mod common;
use common::*;
use serde_json::json;

fn talent_pool() -> serde_json::Value {
    json!({
        "id": "CAP-26-000112", "workspace_id": "WS-26-000021", "organization_id": "ORG-26-090500",
        "resource_type": "talent_hours", "total": 200, "allocated": 160, "available": 40,
        "unit": "hours_per_week", "period": "weekly", "updated_at": "2026-04-15T06:00:00Z"
    })
}

fn allocation_441() -> serde_json::Value {
    json!({
        "id": "ALLOC-26-000441", "capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-084729",
        "resource_type": "talent_hours", "committed_per_week": 40, "actual_last_week": 38.5,
        "utilisation_percent": 96.3, "status": "active",
        "resources": [{ "type": "talent", "id": "SCR-128491", "role": "senior_backend_engineer", "committed_hours_per_week": 40 }],
        "started_at": "2026-01-15T00:00:00Z", "ends_at": null
    })
}

#[tokio::test]
async fn list_pools_of_the_seed_workspace() {
    let app = spawn_app().await;
    let a = app
        .get(
            "/v1/capacity?workspace_id=WS-26-000021",
            &app.tokens.platform,
        )
        .await;
    assert_eq!(a.status, 200);
    let expected = json!({
        "data": [talent_pool(), {
            "id": "CAP-26-000198", "workspace_id": "WS-26-000021", "organization_id": "ORG-26-090500",
            "resource_type": "agent_credits", "total": 100000, "allocated": 45000, "available": 55000,
            "unit": "credits", "period": "monthly", "updated_at": "2026-04-15T06:00:00Z"
        }],
        "meta": { "has_more": false }
    });
    assert_subset(&a.body, &expected, "");
    assert_eq!(a.body["meta"]["cursor"], serde_json::Value::Null);
}

#[tokio::test]
async fn list_pools_filtered_by_resource_type_answers_the_talent_pool_alone() {
    let app = spawn_app().await;
    let a = app
        .get(
            "/v1/capacity?workspace_id=WS-26-000021&resource_type=talent_hours",
            &app.tokens.org_read,
        )
        .await;
    assert_eq!(a.status, 200);
    assert_subset(
        &a.body,
        &json!({ "data": [talent_pool()], "meta": { "has_more": false } }),
        "",
    );
}

#[tokio::test]
async fn list_active_allocations_holds_the_reference_allocation() {
    let app = spawn_app().await;
    let a = app
        .get(
            "/v1/capacity/allocations?workspace_id=WS-26-000021&status=active",
            &app.tokens.org_read,
        )
        .await;
    assert_eq!(a.status, 200);
    let found = a.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "ALLOC-26-000441")
        .expect("listed");
    assert_subset(found, &allocation_441(), "allocation");
    assert!(
        a.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["status"] == "active")
    );
    // "at least one other allocation runs below 70 %"
    assert!(
        a.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["utilisation_percent"].as_f64().is_some_and(|p| p < 70.0))
    );
}

#[tokio::test]
async fn get_allocation_answers_the_same_object() {
    let app = spawn_app().await;
    let a = app
        .get(
            "/v1/capacity/allocations/ALLOC-26-000441",
            &app.tokens.platform,
        )
        .await;
    assert_eq!(a.status, 200);
    assert_subset(&a.body["data"], &allocation_441(), "allocation");
    assert!(a.headers.get("etag").is_some());
}

#[tokio::test]
async fn monthly_pool_allocations_show_committed_per_week_rounded_for_display() {
    let app = spawn_app().await;
    let a = app
        .get(
            "/v1/capacity/allocations/ALLOC-26-000444",
            &app.tokens.platform,
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["committed"], json!(45000));
    assert_eq!(a.body["data"]["committed_per_week"], json!(10384.615));
}
