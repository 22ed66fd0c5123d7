//! `/v1/workspaces`: which organization each workspace belongs to (SPEC §5
//! "Workspaces"). The platform registers them; every caller reads its own.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::error::not_found;
use crate::extract::{Json, Query};
use crate::page::PageQuery;
use crate::page::{DataBody, ListBody, list_body, page_request};
use crate::params::{path_id, text};
use crate::schemas::WorkspaceView;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capacity_domain::{OrgId, WorkspaceId};
use capacity_store::WorkspacePut;
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutWorkspace {
    /// The organization the workspace belongs to, for ever.
    organization_id: OrgId,
    /// 1 to 200 characters; absent leaves the name as it is.
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"
    )]
    name: Option<String>,
}

/// Register a workspace to its organization (platform)
///
/// Registers the workspace (201), or renames one already registered to
/// that organization (200). A workspace belongs to one organization for
/// ever: naming another is 409 `workspace_organization_mismatch`.
#[utoipa::path(
    put,
    path = "/v1/workspaces/{id}",
    operation_id = "putWorkspace",
    tag = "workspaces",
    params(("id" = WorkspaceId, Path, description = "The workspace's id")),
    request_body = PutWorkspace,
    responses(
        (status = 200, description = "The workspace, registered before", body = DataBody<WorkspaceView>),
        (status = 201, description = "The workspace, registered now", body = DataBody<WorkspaceView>),
    )
)]
pub async fn put(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<PutWorkspace>,
) -> ApiResult<Response> {
    let scope = caller.require_platform_write()?;
    let id = path_id(&id, WorkspaceId::parse, "workspace")?;
    let put = WorkspacePut {
        organization_id: body.organization_id,
        name: body.name.map(|n| text("name", &n, 200)).transpose()?,
    };
    let (workspace, created) = s
        .store
        .put_workspace(scope, &id, put, s.clock.now())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(DataBody { data: workspace })).into_response())
}

/// Get a workspace
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}",
    operation_id = "getWorkspace",
    tag = "workspaces",
    params(("id" = WorkspaceId, Path, description = "The workspace's id")),
    responses((status = 200, description = "The workspace", body = DataBody<WorkspaceView>))
)]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, WorkspaceId::parse, "workspace")?;
    let workspace = s
        .store
        .get_workspace(&caller.0, &id)
        .await
        .map_err(|e| not_found(e, "workspace"))?;
    Ok(axum::Json(DataBody { data: workspace }).into_response())
}

/// List workspaces
///
/// The workspaces the token sees: every one for a platform token, its
/// organization's (or those it is narrowed to) for an organization token.
#[utoipa::path(
    get,
    path = "/v1/workspaces",
    operation_id = "listWorkspaces",
    tag = "workspaces",
    params(PageQuery),
    responses((status = 200, description = "The workspaces the token sees", body = ListBody<WorkspaceView>))
)]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let page = page_request(q.limit.as_deref(), q.cursor.as_deref())?;
    let workspaces = s.store.list_workspaces(&caller.0, page).await?;
    Ok(axum::Json(list_body(workspaces, |w| w)).into_response())
}
