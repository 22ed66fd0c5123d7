//! SPEC §7: every error is problem+json; no input gets a 5xx.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(format!("{}/v1/capacity/allocations", app.base))
        .bearer_auth(&app.tokens.platform)
        .header("content-type", "application/json")
        .body("{\"capacity_pool_id\": ")
        .send()
        .await
        .unwrap();
    assert_problem(&answer(res).await, 400, "malformed_request");
}

#[tokio::test]
async fn unknown_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-000001", "committed": 1, "colour": "red"});
    let a = app
        .post("/v1/capacity/allocations", &app.tokens.platform, body)
        .await;
    assert_problem(&a, 422, "validation_failed");
    assert_eq!(a.body["errors"][0]["field"], "colour");
}

#[tokio::test]
async fn bad_quantities_are_422_naming_the_field() {
    let app = spawn_app().await;
    for bad in [
        json!(1.0001),
        json!(-1),
        json!("NaN"),
        json!(1e13),
        json!("12abc"),
        json!(true),
    ] {
        let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-000001", "committed": bad});
        let a = app
            .post("/v1/capacity/allocations", &app.tokens.platform, body)
            .await;
        assert_problem(&a, 422, "validation_failed");
        assert_eq!(a.body["errors"][0]["field"], "committed", "{bad}");
    }
    let pool = app
        .get("/v1/capacity/CAP-26-000112", &app.tokens.platform)
        .await;
    assert_eq!(
        pool.body["data"]["allocated"],
        json!(160),
        "nothing changed"
    );
}

#[tokio::test]
async fn missing_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let a = app
        .post(
            "/v1/capacity/allocations",
            &app.tokens.platform,
            json!({"service_line_id": "LIN-26-000001", "committed": 1}),
        )
        .await;
    assert_problem(&a, 422, "validation_failed");
    assert_eq!(a.body["errors"][0]["field"], "capacity_pool_id");
}

#[tokio::test]
async fn nested_errors_name_the_path() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-000001", "committed": 1,
        "resources": [{"type": "talent", "id": "SCR-128491", "committed_hours_per_week": -4}]});
    let a = app
        .post("/v1/capacity/allocations", &app.tokens.platform, body)
        .await;
    assert_problem(&a, 422, "validation_failed");
    assert_eq!(
        a.body["errors"][0]["field"],
        "resources[0].committed_hours_per_week"
    );
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-000001", "committed": 1,
        "resources": [{"type": "talent", "id": "not-a-talent"}]});
    let a = app
        .post("/v1/capacity/allocations", &app.tokens.platform, body)
        .await;
    assert_eq!(a.body["errors"][0]["field"], "resources[0].id");
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_413() {
    let app = spawn_app().await;
    let big = format!("{{\"note\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let res = app
        .client
        .post(format!("{}/v1/capacity/allocations", app.base))
        .bearer_auth(&app.tokens.platform)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(&answer(res).await, 413, "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = spawn_app().await;
    assert_problem(
        &app.get("/v1/nothing-here", &app.tokens.platform).await,
        404,
        "not_found",
    );
    assert_problem(
        &app.send("DELETE", "/v1/capacity", Some(&app.tokens.platform), None)
            .await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn bad_query_parameters_are_422_naming_them() {
    let app = spawn_app().await;
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("cursor=zzz", "cursor"),
        ("workspace_id=nope", "workspace_id"),
        ("resource_type=gold", "resource_type"),
        ("colour=red", "colour"),
    ] {
        let a = app
            .get(&format!("/v1/capacity?{q}"), &app.tokens.platform)
            .await;
        assert_problem(&a, 422, "validation_failed");
        assert_eq!(a.body["errors"][0]["field"], field, "{q}");
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_minted() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert!(res.headers()["x-request-id"].len() >= 16);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn hostile_inputs_never_get_a_5xx() {
    let app = spawn_app().await;
    let paths = [
        "/v1/capacity/%00",
        "/v1/capacity/%ff%fe",
        "/v1/capacity/CAP-26-000112/adjustments?limit=-1",
        "/v1/capacity/allocations/ALLOC-99-99999999999999999999",
        "/v1/events/EVT-26-000001'--",
        "/v1/capacity?workspace_id=WS-26-000021&workspace_id=WS-26-000022",
        "/v1/events?created_after=yesterday",
    ];
    for p in paths {
        let a = app.get(p, &app.tokens.platform).await;
        assert!(a.status < 500, "{p} → {}", a.status);
    }
    let bodies = [
        "[]",
        "null",
        "1",
        "\"x\"",
        "{}",
        "{\"committed\": {}}",
        "{\"capacity_pool_id\": null}",
        "{} {}",
    ];
    for b in bodies {
        let res = app
            .client
            .post(format!("{}/v1/capacity/allocations", app.base))
            .bearer_auth(&app.tokens.platform)
            .header("content-type", "application/json")
            .body(b)
            .send()
            .await
            .unwrap();
        let a = answer(res).await;
        assert!(
            a.status == 400 || a.status == 422,
            "{b} → {} {}",
            a.status,
            a.body
        );
    }
}

#[tokio::test]
async fn the_dashboard_is_a_self_contained_page() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = res.text().await.unwrap();
    assert!(html.contains("Capacity dashboard") && html.contains("/v1/capacity/demand"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
}
