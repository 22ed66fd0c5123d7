//! `/v1/capacity`: pools and their supply ledger.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::page::{DataBody, list_body, page_request};
use crate::params::{opt_parse, path_id};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use capacity_domain::model::{SupplySource, UnitPrice};
use capacity_domain::{Delta, Instant, OrgId, Period, PoolId, Quantity, ResourceType, WorkspaceId};
use capacity_store::{NewAdjustment, NewPool, PoolFilter};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workspace_id: Option<String>,
    organization_id: Option<String>,
    resource_type: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let page = page_request(q.limit.as_deref(), q.cursor.as_deref())?;
    if q.organization_id.is_some() && !caller.0.is_platform() {
        return Err(ApiError::validation(
            "organization_id",
            "is a filter for platform tokens only",
        ));
    }
    let filter = PoolFilter {
        workspace_id: opt_parse("workspace_id", q.workspace_id, WorkspaceId::parse)?,
        organization_id: opt_parse("organization_id", q.organization_id, OrgId::parse)?,
        resource_type: opt_parse("resource_type", q.resource_type, parse_resource_type)?,
    };
    let now = s.clock.now();
    let pools = s.store.list_pools(&caller.0, filter, page, now).await?;
    Ok(axum::Json(list_body(pools, |p| p)).into_response())
}

pub fn parse_resource_type(s: &str) -> Result<ResourceType, &'static str> {
    ResourceType::parse(s).ok_or(
        "must be one of talent_hours, compute, storage_gb, agent_credits, intelligence_units",
    )
}

pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, PoolId::parse, "capacity pool")?;
    let pool = s
        .store
        .get_pool(&caller.0, &id, s.clock.now())
        .await
        .map_err(|e| not_found(e, "capacity pool"))?;
    Ok(axum::Json(DataBody { data: pool }).into_response())
}

/// Maps a store "not found" to a message naming the resource.
pub fn not_found(e: capacity_store::StoreError, what: &str) -> ApiError {
    match e {
        capacity_store::StoreError::NotFound => ApiError::not_found(what),
        e => e.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePool {
    workspace_id: WorkspaceId,
    organization_id: OrgId,
    resource_type: ResourceType,
    total: Quantity,
    period: Option<Period>,
    overcommit_ratio: Option<Quantity>,
    unit_price: Option<UnitPrice>,
}

pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<CreatePool>,
) -> ApiResult<Response> {
    let scope = caller.require_platform_write()?;
    let ratio = match body.overcommit_ratio {
        None => 1000,
        Some(r) if r.thousandths() > 0 && r.thousandths() <= 100_000 => r.thousandths(),
        Some(_) => {
            return Err(ApiError::validation(
                "overcommit_ratio",
                "must be greater than 0 and at most 100",
            ));
        }
    };
    if let Some(p) = &body.unit_price {
        p.validate().map_err(|(f, m)| ApiError::validation(f, m))?;
    }
    let new = NewPool {
        period: body.period.unwrap_or(body.resource_type.default_period()),
        workspace_id: body.workspace_id,
        organization_id: body.organization_id,
        resource_type: body.resource_type,
        total: body.total,
        overcommit_ratio: ratio,
        unit_price: body.unit_price,
    };
    let pool = s.store.create_pool(scope, new, s.clock.now()).await?;
    let location = format!("/v1/capacity/{}", pool.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(DataBody { data: pool }),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAdjustment {
    delta: Delta,
    reason: String,
    source: SupplySource,
    effective_at: Option<Instant>,
}

pub async fn adjust(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<CreateAdjustment>,
) -> ApiResult<Response> {
    let scope = caller.require_platform_write()?;
    let id = path_id(&id, PoolId::parse, "capacity pool")?;
    if body.delta.thousandths() == 0 {
        return Err(ApiError::validation("delta", "must not be zero"));
    }
    if body.source == SupplySource::Initial {
        return Err(ApiError::validation(
            "source",
            "initial is written by pool creation only",
        ));
    }
    let reason = crate::params::text("reason", &body.reason, 1000)?;
    let new = NewAdjustment {
        delta: body.delta,
        reason: Some(reason),
        source: body.source,
        effective_at: body.effective_at,
    };
    let (adjustment, pool) = s
        .store
        .adjust_supply(scope, &id, new, s.clock.now())
        .await
        .map_err(|e| not_found(e, "capacity pool"))?;
    let body = serde_json::json!({ "data": { "adjustment": adjustment, "pool": pool } });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

pub async fn list_adjustments(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let page = page_request(q.limit.as_deref(), q.cursor.as_deref())?;
    let id = path_id(&id, PoolId::parse, "capacity pool")?;
    let ledger = s
        .store
        .list_adjustments(&caller.0, &id, page)
        .await
        .map_err(|e| not_found(e, "capacity pool"))?;
    Ok(axum::Json(list_body(ledger, |a| a)).into_response())
}
