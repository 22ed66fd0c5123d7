//! `/v1/events`: the outbox, readable by the tenants it concerns.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::error::not_found;
use crate::extract::Query;
use crate::page::ListBody;
use crate::page::{DataBody, list_body, page_request};
use crate::params::opt_parse;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use capacity_domain::Instant;
use capacity_domain::model::Event;
use capacity_store::EventFilter;
use serde::Deserialize;
use utoipa::IntoParams;

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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(rename = "type")]
    #[param(value_type = Option<EventType>, inline)]
    kind: Option<String>,
    /// Only events created after this instant.
    #[param(value_type = Option<capacity_domain::openapi::InstantInput>)]
    created_after: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `meta.cursor` of the previous page.
    #[param(value_type = Option<String>, pattern = "^c[0-9a-f]{1,15}$")]
    cursor: Option<String>,
}

/// The type of an event.
pub struct EventType;

impl utoipa::PartialSchema for EventType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        capacity_domain::openapi::schema_from_json(
            serde_json::json!({ "type": "string", "enum": EVENT_TYPES }),
        )
    }
}
impl utoipa::ToSchema for EventType {}

/// List events
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "listEvents",
    tag = "events",
    params(ListQuery),
    responses((status = 200, description = "Events about the token's objects, oldest first", body = ListBody<Event>))
)]
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

/// Get an event
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    operation_id = "getEvent",
    tag = "events",
    params(("id" = String, Path, description = "The event's id", pattern = "^EVT-[0-9]{2}-[0-9]{6,15}$")),
    responses((status = 200, description = "The event", body = DataBody<Event>))
)]
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
