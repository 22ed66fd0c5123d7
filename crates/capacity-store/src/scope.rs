//! Who is asking, and what they may see.

use capacity_domain::{OrgId, WorkspaceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Platform,
    Organization,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Platform => "platform",
            TokenKind::Organization => "organization",
        }
    }
    pub fn parse(s: &str) -> Option<TokenKind> {
        match s {
            "platform" => Some(TokenKind::Platform),
            "organization" => Some(TokenKind::Organization),
            _ => None,
        }
    }
}

/// Which tenants' objects a caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenant {
    /// Every organization.
    Platform,
    /// One organization, optionally narrowed to some of its workspaces.
    Organization {
        id: OrgId,
        workspaces: Option<Vec<WorkspaceId>>,
    },
}

/// The authenticated caller, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub tenant: Tenant,
    pub access: Access,
}

/// The tenant scope every store method takes first.
pub type Scope = Principal;

impl Principal {
    pub fn is_platform(&self) -> bool {
        matches!(self.tenant, Tenant::Platform)
    }
    pub fn organization(&self) -> Option<&OrgId> {
        match &self.tenant {
            Tenant::Platform => None,
            Tenant::Organization { id, .. } => Some(id),
        }
    }
    /// The workspaces this caller is narrowed to, if any.
    pub fn workspaces(&self) -> Option<&[WorkspaceId]> {
        match &self.tenant {
            Tenant::Organization {
                workspaces: Some(w),
                ..
            } => Some(w),
            _ => None,
        }
    }
    /// May this caller see an object of this organization and workspace?
    pub fn sees(&self, org: &OrgId, workspace: &WorkspaceId) -> bool {
        match &self.tenant {
            Tenant::Platform => true,
            Tenant::Organization { id, workspaces } => {
                id == org && workspaces.as_ref().is_none_or(|w| w.contains(workspace))
            }
        }
    }
}
