//! The reference examples (`reference-examples.md`: the seed dataset with
//! the clock pinned at 2026-04-15T06:00:00Z), attached to their operations
//! in the OpenAPI document and so shown on `/docs`. `tests/openapi.rs`
//! replays each GET example against the seed dataset, so they cannot go stale.

use serde_json::{Value, json};

pub const ALLOCATION: &str = "ALLOC-26-000441";
pub const POOL: &str = "CAP-26-000112";
pub const SERVICE_LINE: &str = "LIN-26-084729";

pub fn talent_pool() -> Value {
    json!({
        "id": "CAP-26-000112",
        "workspace_id": "WS-26-000021",
        "organization_id": "ORG-26-090500",
        "resource_type": "talent_hours",
        "total": 200,
        "allocated": 160,
        "available": 40,
        "unit": "hours_per_week",
        "period": "weekly",
        "overcommit_ratio": 1,
        "unit_price": { "amount": "85.00", "currency": "USD" },
        "created_at": "2026-04-15T06:00:00Z",
        "updated_at": "2026-04-15T06:00:00Z"
    })
}

pub fn credits_pool() -> Value {
    json!({
        "id": "CAP-26-000198",
        "workspace_id": "WS-26-000021",
        "organization_id": "ORG-26-090500",
        "resource_type": "agent_credits",
        "total": 100000,
        "allocated": 45000,
        "available": 55000,
        "unit": "credits",
        "period": "monthly",
        "overcommit_ratio": 1,
        "unit_price": { "amount": "0.002", "currency": "USD" },
        "created_at": "2026-04-15T06:00:00Z",
        "updated_at": "2026-04-15T06:00:00Z"
    })
}

pub fn allocation() -> Value {
    json!({
        "id": "ALLOC-26-000441",
        "capacity_pool_id": "CAP-26-000112",
        "service_line_id": "LIN-26-084729",
        "workspace_id": "WS-26-000021",
        "resource_type": "talent_hours",
        "committed": 40,
        "committed_per_week": 40,
        "actual_last_week": 38.5,
        "committed_last_week": 40,
        "utilisation_percent": 96.3,
        "status": "active",
        "resources": [
            {
                "type": "talent",
                "id": "SCR-128491",
                "role": "senior_backend_engineer",
                "committed_hours_per_week": 40
            }
        ],
        "started_at": "2026-01-15T00:00:00Z",
        "ends_at": null,
        "pending_changes": [],
        "orphaned": false,
        "created_at": "2026-04-15T06:00:00Z",
        "updated_at": "2026-04-15T06:00:00Z"
    })
}

/// The seed's 2026-Q3 talent forecast, whole (every field the schema
/// requires; the reference example shows the first eight).
pub fn demand() -> Value {
    let q3 = capacity_domain::forecast::PlanningPeriod::parse("2026-Q3").expect("a valid period");
    let weeks: Vec<Value> = q3
        .weeks()
        .iter()
        .map(|w| {
            json!({
                "week_start": w.start.week_start(),
                "from": w.start,
                "to": w.end,
                "current_committed": 160,
                "pending_requests": 80,
                "available_supply": 40,
                "supply_gap": 40,
                "overcommitment": 0
            })
        })
        .collect();
    json!({ "data": {
        "workspace_id": "WS-26-000021",
        "resource_type": "talent_hours",
        "period": "2026-Q3",
        "current_committed": 160,
        "pending_requests": 80,
        "available_supply": 40,
        "supply_gap": 40,
        "recommendation": "Supply cannot meet pending demand in 2026-Q3: 80 hours_per_week are requested but only 40 are available, a gap of 40. Add at least 40 hours_per_week of supply before the period starts, or defer or decline requests.",
        "from": "2026-07-01T00:00:00Z",
        "to": "2026-10-01T00:00:00Z",
        "unit": "hours_per_week",
        "capacity_pool_id": "CAP-26-000112",
        "overcommitment": 0,
        "weeks": weeks,
        "expiring_commitments": 0,
        "expiring_allocations_count": 0,
        "expiring_allocations": [],
        "scheduled_supply_changes": [],
        "projected_utilisation_percent": 73.4
    }})
}

pub fn patch_request() -> Value {
    json!({
        "committed_per_week": 32,
        "ends_at": "2026-06-30T23:59:59Z",
        "reason": "Reduced scope for final project phase"
    })
}

/// The answer to [`patch_request`]: the commitment changes from the next
/// billing period, `ends_at` at once.
pub fn patch_answer() -> Value {
    let mut a = allocation();
    a["ends_at"] = json!("2026-06-30T23:59:59Z");
    a["pending_changes"] = json!([{
        "effective_at": "2026-05-01T00:00:00Z",
        "committed": 32,
        "committed_per_week": 32,
        "resources": a["resources"].clone(),
        "reason": "Reduced scope for final project phase"
    }]);
    a["updated_at"] = json!("2026-04-15T06:00:00Z");
    json!({ "data": a })
}

/// `(method, path, query of the example, request body, answer)` for the
/// operations with a reference example.
pub fn all() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    Option<Value>,
    Value,
)> {
    vec![
        (
            "get",
            "/v1/capacity",
            "?workspace_id=WS-26-000021",
            None,
            json!({ "data": [talent_pool(), credits_pool()], "meta": { "cursor": null, "has_more": false } }),
        ),
        (
            "get",
            "/v1/capacity/{id}",
            "",
            None,
            json!({ "data": talent_pool() }),
        ),
        (
            "get",
            "/v1/capacity/allocations",
            "?workspace_id=WS-26-000021&status=active",
            None,
            json!({ "data": [allocation()], "meta": { "cursor": null, "has_more": false } }),
        ),
        (
            "get",
            "/v1/capacity/allocations/{id}",
            "",
            None,
            json!({ "data": allocation() }),
        ),
        (
            "get",
            "/v1/capacity/demand",
            "?workspace_id=WS-26-000021&resource_type=talent_hours&period=2026-Q3",
            None,
            demand(),
        ),
        (
            "patch",
            "/v1/capacity/allocations/{id}",
            "",
            Some(patch_request()),
            patch_answer(),
        ),
        (
            "post",
            "/v1/capacity/allocations",
            "",
            Some(json!({
                "capacity_pool_id": "CAP-26-000112",
                "service_line_id": "LIN-26-090001",
                "committed_per_week": 12
            })),
            Value::Null,
        ),
        (
            "post",
            "/v1/capacity/{id}/adjustments",
            "",
            Some(json!({
                "delta": 40,
                "reason": "two engineers start",
                "source": "talent_onboarded",
                "effective_at": "2026-05-01T00:00:00Z"
            })),
            Value::Null,
        ),
    ]
}

/// The example id of a path parameter, by path.
fn path_example(path: &str) -> Option<&'static str> {
    if path.starts_with("/v1/capacity/allocations/{id}") {
        Some(ALLOCATION)
    } else if path.starts_with("/v1/capacity/{id}") {
        Some(POOL)
    } else if path.starts_with("/v1/service-lines/{id}") {
        Some(SERVICE_LINE)
    } else {
        None
    }
}

/// Attaches the examples of one operation (JSON form of the document).
pub fn apply(method: &str, path: &str, op: &mut Value) {
    if let Some(id) = path_example(path)
        && let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut)
    {
        for p in params {
            if p["name"] == "id" && p["in"] == "path" {
                p["example"] = json!(id);
            }
            if p["name"] == "If-Match" {
                p["example"] = json!("\"1\"");
            }
        }
    }
    for (m, p, _query, request, answer) in all() {
        if m != method || p != path {
            continue;
        }
        // `get_mut`, not indexing: indexing a missing key would insert a null.
        if let (Some(body), Some(content)) = (
            request,
            op.get_mut("requestBody")
                .and_then(|b| b.get_mut("content"))
                .and_then(Value::as_object_mut),
        ) {
            for c in content.values_mut() {
                c["example"] = body.clone();
            }
        }
        if answer.is_null() {
            continue;
        }
        if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
            for (status, r) in responses.iter_mut() {
                if let Some(c) = r
                    .get_mut("content")
                    .and_then(|c| c.get_mut("application/json"))
                    .filter(|_| status.starts_with('2'))
                {
                    c["example"] = answer.clone();
                }
            }
        }
    }
}
