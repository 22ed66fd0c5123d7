//! PATCH on the timeline model (SPEC §5 PATCH rules, reference examples).

mod common;
use common::*;
use serde_json::json;

const A441: &str = "/v1/capacity/allocations/ALLOC-26-000441";

#[tokio::test]
async fn reference_patch_schedules_the_reduction_for_the_next_billing_period() {
    let app = spawn_app().await;
    let body = json!({ "committed_per_week": 32, "ends_at": "2026-06-30T23:59:59Z", "reason": "Reduced scope for final project phase" });
    let a = app.patch(A441, &app.tokens.org_write, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let d = &a.body["data"];
    assert_eq!(d["ends_at"], "2026-06-30T23:59:59Z");
    assert_eq!(d["committed_per_week"], json!(40));
    let pending = d["pending_changes"].as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["committed_per_week"], json!(32));
    assert_eq!(pending[0]["effective_at"], "2026-05-01T00:00:00Z");
    assert_eq!(
        pending[0]["reason"],
        "Reduced scope for final project phase"
    );
    let events = app
        .get(
            "/v1/events?type=capacity.utilisation_warning",
            &app.tokens.org_read,
        )
        .await;
    let events = events.body["data"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["data"]["object"]["allocation"]["id"],
        "ALLOC-26-000441"
    );
    let pool = app
        .get("/v1/capacity/CAP-26-000112", &app.tokens.org_read)
        .await;
    assert_eq!(pool.body["data"]["allocated"], json!(160));
}

#[tokio::test]
async fn reference_patch_effective_immediately_applies_at_once() {
    let app = spawn_app().await;
    let body = json!({ "committed_per_week": 32, "ends_at": "2026-06-30T23:59:59Z", "reason": "Reduced scope for final project phase", "effective_immediately": true });
    let a = app.patch(A441, &app.tokens.org_write, body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["data"]["committed_per_week"], json!(32));
    assert_eq!(a.body["data"]["pending_changes"], json!([]));
    let pool = app
        .get("/v1/capacity/CAP-26-000112", &app.tokens.org_read)
        .await;
    assert_eq!(pool.body["data"]["allocated"], json!(152));
    assert_eq!(pool.body["data"]["available"], json!(48));
}

#[tokio::test]
async fn reference_wind_down_is_recorded_in_history_with_its_reason() {
    let app = spawn_app().await;
    let body =
        json!({ "ends_at": "2026-05-31T23:59:59Z", "reason": "Consistent under-utilisation" });
    let a = app.patch(A441, &app.tokens.org_write, body).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["ends_at"], "2026-05-31T23:59:59Z");
    let h = app
        .get(&format!("{A441}/history"), &app.tokens.org_read)
        .await;
    assert_eq!(h.status, 200);
    let entries = h.body["data"].as_array().unwrap();
    assert_eq!(entries[0]["action"], "created");
    let last = entries.last().unwrap();
    assert_eq!(last["reason"], "Consistent under-utilisation");
    assert_eq!(last["before"]["ends_at"], serde_json::Value::Null);
    assert_eq!(last["after"]["ends_at"], "2026-05-31T23:59:59Z");
    assert_eq!(last["effective_at"], NOW);
    assert!(last["actor"].as_str().unwrap().starts_with("TOK-"));
}

#[tokio::test]
async fn scheduled_changes_take_effect_without_any_job_when_the_clock_passes() {
    let app = spawn_app().await;
    app.patch(
        A441,
        &app.tokens.org_write,
        json!({ "committed_per_week": 32 }),
    )
    .await;
    app.clock.set(at("2026-04-30T23:59:59Z"));
    let a = app.get(A441, &app.tokens.org_read).await;
    assert_eq!(a.body["data"]["committed_per_week"], json!(40));
    app.clock.set(at("2026-05-01T00:00:00Z"));
    let a = app.get(A441, &app.tokens.org_read).await;
    assert_eq!(a.body["data"]["committed_per_week"], json!(32));
    assert_eq!(a.body["data"]["pending_changes"], json!([]));
    let pool = app
        .get("/v1/capacity/CAP-26-000112", &app.tokens.org_read)
        .await;
    assert_eq!(pool.body["data"]["allocated"], json!(152));
}

#[tokio::test]
async fn a_later_patch_for_the_same_period_replaces_the_pending_change() {
    let app = spawn_app().await;
    app.patch(
        A441,
        &app.tokens.org_write,
        json!({ "committed_per_week": 32 }),
    )
    .await;
    let a = app
        .patch(
            A441,
            &app.tokens.org_write,
            json!({ "committed_per_week": 30 }),
        )
        .await;
    let pending = a.body["data"]["pending_changes"].as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["committed_per_week"], json!(30));
}

#[tokio::test]
async fn an_immediate_change_cancels_the_pending_change_to_that_field() {
    let app = spawn_app().await;
    app.patch(
        A441,
        &app.tokens.org_write,
        json!({ "committed_per_week": 32 }),
    )
    .await;
    let a = app
        .patch(
            A441,
            &app.tokens.org_write,
            json!({ "committed_per_week": 36, "effective_immediately": true }),
        )
        .await;
    assert_eq!(a.body["data"]["committed_per_week"], json!(36));
    assert_eq!(a.body["data"]["pending_changes"], json!([]));
}

#[tokio::test]
async fn replacing_resources_keeps_the_id_and_the_service_line() {
    let app = spawn_app().await;
    let r = json!([{ "type": "talent", "id": "SCR-300001", "role": "staff_engineer", "committed_hours_per_week": 40 }]);
    let a = app
        .patch(
            A441,
            &app.tokens.org_write,
            json!({ "resources": r, "effective_immediately": true }),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["id"], "ALLOC-26-000441");
    assert_eq!(a.body["data"]["service_line_id"], "LIN-26-084729");
    assert_eq!(a.body["data"]["resources"][0]["id"], "SCR-300001");
    let scheduled = app
        .patch(A441, &app.tokens.org_write, json!({ "resources": [] }))
        .await;
    assert_eq!(scheduled.body["data"]["resources"][0]["id"], "SCR-300001");
    assert_eq!(
        scheduled.body["data"]["pending_changes"][0]["resources"],
        json!([])
    );
}

#[tokio::test]
async fn ends_at_in_the_past_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    let a = app
        .patch(
            A441,
            &app.tokens.org_write,
            json!({ "ends_at": "2026-04-01T00:00:00Z" }),
        )
        .await;
    assert_problem(&a, 422, "validation_failed");
    assert_eq!(a.body["errors"][0]["field"], "ends_at");
    let got = app.get(A441, &app.tokens.org_read).await;
    assert_eq!(got.body["data"]["ends_at"], serde_json::Value::Null);
}

#[tokio::test]
async fn null_clears_ends_at() {
    let app = spawn_app().await;
    app.patch(
        A441,
        &app.tokens.org_write,
        json!({ "ends_at": "2026-05-31T23:59:59Z" }),
    )
    .await;
    let a = app
        .patch(A441, &app.tokens.org_write, json!({ "ends_at": null }))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["ends_at"], serde_json::Value::Null);
}

#[tokio::test]
async fn closing_releases_the_commitment_and_is_final() {
    let app = spawn_app().await;
    let a = app
        .patch(
            A441,
            &app.tokens.org_write,
            json!({ "status": "closed", "reason": "done" }),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["status"], "closed");
    let pool = app
        .get("/v1/capacity/CAP-26-000112", &app.tokens.org_read)
        .await;
    assert_eq!(pool.body["data"]["allocated"], json!(120));
    for body in [
        json!({ "status": "active" }),
        json!({ "reason": "x", "ends_at": null }),
        json!({ "committed_per_week": 1 }),
    ] {
        assert_problem(
            &app.patch(A441, &app.tokens.org_write, body).await,
            409,
            "allocation_closed",
        );
    }
    let events = app
        .get(
            "/v1/events?type=capacity.allocation.closed",
            &app.tokens.org_read,
        )
        .await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn pausing_keeps_the_commitment() {
    let app = spawn_app().await;
    let a = app
        .patch(A441, &app.tokens.org_write, json!({ "status": "paused" }))
        .await;
    assert_eq!(a.body["data"]["status"], "paused");
    let pool = app
        .get("/v1/capacity/CAP-26-000112", &app.tokens.org_read)
        .await;
    assert_eq!(pool.body["data"]["allocated"], json!(160));
    let a = app
        .patch(A441, &app.tokens.org_write, json!({ "status": "active" }))
        .await;
    assert_eq!(a.body["data"]["status"], "active");
}

#[tokio::test]
async fn increases_now_or_scheduled_are_checked_against_supply() {
    let app = spawn_app().await;
    let a = app
        .patch(
            A441,
            &app.tokens.org_write,
            json!({ "committed_per_week": 81, "effective_immediately": true }),
        )
        .await;
    assert_problem(&a, 409, "insufficient_capacity");
    assert_eq!(a.body["first_violation_at"], NOW);
    assert_eq!(a.body["shortfall"], json!(1));
    let a = app
        .patch(
            A441,
            &app.tokens.org_write,
            json!({ "committed_per_week": 81 }),
        )
        .await;
    assert_problem(&a, 409, "insufficient_capacity");
    assert_eq!(a.body["first_violation_at"], "2026-05-01T00:00:00Z");
    let ok = app
        .patch(
            A441,
            &app.tokens.org_write,
            json!({ "committed_per_week": 80 }),
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn clearing_an_end_date_is_an_increase_too() {
    let app = spawn_app().await;
    let t = &app.tokens.org_write;
    app.activate_line("LIN-26-090001").await;
    app.patch(A441, t, json!({ "ends_at": "2026-05-31T23:59:59Z" }))
        .await;
    // The 40 freed from the end date, plus the 40 still available, go to a line starting June 1.
    let fill = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": "LIN-26-090001", "committed_per_week": 80,
        "starts_at": "2026-06-01T00:00:00Z"});
    assert_eq!(
        app.post("/v1/capacity/allocations", t, fill).await.status,
        201
    );
    let a = app.patch(A441, t, json!({ "ends_at": null })).await;
    assert_problem(&a, 409, "insufficient_capacity");
    assert_eq!(a.body["first_violation_at"], "2026-06-01T00:00:00Z");
    assert_eq!(a.body["shortfall"], json!(40));
}

#[tokio::test]
async fn if_match_with_a_stale_etag_is_412_and_changes_nothing() {
    let app = spawn_app().await;
    let got = app.get(A441, &app.tokens.org_read).await;
    let etag = got.headers["etag"].to_str().unwrap().to_owned();
    let patch = |tag: String| {
        app.client
            .patch(format!("{}{A441}", app.base))
            .bearer_auth(&app.tokens.org_write)
            .header("if-match", tag)
            .json(&json!({ "reason": "x", "status": "paused" }))
            .send()
    };
    let ok = answer(patch(etag.clone()).await.unwrap()).await;
    assert_eq!(ok.status, 200);
    assert_ne!(ok.headers["etag"].to_str().unwrap(), etag);
    let stale = answer(patch(etag).await.unwrap()).await;
    assert_problem(&stale, 412, "precondition_failed");
    let got = app.get(A441, &app.tokens.org_read).await;
    assert_eq!(got.body["data"]["status"], "paused");
}

#[tokio::test]
async fn patch_needs_write_scope_and_hides_other_organizations() {
    let app = spawn_app().await;
    assert_problem(
        &app.patch(A441, &app.tokens.org_read, json!({"status": "paused"}))
            .await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.patch(A441, &app.tokens.other_org, json!({"status": "paused"}))
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn patch_input_is_validated() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"status": "deleted"}), "status"),
        (
            json!({"committed_per_week": 1, "committed": 1}),
            "committed_per_week",
        ),
        (json!({"ends_at": "tomorrow"}), "ends_at"),
        (
            json!({"service_line_id": "LIN-26-000001"}),
            "service_line_id",
        ),
        (
            json!({"effective_immediately": "yes"}),
            "effective_immediately",
        ),
    ] {
        let a = app.patch(A441, &app.tokens.org_write, body).await;
        assert_problem(&a, 422, "validation_failed");
        assert_eq!(a.body["errors"][0]["field"], field);
    }
}

/// Many concurrent increases on one pool: the pool never ends over-committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increases_never_overcommit() {
    let app = spawn_app().await;
    let t = app.tokens.platform.clone();
    let mut ids = Vec::new();
    for i in 0..8 {
        let body = json!({"capacity_pool_id": "CAP-26-000112", "service_line_id": format!("LIN-26-7000{i:02}"), "committed_per_week": 1});
        ids.push(
            app.post("/v1/capacity/allocations", &t, body).await.body["data"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // 32 left; each of 8 tries to grow by 10 (from 1 to 11) at once: 3 can.
    let mut tasks = Vec::new();
    for id in ids {
        let (client, url, t) = (
            app.client.clone(),
            format!("{}/v1/capacity/allocations/{id}", app.base),
            t.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = json!({"committed_per_week": 11, "effective_immediately": true});
            client
                .patch(url)
                .bearer_auth(t)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 3);
    let pool = app.get("/v1/capacity/CAP-26-000112", &t).await;
    assert_eq!(pool.body["data"]["allocated"], json!(198));
}
