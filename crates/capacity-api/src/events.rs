//! `/v1/events`: the outbox, readable by the tenants it concerns.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::Query;
use crate::page::{DataBody, list_body, page_request};
use crate::params::opt_parse;
use crate::pools::not_found;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use capacity_domain::Instant;
use capacity_store::EventFilter;
use serde::Deserialize;

pub const EVENT_TYPES: &[&str] = &[
    "capacity.pool.created",
    "capacity.pool.updated",
    "capacity.pool_overcommitted",
    "capacity.allocation.created",
    "capacity.allocation.updated",
    "capacity.allocation.closed",
    "capacity.allocation_orphaned",
    "capacity.utilisation_warning",
    "capacity.utilisation_low",
    "capacity.supply_gap",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    created_after: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let page = page_request(q.limit.as_deref(), q.cursor.as_deref())?;
    let filter = EventFilter {
        kind: opt_parse("type", q.kind, |t| {
            EVENT_TYPES
                .contains(&t)
                .then(|| t.to_owned())
                .ok_or("is not a known event type")
        })?,
        created_after: opt_parse("created_after", q.created_after, Instant::parse)?,
    };
    let events = s.store.list_events(&caller.0, filter, page).await?;
    Ok(axum::Json(list_body(events, |e| e)).into_response())
}

pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let event = s
        .store
        .get_event(&caller.0, &id)
        .await
        .map_err(|e| not_found(e, "event"))?;
    Ok(axum::Json(DataBody { data: event }).into_response())
}
