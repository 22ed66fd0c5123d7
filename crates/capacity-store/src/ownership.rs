//! Who owns what (SPEC §5 "Workspaces", §6): a workspace is registered to
//! one organization for ever, and service lines are the platform's. The
//! rules are decided here, once; a backend reads the registration rows,
//! asks these functions, and persists what they answer.
//!
//! Everything a caller cannot see answers [`StoreError::Missing`], exactly
//! as an id that does not exist: an organization token can neither probe
//! nor claim another organization's workspaces and lines.

use crate::{Result, Scope, StoreError};
use capacity_domain::model::ServiceLineStatus;
use capacity_domain::{Instant, OrgId, ServiceLineId, WorkspaceId};

/// A registered workspace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub organization_id: OrgId,
    pub name: Option<String>,
    pub created_at: Instant,
    pub updated_at: Instant,
}

/// The platform's registration of a workspace (`PUT /v1/workspaces/{id}`).
#[derive(Debug, Clone)]
pub struct WorkspacePut {
    pub organization_id: OrgId,
    /// `None` leaves a registered workspace's name as it is.
    pub name: Option<String>,
}

/// What a write that names a workspace does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceUse {
    /// Registered to this organization, and the caller sees it.
    Registered(OrgId),
    /// Not registered yet: the write registers it to this organization
    /// (only the platform ever gets this answer).
    Register(OrgId),
}

impl WorkspaceUse {
    pub fn organization(&self) -> &OrgId {
        match self {
            WorkspaceUse::Registered(org) | WorkspaceUse::Register(org) => org,
        }
    }
}

/// The rule for every write that names `ws` (a pool, a service line, a
/// demand request): `registered` is the organization it is registered to, if
/// any, and `named` the organization the write names, if it names one.
///
/// - A workspace the caller cannot see — another organization's, one outside
///   a narrowed token's list, or one never registered when the caller is an
///   organization — answers exactly as a workspace that does not exist.
/// - Naming a registered workspace with another organization is 409
///   `workspace_organization_mismatch` (the caller sees the workspace, so
///   nothing is revealed).
/// - Only the platform registers, and it must name the organization.
pub fn use_workspace(
    scope: &Scope,
    ws: &WorkspaceId,
    registered: Option<&OrgId>,
    named: Option<&OrgId>,
) -> Result<WorkspaceUse> {
    match registered {
        Some(org) if !scope.sees(org, ws) => Err(StoreError::Missing("workspace")),
        Some(org) => match named {
            Some(n) if n != org => Err(StoreError::conflict(
                "workspace_organization_mismatch",
                format!("workspace {ws} belongs to another organization"),
            )),
            _ => Ok(WorkspaceUse::Registered(org.clone())),
        },
        None if !scope.is_platform() => Err(StoreError::Missing("workspace")),
        None => match named {
            Some(org) => Ok(WorkspaceUse::Register(org.clone())),
            None => Err(StoreError::invalid(
                "organization_id",
                format!("is required: workspace {ws} is not registered yet"),
            )),
        },
    }
}

/// The platform's registration (`PUT /v1/workspaces/{id}`): what to write,
/// if anything. `Ok(None)` when the workspace is registered to that
/// organization already and the name does not change.
pub fn put_workspace(
    scope: &Scope,
    ws: &WorkspaceId,
    registered: Option<&Workspace>,
    put: &WorkspacePut,
    now: Instant,
) -> Result<Option<Workspace>> {
    if !scope.is_platform() {
        return Err(StoreError::Forbidden(
            "only platform tokens register workspaces",
        ));
    }
    match registered {
        Some(w) => {
            use_workspace(
                scope,
                ws,
                Some(&w.organization_id),
                Some(&put.organization_id),
            )?;
            match &put.name {
                Some(name) if w.name.as_ref() != Some(name) => Ok(Some(Workspace {
                    name: Some(name.clone()),
                    updated_at: now,
                    ..w.clone()
                })),
                _ => Ok(None),
            }
        }
        None => Ok(Some(Workspace {
            id: ws.clone(),
            organization_id: put.organization_id.clone(),
            name: put.name.clone(),
            created_at: now,
            updated_at: now,
        })),
    }
}

/// A service line as registered: where it belongs and whether it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRegistration {
    pub workspace_id: WorkspaceId,
    pub organization_id: OrgId,
    pub status: ServiceLineStatus,
}

/// The rule for an allocation naming `line` on a pool of workspace `ws`
/// (SPEC §5 "Creating"): `Ok(true)` when the create registers the line
/// (a platform caller naming a line not seen before), `Ok(false)` when the
/// line is registered to `ws` and open.
///
/// A line of another workspace is 409 `service_line_workspace_mismatch`
/// when the caller sees that workspace, and otherwise answers exactly as a
/// line that does not exist — as does an unknown line named by an
/// organization token: service lines are the platform's.
pub fn use_line(
    scope: &Scope,
    line: &ServiceLineId,
    registered: Option<&LineRegistration>,
    ws: &WorkspaceId,
) -> Result<bool> {
    match registered {
        None if scope.is_platform() => Ok(true),
        None => Err(StoreError::Missing("service line")),
        Some(r) if &r.workspace_id != ws => {
            if scope.sees(&r.organization_id, &r.workspace_id) {
                Err(StoreError::conflict(
                    "service_line_workspace_mismatch",
                    format!("service line {line} belongs to another workspace"),
                ))
            } else {
                Err(StoreError::Missing("service line"))
            }
        }
        Some(r) if r.status == ServiceLineStatus::Closed => Err(StoreError::conflict(
            "service_line_closed",
            format!("service line {line} is closed"),
        )),
        Some(_) => Ok(false),
    }
}

/// The rule for the platform's signal on `line` (`PUT /v1/service-lines`):
/// a line belongs to the workspace it was first registered to.
pub fn put_line(
    line: &ServiceLineId,
    registered: Option<&LineRegistration>,
    ws: &WorkspaceId,
) -> Result<()> {
    match registered {
        Some(r) if &r.workspace_id != ws => Err(StoreError::conflict(
            "service_line_workspace_mismatch",
            format!("service line {line} belongs to another workspace"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Access, Principal, Tenant};

    fn org(id: &str, narrowed: Option<&[&str]>) -> Scope {
        Principal {
            token_id: "t".into(),
            tenant: Tenant::Organization {
                id: OrgId::parse(id).unwrap(),
                workspaces: narrowed
                    .map(|w| w.iter().map(|w| WorkspaceId::parse(w).unwrap()).collect()),
            },
            access: Access::Write,
        }
    }
    fn platform() -> Scope {
        Principal {
            token_id: "p".into(),
            tenant: Tenant::Platform,
            access: Access::Write,
        }
    }
    fn ws(s: &str) -> WorkspaceId {
        WorkspaceId::parse(s).unwrap()
    }
    fn o(s: &str) -> OrgId {
        OrgId::parse(s).unwrap()
    }
    fn missing<T: std::fmt::Debug>(r: Result<T>) -> bool {
        matches!(r, Err(StoreError::Missing(_)))
    }

    #[test]
    fn an_organization_never_registers_or_sees_what_is_not_its_own() {
        let a = org("ORG-26-000001", None);
        let w = ws("WS-26-000001");
        // Never registered, another organization's, and named with another
        // organization: the same answer.
        assert!(missing(use_workspace(&a, &w, None, None)));
        assert!(missing(use_workspace(
            &a,
            &w,
            None,
            Some(&o("ORG-26-000001"))
        )));
        assert!(missing(use_workspace(
            &a,
            &w,
            Some(&o("ORG-26-000002")),
            None
        )));
        assert_eq!(
            use_workspace(&a, &w, Some(&o("ORG-26-000001")), None).unwrap(),
            WorkspaceUse::Registered(o("ORG-26-000001"))
        );
        let narrowed = org("ORG-26-000001", Some(&["WS-26-000002"]));
        assert!(missing(use_workspace(
            &narrowed,
            &w,
            Some(&o("ORG-26-000001")),
            None
        )));
    }

    #[test]
    fn the_platform_registers_once_and_for_ever() {
        let p = platform();
        let w = ws("WS-26-000001");
        assert_eq!(
            use_workspace(&p, &w, None, Some(&o("ORG-26-000001"))).unwrap(),
            WorkspaceUse::Register(o("ORG-26-000001"))
        );
        assert!(matches!(
            use_workspace(&p, &w, None, None),
            Err(StoreError::Invalid {
                field: "organization_id",
                ..
            })
        ));
        assert!(matches!(
            use_workspace(&p, &w, Some(&o("ORG-26-000001")), Some(&o("ORG-26-000002"))),
            Err(StoreError::Conflict {
                code: "workspace_organization_mismatch",
                ..
            })
        ));
    }

    #[test]
    fn lines_are_the_platforms() {
        let line = ServiceLineId::parse("LIN-26-000001").unwrap();
        let w1 = ws("WS-26-000001");
        let elsewhere = LineRegistration {
            workspace_id: ws("WS-26-000002"),
            organization_id: o("ORG-26-000002"),
            status: ServiceLineStatus::Active,
        };
        let a = org("ORG-26-000001", None);
        // Unknown and another organization's: the same answer.
        assert!(missing(use_line(&a, &line, None, &w1)));
        assert!(missing(use_line(&a, &line, Some(&elsewhere), &w1)));
        // The platform registers, and sees the other workspace.
        assert!(use_line(&platform(), &line, None, &w1).unwrap());
        assert!(matches!(
            use_line(&platform(), &line, Some(&elsewhere), &w1),
            Err(StoreError::Conflict {
                code: "service_line_workspace_mismatch",
                ..
            })
        ));
        let own = LineRegistration {
            workspace_id: w1.clone(),
            organization_id: o("ORG-26-000001"),
            status: ServiceLineStatus::Active,
        };
        assert!(!use_line(&a, &line, Some(&own), &w1).unwrap());
    }
}
