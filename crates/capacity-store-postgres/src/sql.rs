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
use futures_util::future::{join, join_all};
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

/// A connection, on which a unit of work runs either statement by statement
/// (autocommit) or inside one transaction. Statements are prepared once per
/// connection and cached. The first failure worth a retry is remembered so
/// the caller ([`crate::PostgresStore`]) can run the whole unit again.
///
/// **No round trip of its own for BEGIN or COMMIT.** A transaction's BEGIN is
/// held back and written together with the unit's first statement; the unit
/// may end with [`Db::pipeline_commit`], which writes its last statements
/// and COMMIT together. The server runs what it receives in order, so this
/// changes only the number of round trips (and wake-ups on both sides), not
/// what each statement sees.
///
/// **Pipelines.** [`Db::pipeline`] sends several statements at once and
/// waits for all their answers. Each is still its own statement (inside a
/// transaction, later ones see what earlier ones did and took, e.g. a
/// statement after a row lock reads with a snapshot taken once that lock is
/// held). Every statement is prepared before any is sent, so that none
/// overtakes another while it waits for its own preparation.
pub struct Db<'a> {
    client: &'a deadpool_postgres::ClientWrapper,
    /// The BEGIN still to be written with the next statement.
    begin: Mutex<Option<&'static str>>,
    /// The transaction was ended by [`Db::pipeline_commit`].
    ended: AtomicBool,
    retry: Mutex<Option<Retry>>,
    failed: AtomicBool,
}

pub type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// One statement of a [`Db::pipeline`].
pub type Piped<'p> = (&'p str, Params<'p>);

impl<'a> Db<'a> {
    /// Statements in autocommit: each its own snapshot.
    pub fn client(c: &'a deadpool_postgres::ClientWrapper) -> Db<'a> {
        Db::new(c, None)
    }

    /// Statements inside one transaction opened by `begin` (`BEGIN …`),
    /// which is sent with the first of them.
    pub fn tx(c: &'a deadpool_postgres::ClientWrapper, begin: &'static str) -> Db<'a> {
        Db::new(c, Some(begin))
    }

    fn new(c: &'a deadpool_postgres::ClientWrapper, begin: Option<&'static str>) -> Db<'a> {
        Db {
            client: c,
            begin: Mutex::new(begin),
            ended: AtomicBool::new(false),
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

    /// Was BEGIN written (so the transaction needs its COMMIT or ROLLBACK)?
    pub fn begun(&self) -> bool {
        self.begin.lock().map(|b| b.is_none()).unwrap_or(true)
    }

    /// Did [`Db::pipeline_commit`] end the transaction (committed, or
    /// rolled back by a failed statement)?
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
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
        self.client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.fail(e))
    }

    fn take_begin(&self) -> Option<&'static str> {
        self.begin.lock().ok().and_then(|mut b| b.take())
    }

    /// Runs `work` (whose first poll writes its statements), preceded on the
    /// wire by the pending BEGIN if there is one.
    async fn with_begin<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        let r = match self.take_begin() {
            None => work.await,
            Some(begin) => {
                // `join` polls the BEGIN first: it is written first.
                let (b, r) = join(self.client.batch_execute(begin), work).await;
                b.and(r)
            }
        };
        r.map_err(|e| self.fail(e))
    }

    pub async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let stmt = self.prepare(sql).await?;
        self.with_begin(self.client.query(&stmt, params)).await
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let stmt = self.prepare(sql).await?;
        self.with_begin(self.client.query_opt(&stmt, params)).await
    }

    pub async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
        let stmt = self.prepare(sql).await?;
        self.with_begin(self.client.query_one(&stmt, params)).await
    }

    pub async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let stmt = self.prepare(sql).await?;
        self.with_begin(self.client.execute(&stmt, params)).await
    }

    /// Sends every statement at once (one round trip) and answers their rows,
    /// in order. The first error is answered (inside a transaction, a failed
    /// statement makes the ones after it fail too).
    pub async fn pipeline(&self, stmts: &[Piped<'_>]) -> Result<Vec<Vec<Row>>, StoreError> {
        let prepared = self.prepare_all(stmts).await?;
        let queries = prepared
            .iter()
            .zip(stmts)
            .map(|(s, (_, p))| self.client.query(s, p));
        self.with_begin(async { join_all(queries).await.into_iter().collect() })
            .await
    }

    /// As [`Db::pipeline`], then COMMIT in the same round trip. Ends the
    /// unit's transaction: the store does not commit it again. If a statement
    /// fails, COMMIT only ends the aborted transaction (the server answers
    /// it with ROLLBACK) and the statement's error is answered. A connection
    /// lost during COMMIT leaves the outcome unknown: never retried.
    pub async fn pipeline_commit(&self, stmts: &[Piped<'_>]) -> Result<Vec<Vec<Row>>, StoreError> {
        let prepared = self.prepare_all(stmts).await?;
        let queries = prepared
            .iter()
            .zip(stmts)
            .map(|(s, (_, p))| self.client.query(s, p));
        let both = join(join_all(queries), self.client.batch_execute("COMMIT"));
        let (rows, commit) = match self.take_begin() {
            None => both.await,
            Some(begin) => {
                let (b, r) = join(self.client.batch_execute(begin), both).await;
                if let Err(e) = b {
                    self.ended.store(true, Ordering::Relaxed);
                    return Err(self.fail(e));
                }
                r
            }
        };
        self.ended.store(true, Ordering::Relaxed);
        let rows = rows
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.fail(e))?;
        match commit {
            Ok(()) => Ok(rows),
            Err(e) => {
                self.failed.store(true, Ordering::Relaxed);
                if let Some(reason) = retry_reason(&e).filter(|r| *r != Retry::Connection)
                    && let Ok(mut r) = self.retry.lock()
                {
                    r.get_or_insert(reason);
                }
                Err(store_error(&e))
            }
        }
    }

    async fn prepare_all(&self, stmts: &[Piped<'_>]) -> Result<Vec<Statement>, StoreError> {
        let mut prepared = Vec::with_capacity(stmts.len());
        for (sql, _) in stmts {
            prepared.push(self.prepare(sql).await?);
        }
        Ok(prepared)
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

/// Statements with owned parameters, sent together by [`Batch::send`].
#[derive(Default)]
pub struct Batch {
    items: Vec<(std::borrow::Cow<'static, str>, Vec<Value>)>,
}

/// Owned parameters for [`Batch::push`].
macro_rules! values {
    ($($v:expr),* $(,)?) => {
        vec![$(Box::new($v) as $crate::sql::Value),*]
    };
}
pub(crate) use values;

impl Batch {
    pub fn push(&mut self, sql: impl Into<std::borrow::Cow<'static, str>>, params: Vec<Value>) {
        self.items.push((sql.into(), params));
    }

    /// Sends every statement in one round trip ([`Db::pipeline`]), and
    /// COMMIT with them when `commit` ([`Db::pipeline_commit`]).
    pub async fn send(&self, db: &Db<'_>, commit: bool) -> Result<Vec<Vec<Row>>, StoreError> {
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = self
            .items
            .iter()
            .map(|(_, p)| {
                p.iter()
                    .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        let stmts: Vec<Piped<'_>> = self
            .items
            .iter()
            .zip(&refs)
            .map(|((sql, _), p)| (sql.as_ref(), p.as_slice()))
            .collect();
        if commit {
            db.pipeline_commit(&stmts).await
        } else {
            db.pipeline(&stmts).await
        }
    }
}

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

/// The SEQUENCE that numbers the ids of `prefix` (migration 0009).
pub fn sequence(prefix: MintedPrefix) -> &'static str {
    match prefix {
        MintedPrefix::Pool => "ids_cap",
        MintedPrefix::Allocation => "ids_alloc",
        MintedPrefix::Request => "ids_req",
        MintedPrefix::Event => "ids_evt",
        MintedPrefix::WebhookEndpoint => "ids_whe",
        MintedPrefix::Token => "ids_tok",
        MintedPrefix::Adjustment => "ids_adj",
    }
}

/// Takes the next number of `prefix` and formats the id. Call it once the
/// write's rules have passed: `nextval` holds no lock, and a number taken
/// is gone even if the transaction then rolls back.
pub async fn mint_id(
    db: &Db<'_>,
    prefix: MintedPrefix,
    now: Instant,
) -> Result<(i64, String), StoreError> {
    let seq: i64 = db
        .query_one(&format!("SELECT nextval('{}')", sequence(prefix)), &[])
        .await?
        .try_get(0)
        .db()?;
    Ok((seq, mint(prefix, now.year(), seq)))
}

/// The text of an id minted at `now` up to its number (`ALLOC-26-`), for
/// statements that take the number themselves (see [`minted_sql`]).
pub fn id_head(prefix: MintedPrefix, now: Instant) -> String {
    let mut id = mint(prefix, now.year(), 0);
    id.truncate(id.len() - 6);
    id
}

/// SQL for the id of number `n` (an SQL expression) after `head` (an SQL
/// expression holding [`id_head`]): the same text as
/// `capacity_domain::ids::mint` (six digits at least).
pub fn minted_sql(head: &str, n: &str) -> String {
    format!("{head} || CASE WHEN {n} < 1000000 THEN lpad({n}::TEXT, 6, '0') ELSE {n}::TEXT END")
}

pub fn text_or_internal<T>(v: Option<T>, what: &str) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Internal(format!("unreadable {what} in the database")))
}
