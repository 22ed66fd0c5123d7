//! `/v1/capacity`: pools and their supply ledger.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, not_found};
use crate::extract::{Json, Query};
use crate::page::ListBody;
use crate::page::{DataBody, PageQuery, list_body, page_request};
use crate::params::{opt_parse, parse_resource_type, path_id};
use crate::schemas::{AdjustmentResult, PoolView};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use capacity_domain::model::Adjustment;
use capacity_domain::model::{SupplySource, UnitPrice};
use capacity_domain::{Delta, Instant, OrgId, Period, PoolId, Quantity, ResourceType, WorkspaceId};
use capacity_store::{NewAdjustment, NewPool, PoolFilter};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = Option<WorkspaceId>)]
    workspace_id: Option<String>,
    /// Platform tokens only.
    #[param(value_type = Option<OrgId>)]
    organization_id: Option<String>,
    #[param(value_type = Option<ResourceType>)]
    resource_type: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `meta.cursor` of the previous page.
    #[param(value_type = Option<String>, pattern = "^c[0-9a-f]{1,15}$")]
    cursor: Option<String>,
}

/// List capacity pools
#[utoipa::path(
    get,
    path = "/v1/capacity",
    operation_id = "listPools",
    tag = "pools",
    params(ListQuery),
    responses((status = 200, description = "The pools the token sees", body = ListBody<PoolView>))
)]
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

/// Get a capacity pool
#[utoipa::path(
    get,
    path = "/v1/capacity/{id}",
    operation_id = "getPool",
    tag = "pools",
    params(("id" = PoolId, Path, description = "The pool's id")),
    responses((status = 200, description = "The pool", body = DataBody<PoolView>))
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePool {
    workspace_id: WorkspaceId,
    organization_id: OrgId,
    resource_type: ResourceType,
    /// Opening supply, per `period`.
    #[schema(value_type = capacity_domain::openapi::QuantityInput)]
    total: Quantity,
    /// Defaults to the resource type's period.
    period: Option<Period>,
    /// Greater than 0, at most 100; default 1.
    #[schema(value_type = Option<f64>, exclusive_minimum = 0, maximum = 100, multiple_of = 0.001)]
    overcommit_ratio: Option<Quantity>,
    unit_price: Option<UnitPrice>,
}

/// Create a capacity pool (platform)
#[utoipa::path(
    post,
    path = "/v1/capacity",
    operation_id = "createPool",
    tag = "pools",
    request_body = CreatePool,
    responses((status = 201, description = "The new pool", body = DataBody<PoolView>,
        headers(("Location" = String, description = "The pool's URL"))))
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdjustment {
    /// The change of supply, ± (not zero). The pool's supply must stay within
    /// [0, 10^12] at every instant (otherwise 422).
    #[schema(value_type = NonZeroDelta)]
    delta: Delta,
    /// 1 to 1000 characters.
    #[schema(
        max_length = 1000,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    reason: String,
    /// Any source but `initial` (written by pool creation).
    #[schema(value_type = AdjustmentSource)]
    source: SupplySource,
    /// When the change takes effect: now (default) or later, never in the past.
    #[schema(value_type = Option<capacity_domain::openapi::InstantInput>)]
    effective_at: Option<Instant>,
}

/// A [`Delta`] other than zero.
pub struct NonZeroDelta;

impl utoipa::PartialSchema for NonZeroDelta {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        // Two ranges rather than `not: {const: 0}`, which generators handle poorly.
        capacity_domain::openapi::schema_from_json(serde_json::json!({
            "description": "An exact signed decimal with at most 3 fractional digits, not zero, magnitude at most 10^12.",
            "oneOf": [
                { "type": "number", "minimum": 0.001, "maximum": 1_000_000_000_000i64, "multipleOf": 0.001 },
                { "type": "number", "minimum": -1_000_000_000_000i64, "maximum": -0.001, "multipleOf": 0.001 },
            ],
            "examples": [40]
        }))
    }
}
impl ToSchema for NonZeroDelta {}

/// Where a supply adjustment comes from: [`SupplySource`] less `initial`.
pub struct AdjustmentSource;

impl utoipa::PartialSchema for AdjustmentSource {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let sources: Vec<&str> = [
            SupplySource::TalentOnboarded,
            SupplySource::TalentOffboarded,
            SupplySource::InfrastructureProvisioned,
            SupplySource::InfrastructureDecommissioned,
            SupplySource::CreditsPurchased,
            SupplySource::CreditsExpired,
            SupplySource::Correction,
        ]
        .map(SupplySource::as_str)
        .into();
        capacity_domain::openapi::schema_from_json(
            serde_json::json!({ "type": "string", "enum": sources }),
        )
    }
}
impl ToSchema for AdjustmentSource {}

/// Adjust a pool's supply (platform)
///
/// Supply changes are facts and are accepted even when they leave the pool
/// over-committed (that emits `capacity.pool_overcommitted`); supply itself
/// may not go below zero.
#[utoipa::path(
    post,
    path = "/v1/capacity/{id}/adjustments",
    operation_id = "adjustSupply",
    tag = "pools",
    params(("id" = PoolId, Path, description = "The pool's id")),
    request_body = CreateAdjustment,
    responses((status = 201, description = "The ledger entry and the pool after it", body = DataBody<AdjustmentResult>))
)]
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

/// List a pool's supply ledger
#[utoipa::path(
    get,
    path = "/v1/capacity/{id}/adjustments",
    operation_id = "listAdjustments",
    tag = "pools",
    params(("id" = PoolId, Path, description = "The pool's id"), PageQuery),
    responses((status = 200, description = "Ledger entries, oldest first", body = ListBody<Adjustment>))
)]
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
