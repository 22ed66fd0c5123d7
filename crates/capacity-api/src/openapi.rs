//! The OpenAPI 3.1 document, generated from the code: each handler carries a
//! `#[utoipa::path]` and the router is built from utoipa-axum's
//! `OpenApiRouter` (see [`crate::api_router`]), so a route cannot exist
//! without its entry. What is common to every operation — the bearer
//! scheme, the problem+json error answers, the reference examples — is
//! added here once, by [`finish`], rather than repeated on each handler.

use crate::error::PROBLEM_CODES;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Capacity API",
        description = "Manages the supply side of the delivery platform: capacity pools, allocations of that supply to service lines (never over-committing a pool), metered usage and utilisation, demand forecasts, costs and events.\n\nAll `/v1` operations take `Authorization: Bearer <token>`. Errors are RFC 9457 `application/problem+json` with a stable `code`; each code is described at `/docs#problem-<code>`. Lists answer `{\"data\": [...], \"meta\": {\"cursor\", \"has_more\"}}` and take `limit` (1–100, default 20) and `cursor`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    components(schemas(Problem, FieldError, ProblemCode)),
    tags(
        (name = "workspaces", description = "Which organization each workspace belongs to"),
        (name = "pools", description = "Capacity pools and their supply ledger"),
        (name = "allocations", description = "Supply committed to service lines"),
        (name = "service-lines", description = "Lifecycle signals from the platform"),
        (name = "usage", description = "Metering"),
        (name = "planning", description = "Demand requests, forecasts and costs"),
        (name = "events", description = "Every change, as an event"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// An RFC 9457 problem, as every error is answered.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `/docs#problem-<code>`: where the code is described.
    #[schema(rename = "type", example = "/docs#problem-validation_failed")]
    kind: String,
    /// The HTTP reason phrase.
    #[schema(example = "Unprocessable Entity")]
    title: String,
    #[schema(example = 422, minimum = 400, maximum = 599)]
    status: u16,
    /// What went wrong, for people.
    detail: String,
    code: ProblemCode,
    /// The fields at fault (`validation_failed`).
    errors: Option<Vec<FieldError>>,
    /// `insufficient_capacity`: the first instant the pool would be over-committed.
    first_violation_at: Option<capacity_domain::Instant>,
    /// `insufficient_capacity`: by how much.
    shortfall: Option<capacity_domain::Quantity>,
    /// `insufficient_capacity`: what would be committed at that instant.
    committed: Option<capacity_domain::Quantity>,
    /// `insufficient_capacity`: supply × overcommit_ratio at that instant.
    capacity: Option<capacity_domain::Quantity>,
    /// `insufficient_capacity`: the pool's unit.
    unit: Option<capacity_domain::Unit>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FieldError {
    /// The field or parameter, e.g. `committed_per_week` or `resources[0].id`.
    field: String,
    message: String,
}

/// The stable, machine-readable problem code.
pub struct ProblemCode;

impl utoipa::PartialSchema for ProblemCode {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        let codes: Vec<&str> = PROBLEM_CODES.iter().map(|c| c.0).collect();
        let described: Vec<String> = PROBLEM_CODES
            .iter()
            .map(|(code, status, what)| format!("- `{code}` ({status}): {what}"))
            .collect();
        capacity_domain::openapi::schema_from_json(json!({
            "type": "string",
            "enum": codes,
            "description": described.join("\n"),
        }))
    }
}
impl ToSchema for ProblemCode {
    fn name() -> std::borrow::Cow<'static, str> {
        "ProblemCode".into()
    }
}

/// Adds what every operation shares; applied to the JSON form of the
/// document once the router has added the paths.
pub fn finish(doc: &mut Value) {
    constrain(doc);
    doc["components"]["securitySchemes"]["bearer"] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "A token minted by `capacity tokens create` (`cap_…`): platform or organization, read or write scope."
    });
    doc["servers"] = json!([{
        "url": "/",
        "description": "The server that serves this document (`capacity serve` listens on 127.0.0.1:8080 by default)."
    }]);
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        let versioned = path.starts_with("/v1/");
        for (method, op) in item.iter_mut() {
            if !op.is_object() {
                continue;
            }
            if path == "/metrics" {
                // Public figures without a token, tenants' pool gauges with a platform token.
                op["security"] = json!([{}, { "bearer": [] }]);
            } else if !versioned {
                op["security"] = json!([]);
            }
            if versioned {
                op["security"] = json!([{ "bearer": [] }]);
                add_errors(method, path, op);
                if method == "post" || method == "patch" {
                    add_parameter(op, idempotency_key());
                }
            }
            add_parameter(op, request_id());
            not_null_parameters(op);
            crate::examples::apply(method, path, op);
        }
    }
}

/// Rules across fields that the derives cannot state: exactly one of the
/// two forms of a commitment or quantity.
fn constrain(doc: &mut Value) {
    // Exactly one of two fields (`null` counts as absent), spelled as two
    // whole alternatives so that generators see each shape.
    let exactly_one = |s: &mut Value, a: &str, b: &str| {
        let base = s.clone();
        let branch = |give: &str, omit: &str| {
            let mut v = base.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("description");
            }
            let kind = if give.ends_with("_per_week") {
                "PerWeekQuantity"
            } else {
                "QuantityInput"
            };
            v["properties"][give] = json!({ "$ref": format!("#/components/schemas/{kind}") });
            v["properties"][omit] = json!({ "type": "null" });
            if let Some(r) = v["required"].as_array_mut() {
                r.push(json!(give));
            } else {
                v["required"] = json!([give]);
            }
            v
        };
        *s = json!({
            "description": base["description"],
            "oneOf": [branch(a, b), branch(b, a)],
        });
    };
    let schemas = &mut doc["components"]["schemas"];
    if let Some(s) = schemas.get_mut("CreateAllocation") {
        exactly_one(s, "committed", "committed_per_week");
    }
    if let Some(s) = schemas.get_mut("CreateRequest") {
        exactly_one(s, "quantity", "quantity_per_week");
    }
    if let Some(s) = schemas.get_mut("PatchAllocation") {
        s["not"] = json!({ "required": ["committed", "committed_per_week"] });
    }
    // A request moves from pending to fulfilled (maybe naming the
    // allocation) or cancelled.
    if let Some(s) = schemas.get_mut("UpdateRequest") {
        s["properties"]["status"] = json!({ "type": "string", "enum": ["fulfilled", "cancelled"] });
        s["oneOf"] = json!([
            { "properties": { "status": { "const": "fulfilled" } } },
            { "properties": { "status": { "const": "cancelled" }, "allocation_id": { "type": "null" } } },
        ]);
    }
    if let Some(s) = schemas.get_mut("CreateEndpoint") {
        s["properties"]["url"]["pattern"] = json!(crate::webhooks::url_pattern());
    }
    // A talent resource is named by its talent id.
    if let Some(s) = schemas.get_mut("Resource") {
        s["if"] = json!({ "properties": { "type": { "const": "talent" } }, "required": ["type"] });
        s["then"] = json!({ "properties": { "id": { "pattern": "^SCR-[0-9]{6,15}$" } } });
    }
}

/// Query, path and header values are strings on the wire: an optional
/// parameter is absent, never `null`, so the `null` the derives add for
/// `Option` is dropped.
fn not_null_parameters(op: &mut Value) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for p in params {
        let Some(schema) = p.get_mut("schema") else {
            continue;
        };
        if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                schema["type"] = types[0].clone();
            }
        }
        let single = schema
            .get("oneOf")
            .and_then(Value::as_array)
            .map(|alts| {
                alts.iter()
                    .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter(|alts| alts.len() == 1);
        if let Some(mut alts) = single {
            *schema = alts.remove(0);
        }
    }
}

fn add_parameter(op: &mut Value, p: Value) {
    if !op.get("parameters").is_some_and(Value::is_array) {
        op["parameters"] = json!([]);
    }
    if let Some(params) = op["parameters"].as_array_mut()
        && !params
            .iter()
            .any(|q| q["name"] == p["name"] && q["in"] == p["in"])
    {
        params.push(p);
    }
}

fn idempotency_key() -> Value {
    json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "A retry with the same key and body replays the first answer (with `Idempotent-Replayed: true`); the same key with another body is 422 `idempotency_key_reused`. Keys are kept 24 hours per token.",
        "schema": { "type": "string", "pattern": "^[!-~]{1,255}$" }
    })
}

fn request_id() -> Value {
    json!({
        "name": "X-Request-Id",
        "in": "header",
        "required": false,
        "description": "Echoed in the answer and logged. Any value is accepted; one that is not 1 to 128 visible ASCII characters is replaced by a minted id.",
        "schema": { "type": "string" }
    })
}

/// The codes each error status may carry on this operation.
fn error_codes(method: &str, path: &str, has_body: bool) -> Vec<(u16, Vec<&'static str>)> {
    let writes = method == "post" || method == "patch";
    let mut out: Vec<(u16, Vec<&'static str>)> = Vec::new();
    if has_body {
        out.push((400, vec!["malformed_request"]));
    }
    out.push((401, vec!["unauthorized"]));
    if method != "get" {
        out.push((403, vec!["forbidden"]));
    }
    out.push((404, vec!["not_found"]));
    let mut conflicts = conflict_codes(method, path);
    if writes {
        conflicts.push("idempotency_key_in_use");
    }
    if !conflicts.is_empty() {
        out.push((409, conflicts));
    }
    if method == "patch" && path == "/v1/capacity/allocations/{id}" {
        out.push((412, vec!["precondition_failed"]));
    }
    if has_body {
        out.push((413, vec!["payload_too_large"]));
        out.push((415, vec!["unsupported_media_type"]));
    }
    let mut unprocessable = vec!["validation_failed"];
    if writes {
        unprocessable.push("idempotency_key_reused");
    }
    out.push((422, unprocessable));
    out.push((429, vec!["rate_limited"]));
    out.push((503, vec!["unavailable", "timeout"]));
    out
}

fn conflict_codes(method: &str, path: &str) -> Vec<&'static str> {
    match (method, path) {
        ("post", "/v1/capacity") => vec!["pool_exists", "workspace_organization_mismatch"],
        ("post", "/v1/capacity/allocations") => vec![
            "insufficient_capacity",
            "service_line_workspace_mismatch",
            "service_line_closed",
        ],
        ("patch", "/v1/capacity/allocations/{id}") => {
            vec!["insufficient_capacity", "allocation_closed"]
        }
        ("put", "/v1/service-lines/{id}") => vec![
            "service_line_workspace_mismatch",
            "workspace_organization_mismatch",
        ],
        ("put", "/v1/workspaces/{id}") => vec!["workspace_organization_mismatch"],
        ("post", "/v1/capacity/requests") => {
            vec!["workspace_organization_mismatch", "pending_demand_limit"]
        }
        ("post", "/v1/capacity/usage") => vec!["usage_week_limit"],
        ("patch", "/v1/capacity/requests/{id}") => vec!["request_not_pending"],
        ("post", "/v1/webhook-endpoints") => vec!["webhook_endpoint_limit"],
        _ => vec![],
    }
}

fn add_errors(method: &str, path: &str, op: &mut Value) {
    let has_body = op.get("requestBody").is_some_and(Value::is_object);
    for (status, codes) in error_codes(method, path, has_body) {
        let key = status.to_string();
        if op["responses"].get(&key).is_some() {
            continue;
        }
        let lines: Vec<String> = codes
            .iter()
            .map(|c| {
                let what = PROBLEM_CODES.iter().find(|p| p.0 == *c).map_or("", |p| p.2);
                format!("- [`{c}`](/docs#problem-{c}): {what}")
            })
            .collect();
        let mut response = json!({
            "description": lines.join("\n"),
            "content": { PROBLEM_JSON: {
                "schema": { "$ref": "#/components/schemas/Problem" },
                "example": problem_example(status, codes[0]),
            }},
        });
        if status == 401 {
            response["headers"] = json!({ "WWW-Authenticate": {
                "description": "`Bearer`, with `error=\"invalid_token\"` for a bad token",
                "required": true,
                "schema": { "type": "string" }
            }});
        }
        if status == 429 {
            response["headers"] = json!({ "Retry-After": {
                "description": "Seconds to wait before retrying",
                "required": true,
                "schema": { "type": "string", "pattern": "^[0-9]+$" }
            }});
        }
        op["responses"][key] = response;
    }
}

fn problem_example(status: u16, code: &str) -> Value {
    let title = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let detail = PROBLEM_CODES
        .iter()
        .find(|p| p.0 == code)
        .map_or("", |p| p.2);
    let mut v = json!({
        "type": format!("/docs#problem-{code}"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    });
    if code == "validation_failed" {
        v["detail"] = json!("committed_per_week: must not be negative");
        v["errors"] = json!([{ "field": "committed_per_week", "message": "must not be negative" }]);
    }
    v
}

/// The document, as served at `/openapi.json`.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(crate::api().1).unwrap_or_default();
    finish(&mut doc);
    doc
}
