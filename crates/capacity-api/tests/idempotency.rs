//! `Idempotency-Key` on POST and PATCH.

mod common;
use common::*;
use serde_json::json;

async fn post_with_key(app: &TestApp, token: &str, key: &str, body: &serde_json::Value) -> Answer {
    let res = app
        .client
        .post(format!("{}/v1/capacity/allocations", app.base))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    answer(res).await
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_replays_the_first_answer() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 5});
    let first = post_with_key(&app, &app.tokens.platform, "key-1", &body).await;
    assert_eq!(first.status, 201);
    let again = post_with_key(&app, &app.tokens.platform, "key-1", &body).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.headers["location"], first.headers["location"]);
    let pool = app
        .get("/v1/capacity/CAP-26-000112", &app.tokens.platform)
        .await;
    assert_eq!(pool.body["data"]["allocated"], json!(165), "created once");
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 5});
    post_with_key(&app, &app.tokens.platform, "key-2", &body).await;
    let other = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 6});
    let a = post_with_key(&app, &app.tokens.platform, "key-2", &other).await;
    assert_problem(&a, 422, "idempotency_key_reused");
}

#[tokio::test]
async fn errors_are_replayed_too_and_keys_are_per_token() {
    let app = spawn_app().await;
    app.activate_line("LIN-26-090001").await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 500});
    let first = post_with_key(&app, &app.tokens.platform, "key-3", &body).await;
    assert_problem(&first, 409, "insufficient_capacity");
    let again = post_with_key(&app, &app.tokens.platform, "key-3", &body).await;
    assert_eq!(again.body, first.body);
    // Another token's key-3 is its own.
    let small = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 1});
    let mine = post_with_key(&app, &app.tokens.org_write, "key-3", &small).await;
    assert_eq!(mine.status, 201);
}

#[tokio::test]
async fn patch_is_idempotent_too() {
    let app = spawn_app().await;
    let patch = |key: &'static str, v: i64| {
        app.client
            .patch(format!(
                "{}/v1/capacity/allocations/ALLOC-26-000441",
                app.base
            ))
            .bearer_auth(&app.tokens.platform)
            .header("idempotency-key", key)
            .json(&json!({"committed_per_week": v, "effective_immediately": true}))
            .send()
    };
    let first = answer(patch("p-1", 30).await.unwrap()).await;
    assert_eq!(first.status, 200);
    let again = answer(patch("p-1", 30).await.unwrap()).await;
    assert_eq!(again.body, first.body);
    let h = app
        .get(
            "/v1/capacity/allocations/ALLOC-26-000441/history",
            &app.tokens.platform,
        )
        .await;
    assert_eq!(
        h.body["data"].as_array().unwrap().len(),
        2,
        "created + one update"
    );
    assert_problem(
        &answer(patch("p-1", 31).await.unwrap()).await,
        422,
        "idempotency_key_reused",
    );
}

#[tokio::test]
async fn malformed_keys_are_422() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 5});
    let a = post_with_key(&app, &app.tokens.platform, &"k".repeat(300), &body).await;
    assert_problem(&a, 422, "validation_failed");
}

#[tokio::test]
async fn a_duplicate_while_the_first_is_in_flight_is_409() {
    let app = spawn_app().await;
    let auth = format!("Bearer {}", app.tokens.platform);
    let owner = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(auth.as_bytes()))
    };
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 5});
    // The same fingerprint the middleware computes, reserved as if a first request were running.
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut h, b"POST\0/v1/capacity/allocations\0");
    sha2::Digest::update(&mut h, body.to_string().as_bytes());
    let fp: [u8; 32] = sha2::Digest::finalize(h).into();
    let r = app
        .store
        .idempotency_reserve(&owner, "busy", fp, at(NOW))
        .await
        .unwrap();
    assert_eq!(r, capacity_store::IdempotencyReservation::Reserved);
    let a = post_with_key(&app, &app.tokens.platform, "busy", &body).await;
    assert_problem(&a, 409, "idempotency_key_in_use");
}
