//! Small helpers shared by the PostgreSQL queries: error mapping, the [`Db`]
//! handle every query goes through (it prepares and caches statements and
//! notes failures worth retrying the whole transaction for), a WHERE-clause
//! builder that always starts from the tenant scope, and id minting.
//!
//! Mirrors the SQLite backend's `sql.rs`, so a query is ported by swapping
//! `?N` for `$N` and `rusqlite` calls for [`Db`] calls.

use capacity_domain::Instant;
use capacity_domain::ids::{MintedPrefix, mint};
use capacity_store::{Scope, StoreError, Tenant};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

/// Why a failed transaction may be run again from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Serialization failure (40001) or deadlock (40P01): PostgreSQL asks
    /// for the transaction to be retried.
    Transient,
    /// A unique key taken by a concurrent transaction (23505): run again, the
    /// rules see the committed row and answer properly (e.g. `pool_exists`).
    UniqueRace,
    /// The connection broke before COMMIT was sent: nothing was written.
    Connection,
}

/// Maps a driver error to the contract's error: unreachable, overloaded or
/// timed-out databases are `Unavailable` (503, worth retrying), anything
/// else is `Internal`.
pub fn store_error(e: &tokio_postgres::Error) -> StoreError {
    let text = describe(e);
    if let Some(code) = e.code() {
        let c = code.code();
        // 08 connection exception, 53 insufficient resources, 57 operator
        // intervention (57014: statement_timeout), 55P03 lock not available,
        // 40001/40P01 once retries are exhausted.
        if c.starts_with("08")
            || c.starts_with("53")
            || c.starts_with("57")
            || code == &SqlState::LOCK_NOT_AVAILABLE
            || code == &SqlState::T_R_SERIALIZATION_FAILURE
            || code == &SqlState::T_R_DEADLOCK_DETECTED
        {
            return StoreError::Unavailable(text);
        }
        return StoreError::Internal(text);
    }
    if is_connection_error(e) {
        StoreError::Unavailable(text)
    } else {
        StoreError::Internal(text)
    }
}

fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    e.code().is_none()
        && (e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()))
}

/// Which failures make a transaction worth running again.
pub fn retry_reason(e: &tokio_postgres::Error) -> Option<Retry> {
    match e.code() {
        Some(c) if c == &SqlState::T_R_SERIALIZATION_FAILURE => Some(Retry::Transient),
        Some(c) if c == &SqlState::T_R_DEADLOCK_DETECTED => Some(Retry::Transient),
        Some(c) if c == &SqlState::UNIQUE_VIOLATION => Some(Retry::UniqueRace),
        None if is_connection_error(e) => Some(Retry::Connection),
        _ => None,
    }
}

/// The server's message, not just "db error".
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

/// `.db()` turns a driver result into a contract result (row decoding,
/// pool set-up: places where no transaction retry applies).
pub trait DbResult<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> DbResult<T> for Result<T, tokio_postgres::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| store_error(&e))
    }
}

enum Conn<'a> {
    Client(&'a deadpool_postgres::ClientWrapper),
    Tx(&'a deadpool_postgres::Transaction<'a>),
}

/// A connection, or a transaction on one. Statements are prepared once per
/// connection and cached. The first failure worth a retry is remembered so
/// the caller ([`crate::PostgresStore`]) can run the whole unit again.
pub struct Db<'a> {
    conn: Conn<'a>,
    retry: Mutex<Option<Retry>>,
    failed: AtomicBool,
}

pub type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<'a> Db<'a> {
    pub fn client(c: &'a deadpool_postgres::ClientWrapper) -> Db<'a> {
        Db {
            conn: Conn::Client(c),
            retry: Mutex::new(None),
            failed: AtomicBool::new(false),
        }
    }

    pub fn tx(t: &'a deadpool_postgres::Transaction<'a>) -> Db<'a> {
        Db {
            conn: Conn::Tx(t),
            retry: Mutex::new(None),
            failed: AtomicBool::new(false),
        }
    }

    /// Why the unit may be retried, if one of its statements failed so.
    pub fn retry(&self) -> Option<Retry> {
        self.retry.lock().ok().and_then(|r| *r)
    }

    /// Did any statement fail (which aborts a transaction)?
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn fail(&self, e: tokio_postgres::Error) -> StoreError {
        self.failed.store(true, Ordering::Relaxed);
        if let Some(reason) = retry_reason(&e)
            && let Ok(mut r) = self.retry.lock()
        {
            r.get_or_insert(reason);
        }
        store_error(&e)
    }

    async fn prepare(&self, sql: &str) -> Result<Statement, StoreError> {
        let r = match &self.conn {
            Conn::Client(c) => c.prepare_cached(sql).await,
            Conn::Tx(t) => t.prepare_cached(sql).await,
        };
        r.map_err(|e| self.fail(e))
    }

    pub async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let stmt = self.prepare(sql).await?;
        let r = match &self.conn {
            Conn::Client(c) => c.query(&stmt, params).await,
            Conn::Tx(t) => t.query(&stmt, params).await,
        };
        r.map_err(|e| self.fail(e))
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let stmt = self.prepare(sql).await?;
        let r = match &self.conn {
            Conn::Client(c) => c.query_opt(&stmt, params).await,
            Conn::Tx(t) => t.query_opt(&stmt, params).await,
        };
        r.map_err(|e| self.fail(e))
    }

    pub async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
        let stmt = self.prepare(sql).await?;
        let r = match &self.conn {
            Conn::Client(c) => c.query_one(&stmt, params).await,
            Conn::Tx(t) => t.query_one(&stmt, params).await,
        };
        r.map_err(|e| self.fail(e))
    }

    pub async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let stmt = self.prepare(sql).await?;
        let r = match &self.conn {
            Conn::Client(c) => c.execute(&stmt, params).await,
            Conn::Tx(t) => t.execute(&stmt, params).await,
        };
        r.map_err(|e| self.fail(e))
    }

    /// Runs a [`Query`] built with its parameters.
    pub async fn query_built(&self, q: &Query) -> Result<Vec<Row>, StoreError> {
        self.query(&q.sql, &q.refs()).await
    }

    pub async fn query_opt_built(&self, q: &Query) -> Result<Option<Row>, StoreError> {
        self.query_opt(&q.sql, &q.refs()).await
    }
}

/// A parameter value owned by a [`Query`].
pub type Value = Box<dyn ToSql + Sync + Send>;

/// A query under construction: SQL text and its positional parameters.
pub struct Query {
    pub sql: String,
    params: Vec<Value>,
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

    pub fn bind(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    /// Adds `AND <clause>`, where `{}` in the clause is replaced by a fresh parameter.
    pub fn and(&mut self, clause: &str, v: impl ToSql + Sync + Send + 'static) {
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
                // One array parameter keeps the SQL text (and so the cached
                // statement) the same whatever the number of workspaces.
                let list: Vec<String> = ws.iter().map(|w| w.as_str().to_owned()).collect();
                self.and(&format!("{ws_col} = ANY({{}})"), list);
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

    /// Appends raw SQL (e.g. a locking clause) after the conditions.
    pub fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// Takes the next sequence number of `prefix` and formats the id. The
/// UPDATE holds the sequence row's lock until commit, so numbers of one
/// prefix commit in order: a reader that sees number n sees every number
/// below it that will ever exist.
pub async fn mint_id(
    db: &Db<'_>,
    prefix: MintedPrefix,
    now: Instant,
) -> Result<(i64, String), StoreError> {
    let seq: i64 = db
        .query_opt(
            "UPDATE sequences SET next = next + 1 WHERE prefix = $1 RETURNING next - 1",
            &[&prefix.as_str()],
        )
        .await?
        .ok_or_else(|| StoreError::Internal(format!("no sequence for {}", prefix.as_str())))?
        .try_get(0)
        .db()?;
    Ok((seq, mint(prefix, now.year(), seq)))
}

pub fn text_or_internal<T>(v: Option<T>, what: &str) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Internal(format!("unreadable {what} in the database")))
}
