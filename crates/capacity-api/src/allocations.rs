//! `/v1/capacity/allocations`: supply committed to service lines.

use crate::AppState;
use crate::auth::Caller;
use crate::error::not_found;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::page::ListBody;
use crate::page::{DataBody, list_body, page_request};
use crate::params::parse_resource_type;
use crate::params::{opt_parse, path_id};
use crate::schemas::{AllocationView, UtilisationSeries};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use capacity_domain::ResourceType;
use capacity_domain::model::HistoryEntry;
use capacity_domain::model::{Allocation, AllocationStatus, Resource};
use capacity_domain::openapi::InstantInput;
use capacity_domain::{AllocationId, Instant, PoolId, Quantity, ServiceLineId, WorkspaceId};
use capacity_store::{AllocationFilter, AllocationPatch, CommitmentInput, NewAllocation};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = Option<WorkspaceId>)]
    workspace_id: Option<String>,
    #[param(value_type = Option<AllocationStatus>)]
    status: Option<String>,
    #[param(value_type = Option<ServiceLineId>)]
    service_line_id: Option<String>,
    #[param(value_type = Option<ResourceType>)]
    resource_type: Option<String>,
    #[param(value_type = Option<PoolId>)]
    capacity_pool_id: Option<String>,
    /// Only allocations whose service line is closed (`true`) or not (`false`).
    #[param(value_type = Option<bool>)]
    orphaned: Option<String>,
    /// Only allocations whose `utilisation_percent` is below this (0–1000, one decimal).
    #[param(value_type = Option<f64>, minimum = 0, maximum = 1000, multiple_of = 0.1)]
    utilisation_below: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `meta.cursor` of the previous page.
    #[param(value_type = Option<String>, pattern = "^c[0-9a-f]{1,15}$")]
    cursor: Option<String>,
}

/// List allocations
#[utoipa::path(
    get,
    path = "/v1/capacity/allocations",
    operation_id = "listAllocations",
    tag = "allocations",
    params(ListQuery),
    responses((status = 200, description = "The allocations the token sees", body = ListBody<AllocationView>))
)]
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

/// Get an allocation
#[utoipa::path(
    get,
    path = "/v1/capacity/allocations/{id}",
    operation_id = "getAllocation",
    tag = "allocations",
    params(("id" = AllocationId, Path, description = "The allocation's id")),
    responses((status = 200, description = "The allocation", body = DataBody<AllocationView>,
        headers(("ETag" = String, description = "The allocation's version, for `If-Match`"))))
)]
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

/// Exactly one of `committed` and `committed_per_week`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAllocation {
    capacity_pool_id: PoolId,
    /// A service line not seen before is registered in the pool's workspace.
    service_line_id: ServiceLineId,
    /// Per the pool's period.
    #[schema(value_type = Option<capacity_domain::openapi::QuantityInput>)]
    committed: Option<Quantity>,
    /// Per week; converted to the pool's period.
    #[schema(value_type = Option<capacity_domain::openapi::PerWeekQuantity>)]
    committed_per_week: Option<Quantity>,
    /// At most 100.
    #[serde(default)]
    #[schema(max_items = 100)]
    resources: Vec<Resource>,
    /// Defaults to now; may be in the past (backfill).
    #[schema(value_type = Option<InstantInput>)]
    starts_at: Option<Instant>,
    /// After `starts_at`, not in the past.
    #[schema(value_type = Option<InstantInput>)]
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
        (None, Some(q)) => self::per_week("committed_per_week", q).map(Some),
        (None, None) => Ok(None),
    }
}

/// A per-week figure, at most what converts to 10^12 a month.
pub fn per_week(field: &str, q: Quantity) -> Result<CommitmentInput, ApiError> {
    if q.thousandths() > capacity_domain::openapi::MAX_PER_WEEK_THOUSANDTHS {
        return Err(ApiError::validation(
            field,
            "must be at most 230769230769.23 (10^12 a month)",
        ));
    }
    Ok(CommitmentInput::PerWeek(q))
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

/// Create an allocation
///
/// Refused with 409 `insufficient_capacity` when it would over-commit the
/// pool at any instant from now on.
#[utoipa::path(
    post,
    path = "/v1/capacity/allocations",
    operation_id = "createAllocation",
    tag = "allocations",
    request_body = CreateAllocation,
    responses((status = 201, description = "The new allocation", body = DataBody<AllocationView>,
        headers(("ETag" = String, description = "The allocation's version"), ("Location" = String, description = "The allocation's URL"))))
)]
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

/// A merge patch: absent fields are unchanged, `null` clears `ends_at`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchAllocation {
    /// The new commitment per the pool's period (not with `committed_per_week`).
    #[schema(value_type = Option<capacity_domain::openapi::QuantityInput>)]
    committed: Option<Quantity>,
    /// The new commitment per week (not with `committed`).
    #[schema(value_type = Option<capacity_domain::openapi::PerWeekQuantity>)]
    committed_per_week: Option<Quantity>,
    /// Replaces the resources (at most 100).
    #[schema(max_items = 100)]
    resources: Option<Vec<Resource>>,
    /// Not in the past; `null` clears it. Recorded at once.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<InstantInput>)]
    ends_at: Option<Option<Instant>>,
    /// `active` ⇄ `paused`, or `closed` (final). Recorded at once.
    status: Option<AllocationStatus>,
    /// 1 to 1000 characters, kept in the history.
    #[schema(
        max_length = 1000,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    reason: Option<String>,
    /// Apply commitment and resource changes now instead of at the start of
    /// the next billing period.
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
    // An entity tag as we issue them (`"7"`, or weak `W/"7"`), or the bare
    // version (`7`), as the documented pattern says; anything else is
    // malformed.
    let tag = v.strip_prefix("W/").unwrap_or(v);
    let digits = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .or(Some(tag).filter(|t| !t.contains('"')))
        .filter(|d| !d.is_empty() && d.len() <= 18 && d.bytes().all(|b| b.is_ascii_digit()));
    digits
        .and_then(|d| d.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::validation(
                "If-Match",
                "must be an entity tag as given in ETag, e.g. \"7\", or *",
            )
        })
}

/// Adjust an allocation
///
/// Changes to the commitment and resources take effect at the start of the
/// next billing period (listed in `pending_changes`) unless
/// `effective_immediately` is true.
#[utoipa::path(
    patch,
    path = "/v1/capacity/allocations/{id}",
    operation_id = "patchAllocation",
    tag = "allocations",
    params(
        ("id" = AllocationId, Path, description = "The allocation's id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` last read: the change is refused with 412 if the allocation changed since. `*` matches any version.", pattern = r#"^(\*|(W/)?("[0-9]{1,18}"|[0-9]{1,18}))$"#),
    ),
    request_body(content = PatchAllocation, content_type = "application/json"),
    responses((status = 200, description = "The allocation after the change", body = DataBody<AllocationView>,
        headers(("ETag" = String, description = "The allocation's new version"))))
)]
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

/// List an allocation's history
#[utoipa::path(
    get,
    path = "/v1/capacity/allocations/{id}/history",
    operation_id = "allocationHistory",
    tag = "allocations",
    params(("id" = AllocationId, Path, description = "The allocation's id"), crate::page::PageQuery),
    responses((status = 200, description = "Every change: who, when, why, before and after", body = ListBody<HistoryEntry>))
)]
pub async fn history(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<crate::page::PageQuery>,
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UtilisationQuery {
    /// How many complete weeks back (default 12).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 104)]
    weeks: Option<String>,
}

/// An allocation's weekly utilisation
#[utoipa::path(
    get,
    path = "/v1/capacity/allocations/{id}/utilisation",
    operation_id = "allocationUtilisation",
    tag = "allocations",
    params(("id" = AllocationId, Path, description = "The allocation's id"), UtilisationQuery),
    responses((status = 200, description = "Committed, actual and utilisation per week, oldest first", body = DataBody<UtilisationSeries>))
)]
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
