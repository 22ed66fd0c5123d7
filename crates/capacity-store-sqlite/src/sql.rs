//! Small helpers shared by the SQLite queries: error mapping, a WHERE-clause
//! builder that always starts from the tenant scope, and id minting.

use capacity_domain::Instant;
use capacity_domain::ids::{MintedPrefix, mint};
use capacity_store::{Scope, StoreError, Tenant};
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OptionalExtension};

pub trait DbResult<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> DbResult<T> for Result<T, rusqlite::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Internal(e.to_string()),
        })
    }
}

/// A query under construction: SQL text and its positional parameters.
pub struct Query {
    pub sql: String,
    pub params: Vec<Value>,
    has_where: bool,
}

impl Query {
    pub fn new(sql: &str) -> Query {
        Query {
            sql: sql.to_owned(),
            params: Vec::new(),
            has_where: false,
        }
    }

    pub fn bind(&mut self, v: impl Into<Value>) -> String {
        self.params.push(v.into());
        format!("?{}", self.params.len())
    }

    /// Adds `AND <clause>`, where `{}` in the clause is replaced by a fresh parameter.
    pub fn and(&mut self, clause: &str, v: impl Into<Value>) {
        let p = self.bind(v);
        self.and_raw(&clause.replace("{}", &p));
    }

    pub fn and_raw(&mut self, clause: &str) {
        self.sql
            .push_str(if self.has_where { " AND " } else { " WHERE " });
        self.sql.push_str(clause);
        self.has_where = true;
    }

    /// Restricts rows to what `scope` may see, through the named columns.
    pub fn scoped(&mut self, scope: &Scope, org_col: &str, ws_col: &str) {
        if let Tenant::Organization { id, workspaces } = &scope.tenant {
            self.and(&format!("{org_col} = {{}}"), id.as_str().to_owned());
            if let Some(ws) = workspaces {
                let list: Vec<String> = ws
                    .iter()
                    .map(|w| self.bind(w.as_str().to_owned()))
                    .collect();
                let list = if list.is_empty() {
                    "NULL".to_owned()
                } else {
                    list.join(", ")
                };
                self.and_raw(&format!("{ws_col} IN ({list})"));
            }
        }
    }

    pub fn page(&mut self, seq_col: &str, after: Option<i64>, limit: u32) {
        if let Some(after) = after {
            self.and(&format!("{seq_col} > {{}}"), after);
        }
        let l = self.bind(limit as i64 + 1);
        self.sql.push_str(&format!(" ORDER BY {seq_col} LIMIT {l}"));
    }
}

/// Takes the next sequence number of `prefix` and formats the id.
pub fn mint_id(
    conn: &Connection,
    prefix: MintedPrefix,
    now: Instant,
) -> Result<(i64, String), StoreError> {
    let seq: i64 = conn
        .prepare_cached("UPDATE sequences SET next = next + 1 WHERE prefix = ?1 RETURNING next - 1")
        .db()?
        .query_row([prefix.as_str()], |r| r.get(0))
        .optional()
        .db()?
        .ok_or_else(|| StoreError::Internal(format!("no sequence for {}", prefix.as_str())))?;
    Ok((seq, mint(prefix, now.year(), seq)))
}

pub fn text_or_internal<T>(v: Option<T>, what: &str) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Internal(format!("unreadable {what} in the database")))
}
