//! `/v1/capacity/allocations`: supply committed to service lines.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::page::{DataBody, list_body, page_request};
use crate::params::{opt_parse, path_id};
use crate::pools::{not_found, parse_resource_type};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use capacity_domain::model::{Allocation, AllocationStatus, Resource};
use capacity_domain::{AllocationId, Instant, PoolId, Quantity, ServiceLineId, WorkspaceId};
use capacity_store::{AllocationFilter, AllocationPatch, CommitmentInput, NewAllocation};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workspace_id: Option<String>,
    status: Option<String>,
    service_line_id: Option<String>,
    resource_type: Option<String>,
    capacity_pool_id: Option<String>,
    orphaned: Option<String>,
    utilisation_below: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let page = page_request(q.limit.as_deref(), q.cursor.as_deref())?;
    let filter = AllocationFilter {
        workspace_id: opt_parse("workspace_id", q.workspace_id, WorkspaceId::parse)?,
        status: opt_parse("status", q.status, |v| {
            AllocationStatus::parse(v).ok_or("must be one of active, paused, closed")
        })?,
        service_line_id: opt_parse("service_line_id", q.service_line_id, ServiceLineId::parse)?,
        resource_type: opt_parse("resource_type", q.resource_type, parse_resource_type)?,
        capacity_pool_id: opt_parse("capacity_pool_id", q.capacity_pool_id, PoolId::parse)?,
        orphaned: opt_parse("orphaned", q.orphaned, |v| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("must be true or false"),
        })?,
        utilisation_below_tenths: opt_parse("utilisation_below", q.utilisation_below, |v| {
            Quantity::parse(v)
                .ok()
                .filter(|p| p.thousandths() % 100 == 0 && p.thousandths() <= 1_000_000)
                .map(|p| p.thousandths() / 100)
                .ok_or("must be a percentage from 0 to 1000 with at most one decimal")
        })?,
    };
    let now = s.clock.now();
    let allocations = s
        .store
        .list_allocations(&caller.0, filter, page, now)
        .await?;
    let body = list_body(allocations, |a| {
        serde_json::to_value(a.view(now)).unwrap_or_default()
    });
    Ok(axum::Json(body).into_response())
}

/// The ETag of an allocation: its version, quoted.
pub fn etag(a: &Allocation) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", a.version))
        .unwrap_or(HeaderValue::from_static("\"0\""))
}

/// An allocation answered with its ETag.
pub fn respond(status: StatusCode, a: &Allocation, now: Instant) -> Response {
    let mut res = (status, axum::Json(DataBody { data: a.view(now) })).into_response();
    res.headers_mut().insert(header::ETAG, etag(a));
    res
}

pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, AllocationId::parse, "allocation")?;
    let now = s.clock.now();
    let a = s
        .store
        .get_allocation(&caller.0, &id, now)
        .await
        .map_err(|e| not_found(e, "allocation"))?;
    Ok(respond(StatusCode::OK, &a, now))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAllocation {
    capacity_pool_id: PoolId,
    service_line_id: ServiceLineId,
    committed: Option<Quantity>,
    committed_per_week: Option<Quantity>,
    #[serde(default)]
    resources: Vec<Resource>,
    starts_at: Option<Instant>,
    ends_at: Option<Instant>,
}

/// Exactly one of `committed` and `committed_per_week`.
pub fn commitment(
    committed: Option<Quantity>,
    per_week: Option<Quantity>,
) -> Result<Option<CommitmentInput>, ApiError> {
    match (committed, per_week) {
        (Some(_), Some(_)) => Err(ApiError::validation(
            "committed_per_week",
            "give either committed or committed_per_week, not both",
        )),
        (Some(q), None) => Ok(Some(CommitmentInput::PerPeriod(q))),
        (None, Some(q)) => Ok(Some(CommitmentInput::PerWeek(q))),
        (None, None) => Ok(None),
    }
}

pub fn validate_resources(resources: &[Resource]) -> Result<(), ApiError> {
    if resources.len() > 100 {
        return Err(ApiError::validation(
            "resources",
            "must hold at most 100 resources",
        ));
    }
    for (i, r) in resources.iter().enumerate() {
        r.validate()
            .map_err(|(f, m)| ApiError::validation(format!("resources[{i}].{f}"), m))?;
    }
    Ok(())
}

pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateAllocation>,
) -> ApiResult<Response> {
    let scope = caller.require_write()?;
    let committed = commitment(body.committed, body.committed_per_week)?.ok_or_else(|| {
        ApiError::validation("committed", "committed or committed_per_week is required")
    })?;
    validate_resources(&body.resources)?;
    let new = NewAllocation {
        capacity_pool_id: body.capacity_pool_id,
        service_line_id: body.service_line_id,
        committed,
        resources: body.resources,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
    };
    let now = s.clock.now();
    let a = s
        .store
        .create_allocation(scope, new, now)
        .await
        .map_err(|e| not_found(e, "capacity pool"))?;
    let mut res = respond(StatusCode::CREATED, &a, now);
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/capacity/allocations/{}", a.id)) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

/// Distinguishes an absent field (`None`) from `null` (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchAllocation {
    committed: Option<Quantity>,
    committed_per_week: Option<Quantity>,
    resources: Option<Vec<Resource>>,
    #[serde(default, deserialize_with = "double_option")]
    ends_at: Option<Option<Instant>>,
    status: Option<AllocationStatus>,
    reason: Option<String>,
    #[serde(default)]
    effective_immediately: bool,
}

/// Parses `If-Match: "7"` (or `W/"7"`); `*` matches any version.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("").trim();
    if v == "*" {
        return Ok(None);
    }
    let tag = v.strip_prefix("W/").unwrap_or(v).trim_matches('"');
    tag.parse::<i64>().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "If-Match does not name a version of this allocation",
        )
    })
}

pub async fn patch(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<PatchAllocation>,
) -> ApiResult<Response> {
    let scope = caller.require_write()?;
    let id = path_id(&id, AllocationId::parse, "allocation")?;
    let committed = commitment(body.committed, body.committed_per_week)?;
    if let Some(r) = &body.resources {
        validate_resources(r)?;
    }
    let reason = body
        .reason
        .as_deref()
        .map(|r| crate::params::text("reason", r, 1000))
        .transpose()?;
    let patch = AllocationPatch {
        committed,
        resources: body.resources,
        ends_at: body.ends_at,
        status: body.status,
        reason,
        effective_immediately: body.effective_immediately,
        if_match: if_match(&headers)?,
    };
    let now = s.clock.now();
    let a = s
        .store
        .patch_allocation(scope, &id, patch, now)
        .await
        .map_err(|e| not_found(e, "allocation"))?;
    Ok(respond(StatusCode::OK, &a, now))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn history(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Response> {
    let page = page_request(q.limit.as_deref(), q.cursor.as_deref())?;
    let id = path_id(&id, AllocationId::parse, "allocation")?;
    let entries = s
        .store
        .allocation_history(&caller.0, &id, page)
        .await
        .map_err(|e| not_found(e, "allocation"))?;
    Ok(axum::Json(list_body(entries, |e| e)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UtilisationQuery {
    weeks: Option<String>,
}

pub async fn utilisation(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<UtilisationQuery>,
) -> ApiResult<Response> {
    let weeks = match q.weeks.as_deref() {
        None => 12,
        Some(w) => match w.parse::<u32>() {
            Ok(n) if (1..=104).contains(&n) => n,
            _ => {
                return Err(ApiError::validation(
                    "weeks",
                    "must be an integer from 1 to 104",
                ));
            }
        },
    };
    let id = path_id(&id, AllocationId::parse, "allocation")?;
    let series = s
        .store
        .utilisation_series(&caller.0, &id, weeks, s.clock.now())
        .await
        .map_err(|e| not_found(e, "allocation"))?;
    Ok(
        axum::Json(serde_json::json!({ "data": { "allocation_id": id, "weeks": series } }))
            .into_response(),
    )
}
