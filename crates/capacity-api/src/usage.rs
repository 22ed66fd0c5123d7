//! `POST /v1/capacity/usage`: metered usage in batches. Records are judged one
//! by one, so a bad record is reported and never costs the good ones.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::page::DataBody;
use crate::schemas::UsageBatchResult;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use capacity_domain::{AllocationId, Instant, Quantity};
use capacity_store::{UsageOutcome, UsageRecord};
use serde::Deserialize;
use utoipa::ToSchema;

pub const MAX_BATCH: usize = 1000;

/// A batch of 1 to 1000 usage records. Records are judged one by one: a
/// record of the wrong shape is answered `rejected` in the results, and never
/// costs the others, so any JSON value is accepted as an item.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<RecordItem>)]
    records: Vec<serde_json::Value>,
}

/// A usage record ([`Record`]); other values are rejected per record.
pub struct RecordItem;

impl utoipa::PartialSchema for RecordItem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, SchemaType};
        use utoipa::openapi::{Ref, RefOr};
        let any = ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some(
                "Any other value: answered `rejected` (`invalid_record`) in the results.",
            ));
        RefOr::T(Schema::AnyOf(
            AnyOfBuilder::new()
                .item(Ref::from_schema_name("UsageRecord"))
                .item(any)
                .build(),
        ))
    }
}
impl utoipa::ToSchema for RecordItem {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push(("UsageRecord".into(), Record::schema()));
        <Record as ToSchema>::schemas(schemas);
    }
}

/// One metered usage record.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UsageRecord)]
struct Record {
    /// The caller's id, for de-duplication (1 to 200 characters): the same
    /// id sent again counts once.
    #[schema(min_length = 1, max_length = 200)]
    id: String,
    allocation_id: AllocationId,
    /// In the pool's unit.
    #[schema(value_type = capacity_domain::openapi::QuantityInput)]
    quantity: Quantity,
    /// Not in the future, not older than 400 days.
    #[schema(value_type = capacity_domain::openapi::InstantInput)]
    occurred_at: Instant,
}

/// Meter usage (platform)
#[utoipa::path(
    post,
    path = "/v1/capacity/usage",
    operation_id = "recordUsage",
    tag = "usage",
    request_body = Batch,
    responses((status = 200, description = "What became of each record", body = DataBody<UsageBatchResult>))
)]
pub async fn ingest(
    State(s): State<AppState>,
    caller: Caller,
    Json(batch): Json<Batch>,
) -> ApiResult<Response> {
    let scope = caller.require_platform_write()?;
    if batch.records.is_empty() || batch.records.len() > MAX_BATCH {
        return Err(ApiError::validation(
            "records",
            format!("must hold 1 to {MAX_BATCH} records"),
        ));
    }
    // Parse each record on its own; remember where the parsed ones go.
    let mut results: Vec<serde_json::Value> = Vec::with_capacity(batch.records.len());
    let mut valid: Vec<(usize, UsageRecord)> = Vec::new();
    for (i, raw) in batch.records.into_iter().enumerate() {
        let id = raw.get("id").and_then(|v| v.as_str()).map(str::to_owned);
        let parsed = crate::extract::parse_value::<Record>(raw);
        match parsed {
            Ok(r) if r.id.is_empty() || r.id.len() > 200 => {
                results.push(rejected(
                    id,
                    "invalid_record",
                    "id: must be 1 to 200 characters".into(),
                ));
            }
            Ok(r) => {
                results.push(serde_json::Value::Null);
                valid.push((
                    i,
                    UsageRecord {
                        id: r.id,
                        allocation_id: r.allocation_id,
                        quantity: r.quantity,
                        occurred_at: r.occurred_at,
                    },
                ));
            }
            Err(e) => results.push(rejected(id, "invalid_record", e.detail.clone())),
        }
    }
    let ids: Vec<(usize, String)> = valid.iter().map(|(i, r)| (*i, r.id.clone())).collect();
    let outcomes = s
        .store
        .record_usage(
            scope,
            valid.into_iter().map(|v| v.1).collect(),
            s.clock.now(),
        )
        .await?;
    for ((i, id), outcome) in ids.into_iter().zip(outcomes) {
        results[i] = match outcome {
            UsageOutcome::Accepted => serde_json::json!({ "id": id, "status": "accepted" }),
            UsageOutcome::Duplicate => serde_json::json!({ "id": id, "status": "duplicate" }),
            UsageOutcome::Rejected { code, reason } => rejected(Some(id), code, reason),
        };
    }
    let count = |s: &str| results.iter().filter(|r| r["status"] == s).count();
    let body = serde_json::json!({ "data": {
        "accepted": count("accepted"),
        "duplicates": count("duplicate"),
        "rejected": count("rejected"),
        "results": results,
    }});
    Ok(axum::Json(body).into_response())
}

fn rejected(id: Option<String>, code: &str, reason: String) -> serde_json::Value {
    serde_json::json!({ "id": id, "status": "rejected", "code": code, "reason": reason })
}
