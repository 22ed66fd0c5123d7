//! `POST /v1/capacity/usage`: metered usage in batches. Records are judged one
//! by one, so a bad record is reported and never costs the good ones.
//!
//! A batch is parsed twice at most. First optimistically, straight into typed
//! records borrowing from the body (no `serde_json::Value`, no per-field
//! copies): a metering pipeline's batches are nearly always all well formed.
//! If anything in the batch is off, it is parsed again record by record
//! ([`Batch`]), which names what is wrong with each bad record; both paths
//! accept exactly the same records with the same values.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::page::DataBody;
use crate::schemas::UsageBatchResult;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use capacity_domain::{AllocationId, Instant, Quantity};
use capacity_store::{UsageOutcome, UsageRecord};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use utoipa::ToSchema;

pub const MAX_BATCH: usize = 1000;

/// A batch of 1 to 1000 usage records. Records are judged one by one: a
/// record of the wrong shape is answered `rejected` in the results, and never
/// costs the others, so any JSON value is accepted as an item.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<RecordItem>)]
    #[serde(deserialize_with = "at_most_a_batch")]
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

/// The optimistic shape of a batch: every record well formed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastBatch<'a> {
    #[serde(borrow, deserialize_with = "at_most_a_batch")]
    records: Vec<FastRecord<'a>>,
}

const TOO_MANY: &str = "must hold 1 to 1000 records";

/// A JSON array read no further than its [`MAX_BATCH`] + 1st element: a
/// batch too large is refused without reading (or allocating for) the rest.
fn at_most_a_batch<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of records")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH));
            while let Some(r) = seq.next_element()? {
                if records.len() == MAX_BATCH {
                    return Err(serde::de::Error::custom(TOO_MANY));
                }
                records.push(r);
            }
            Ok(records)
        }
    }
    d.deserialize_seq(Bounded(std::marker::PhantomData))
}

/// [`Record`] borrowing from the body. The checks [`Record`]'s field types
/// make are made by [`FastRecord::check`] with the same functions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastRecord<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    allocation_id: Cow<'a, str>,
    /// The number's text as sent (a string here fails `Quantity::parse`).
    #[serde(borrow)]
    quantity: &'a RawValue,
    #[serde(borrow)]
    occurred_at: Cow<'a, str>,
}

impl<'a> FastRecord<'a> {
    /// The record for the store and its id for the answer, or `None` when
    /// the slow path must say what is wrong.
    fn check(self) -> Option<(Cow<'a, str>, UsageRecord)> {
        if !valid_id(&self.id) {
            return None;
        }
        let record = UsageRecord {
            id: self.id.as_ref().to_owned(),
            allocation_id: AllocationId::parse(&self.allocation_id).ok()?,
            quantity: Quantity::parse(self.quantity.get()).ok()?,
            occurred_at: Instant::parse(&self.occurred_at).ok()?,
        };
        Some((self.id, record))
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200
}

/// One line of the answer, in the order the records were sent.
#[derive(Serialize)]
struct Line<'a> {
    id: Option<Cow<'a, str>>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl<'a> Line<'a> {
    fn rejected(id: Option<Cow<'a, str>>, code: &'static str, reason: String) -> Line<'a> {
        Line {
            id,
            status: "rejected",
            code: Some(code),
            reason: Some(reason),
        }
    }
}

/// The answer's shape, as [`UsageBatchResult`] documents it.
#[derive(Serialize)]
struct Answer<'a> {
    data: Summary<'a>,
}
#[derive(Serialize)]
struct Summary<'a> {
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    results: Vec<Line<'a>>,
}

/// The batch judged by its shape: a line per record (final for rejected
/// ones), and the well-formed records with the index of their line.
struct Parsed<'a> {
    lines: Vec<Line<'a>>,
    valid: Vec<UsageRecord>,
    at: Vec<usize>,
}

impl<'a> Parsed<'a> {
    fn with_capacity(n: usize) -> Parsed<'a> {
        Parsed {
            lines: Vec::with_capacity(n),
            valid: Vec::with_capacity(n),
            at: Vec::with_capacity(n),
        }
    }
    fn push_valid(&mut self, id: Cow<'a, str>, record: UsageRecord) {
        self.at.push(self.lines.len());
        self.valid.push(record);
        self.lines.push(Line {
            id: Some(id),
            status: "",
            code: None,
            reason: None,
        });
    }
}

/// Every record well formed, parsed in one pass; `None` if any is not.
fn parse_fast(body: &[u8]) -> Option<Parsed<'_>> {
    let batch: FastBatch<'_> = serde_json::from_slice(body).ok()?;
    let mut parsed = Parsed::with_capacity(batch.records.len());
    for r in batch.records {
        let (id, record) = r.check()?;
        parsed.push_valid(id, record);
    }
    Some(parsed)
}

/// Record by record, naming what is wrong with each bad one.
fn parse_each(body: &[u8]) -> Result<Parsed<'static>, ApiError> {
    let batch: Batch = crate::extract::parse_json(body)?;
    let mut parsed = Parsed::with_capacity(batch.records.len());
    for raw in batch.records {
        let id = raw.get("id").and_then(|v| v.as_str()).map(str::to_owned);
        match crate::extract::parse_value::<Record>(raw) {
            Ok(r) if !valid_id(&r.id) => parsed.lines.push(Line::rejected(
                id.map(Cow::Owned),
                "invalid_record",
                "id: must be 1 to 200 characters".into(),
            )),
            Ok(r) => parsed.push_valid(
                Cow::Owned(r.id.clone()),
                UsageRecord {
                    id: r.id,
                    allocation_id: r.allocation_id,
                    quantity: r.quantity,
                    occurred_at: r.occurred_at,
                },
            ),
            Err(e) => parsed.lines.push(Line::rejected(
                id.map(Cow::Owned),
                "invalid_record",
                e.detail.clone(),
            )),
        }
    }
    Ok(parsed)
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
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    // Scope first: a caller who may not meter costs no parsing.
    let scope = caller.require_platform_write()?;
    let parsed = match parse_fast(&body) {
        Some(p) => p,
        None => parse_each(&body)?,
    };
    if parsed.lines.is_empty() || parsed.lines.len() > MAX_BATCH {
        return Err(ApiError::validation("records", TOO_MANY));
    }
    let Parsed {
        mut lines,
        valid,
        at,
    } = parsed;
    let outcomes = s.store.record_usage(scope, valid, s.clock.now()).await?;
    if outcomes.len() != at.len() {
        tracing::error!(
            "the store answered {} of {} records",
            outcomes.len(),
            at.len()
        );
        return Err(ApiError::internal());
    }
    let (mut accepted, mut duplicates) = (0, 0);
    for (i, outcome) in at.into_iter().zip(outcomes) {
        let line = &mut lines[i];
        match outcome {
            UsageOutcome::Accepted => {
                accepted += 1;
                line.status = "accepted";
            }
            UsageOutcome::Duplicate => {
                duplicates += 1;
                line.status = "duplicate";
            }
            UsageOutcome::Rejected { code, reason } => {
                line.status = "rejected";
                line.code = Some(code);
                line.reason = Some(reason);
            }
        }
    }
    let answer = Answer {
        data: Summary {
            accepted,
            duplicates,
            rejected: lines.len() - accepted - duplicates,
            results: lines,
        },
    };
    // About 50 bytes per record.
    let mut out = Vec::with_capacity(64 + 64 * answer.data.results.len());
    serde_json::to_writer(&mut out, &answer).map_err(|e| {
        tracing::error!(error = %e, "usage answer not serialised");
        ApiError::internal()
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response())
}
