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
    let owner = token_id(&app, &app.tokens.platform).await;
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

async fn token_id(app: &TestApp, secret: &str) -> String {
    app.store
        .authenticate(capacity_api::auth::hash_secret(secret))
        .await
        .unwrap()
        .unwrap()
        .token_id
}

fn fingerprint(path: &str, body: &serde_json::Value) -> [u8; 32] {
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut h, format!("POST\0{path}\0").as_bytes());
    sha2::Digest::update(&mut h, body.to_string().as_bytes());
    sha2::Digest::finalize(h).into()
}

#[tokio::test]
async fn an_unauthenticated_request_never_reaches_the_key_store() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 5});
    // Under the old owner (a hash of the header as sent) this key is in
    // flight: a layer that looked it up before authenticating would say 409.
    let auth = "Bearer cap_garbage";
    let owner = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(auth.as_bytes()))
    };
    let fp = fingerprint("/v1/capacity/allocations", &body);
    app.store
        .idempotency_reserve(&owner, "k", fp, at(NOW))
        .await
        .unwrap();
    let a = post_with_key(&app, "cap_garbage", "k", &body).await;
    assert_problem(&a, 401, "unauthorized");
    // A read token is refused before its key is reserved, too.
    let a = post_with_key(&app, &app.tokens.org_read, "k", &body).await;
    assert_problem(&a, 403, "forbidden");
    let owner = token_id(&app, &app.tokens.org_read).await;
    assert_eq!(
        app.store
            .idempotency_reserve(&owner, "k", fp, at(NOW))
            .await
            .unwrap(),
        capacity_store::IdempotencyReservation::Reserved,
        "the read token's key was never taken"
    );
}

#[tokio::test]
async fn keys_belong_to_the_token_however_its_header_is_spelled() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 5});
    let send = |auth: String| {
        app.client
            .post(format!("{}/v1/capacity/allocations", app.base))
            .header("authorization", auth)
            .header("idempotency-key", "spelled")
            .json(&body)
            .send()
    };
    let first = answer(
        send(format!("Bearer {}", app.tokens.platform))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(first.status, 201);
    let again = answer(
        send(format!("bearer  {}", app.tokens.platform))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body);
}

#[tokio::test]
async fn a_revoked_token_cannot_replay_its_answers() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 5});
    let first = post_with_key(&app, &app.tokens.platform, "secret", &body).await;
    assert_eq!(first.status, 201);
    let id = token_id(&app, &app.tokens.platform).await;
    assert!(app.store.revoke_token(&id, at(NOW)).await.unwrap());
    app.token_cache.clear();
    let again = post_with_key(&app, &app.tokens.platform, "secret", &body).await;
    assert_problem(&again, 401, "unauthorized");
}

#[tokio::test]
async fn a_key_left_in_flight_by_a_crash_is_released_when_a_server_starts() {
    let app = spawn_app().await;
    let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 5});
    // Reserved an hour ago by a process that then died (under the token's
    // id, and under the hash of its header as servers before 0013 kept it).
    let hour_ago = at(NOW).plus_micros(-3_600_000_000);
    let old_owner = {
        use sha2::Digest;
        let auth = format!("Bearer {}", app.tokens.platform);
        hex::encode(sha2::Sha256::digest(auth.as_bytes()))
    };
    for owner in [token_id(&app, &app.tokens.platform).await, old_owner] {
        app.store
            .idempotency_reserve(
                &owner,
                "crashed",
                fingerprint("/v1/capacity/allocations", &body),
                hour_ago,
            )
            .await
            .unwrap();
    }
    let base = app.start_another_server().await;
    let res = app
        .client
        .post(format!("{base}/v1/capacity/allocations"))
        .bearer_auth(&app.tokens.platform)
        .header("idempotency-key", "crashed")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer(res).await.status, 201);
}
