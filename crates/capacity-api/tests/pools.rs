//! Pools and the supply ledger.

mod common;
use common::*;
use serde_json::json;

fn new_pool(ws: &str, rt: &str, total: serde_json::Value) -> serde_json::Value {
    json!({"workspace_id": ws, "organization_id": ORG, "resource_type": rt, "total": total})
}

#[tokio::test]
async fn creating_a_pool_mints_an_id_and_defaults_the_period() {
    let app = spawn_app().await;
    let a = app
        .post(
            "/v1/capacity",
            &app.tokens.platform,
            new_pool("WS-26-000022", "compute", json!(512.5)),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let p = &a.body["data"];
    assert!(p["id"].as_str().unwrap().starts_with("CAP-26-"));
    assert_eq!(p["period"], "monthly");
    assert_eq!(p["unit"], "vcpu_hours");
    assert_eq!(p["total"], json!(512.5));
    assert_eq!(p["available"], json!(512.5));
    assert_eq!(p["overcommit_ratio"], json!(1));
    assert_eq!(
        a.headers["location"].to_str().unwrap(),
        format!("/v1/capacity/{}", p["id"].as_str().unwrap())
    );
    let id = p["id"].as_str().unwrap();
    let got = app
        .get(&format!("/v1/capacity/{id}"), &app.tokens.org_read)
        .await;
    assert_eq!(got.body["data"], a.body["data"]);
    let events = app
        .get(
            "/v1/events?type=capacity.pool.created",
            &app.tokens.platform,
        )
        .await;
    assert!(
        events.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["data"]["object"]["id"] == id)
    );
}

#[tokio::test]
async fn a_workspace_holds_one_pool_per_resource_type() {
    let app = spawn_app().await;
    let a = app
        .post(
            "/v1/capacity",
            &app.tokens.platform,
            new_pool(WS, "talent_hours", json!(10)),
        )
        .await;
    assert_problem(&a, 409, "pool_exists");
}

#[tokio::test]
async fn a_workspace_belongs_to_one_organization() {
    let app = spawn_app().await;
    let body = json!({"workspace_id": WS, "organization_id": OTHER_ORG, "resource_type": "compute", "total": 1});
    let a = app.post("/v1/capacity", &app.tokens.platform, body).await;
    assert_problem(&a, 409, "workspace_organization_mismatch");
}

#[tokio::test]
async fn pool_input_is_validated() {
    let app = spawn_app().await;
    let cases = [
        (new_pool("WS-26-000022", "gold", json!(1)), "resource_type"),
        (new_pool("WS-26-000022", "compute", json!(-1)), "total"),
        (new_pool("bad", "compute", json!(1)), "workspace_id"),
        (
            json!({"workspace_id": "WS-26-000022", "organization_id": ORG, "resource_type": "compute", "total": 1, "overcommit_ratio": 0}),
            "overcommit_ratio",
        ),
        (
            json!({"workspace_id": "WS-26-000022", "organization_id": ORG, "resource_type": "compute", "total": 1, "period": "yearly"}),
            "period",
        ),
        (
            json!({"workspace_id": "WS-26-000022", "organization_id": ORG, "resource_type": "compute", "total": 1, "unit_price": {"amount": "x", "currency": "USD"}}),
            "unit_price.amount",
        ),
    ];
    for (body, field) in cases {
        let a = app.post("/v1/capacity", &app.tokens.platform, body).await;
        assert_problem(&a, 422, "validation_failed");
        assert_eq!(a.body["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn pagination_walks_every_pool_once() {
    let app = spawn_app().await;
    for i in 0..5 {
        let ws = format!("WS-26-10000{i}");
        assert_eq!(
            app.post(
                "/v1/capacity",
                &app.tokens.platform,
                new_pool(&ws, "compute", json!(1))
            )
            .await
            .status,
            201
        );
    }
    let mut seen = Vec::new();
    let mut path = "/v1/capacity?limit=3".to_owned();
    loop {
        let a = app.get(&path, &app.tokens.platform).await;
        assert_eq!(a.status, 200);
        seen.extend(
            a.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned()),
        );
        if a.body["meta"]["has_more"] == json!(false) {
            assert_eq!(a.body["meta"]["cursor"], serde_json::Value::Null);
            break;
        }
        path = format!(
            "/v1/capacity?limit=3&cursor={}",
            a.body["meta"]["cursor"].as_str().unwrap()
        );
    }
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted, seen);
}

#[tokio::test]
async fn supply_adjustments_are_ledgered_and_can_be_scheduled() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let a = app
        .post("/v1/capacity/CAP-26-000112/adjustments", t, json!({"delta": 40, "reason": "two engineers onboarded", "source": "talent_onboarded", "effective_at": "2026-05-01T00:00:00Z"}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        a.body["data"]["pool"]["total"],
        json!(200),
        "future supply is not in today's total"
    );
    let now = app
        .post(
            "/v1/capacity/CAP-26-000112/adjustments",
            t,
            json!({"delta": -0.5, "reason": "rounding", "source": "correction"}),
        )
        .await;
    assert_eq!(now.body["data"]["pool"]["total"], json!(199.5));
    assert_eq!(now.body["data"]["pool"]["available"], json!(39.5));
    let ledger = app
        .get(
            "/v1/capacity/CAP-26-000112/adjustments",
            &app.tokens.org_read,
        )
        .await;
    let entries = ledger.body["data"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["source"], "initial");
    assert_eq!(entries[1]["effective_at"], "2026-05-01T00:00:00Z");
    assert_eq!(entries[2]["delta"], json!(-0.5));
    // Once the clock passes the effective instant, the total includes it.
    app.clock.set(at("2026-05-01T00:00:00Z"));
    let pool = app.get("/v1/capacity/CAP-26-000112", t).await;
    assert_eq!(pool.body["data"]["total"], json!(239.5));
}

#[tokio::test]
async fn adjustments_in_the_past_or_below_zero_are_refused() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let a = app.post("/v1/capacity/CAP-26-000112/adjustments", t, json!({"delta": 1, "reason": "x", "source": "correction", "effective_at": "2026-01-01T00:00:00Z"})).await;
    assert_problem(&a, 422, "validation_failed");
    assert_eq!(a.body["errors"][0]["field"], "effective_at");
    let a = app
        .post(
            "/v1/capacity/CAP-26-000112/adjustments",
            t,
            json!({"delta": -201, "reason": "x", "source": "talent_offboarded"}),
        )
        .await;
    assert_problem(&a, 422, "validation_failed");
    assert_eq!(a.body["errors"][0]["field"], "delta");
}

#[tokio::test]
async fn a_reduction_that_overcommits_is_accepted_and_announced() {
    let app = spawn_app().await;
    let t = &app.tokens.platform;
    let a = app
        .post(
            "/v1/capacity/CAP-26-000112/adjustments",
            t,
            json!({"delta": -60, "reason": "offboarding", "source": "talent_offboarded"}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["data"]["pool"]["available"], json!(-20));
    let events = app
        .get("/v1/events?type=capacity.pool_overcommitted", t)
        .await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 1);
}
