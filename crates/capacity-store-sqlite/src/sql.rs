//! Small helpers shared by the SQLite queries: error mapping, a WHERE-clause
//! builder that always starts from the tenant scope, and id minting.

use capacity_domain::Instant;
use capacity_domain::ids::{MintedPrefix, mint};
use capacity_store::{Scope, StoreError, Tenant};
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode};

pub trait DbResult<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> DbResult<T> for Result<T, rusqlite::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(e.to_string())
            }
            // A read whose caller stopped waiting (`readers.rs`).
            Some(ErrorCode::OperationInterrupted) => {
                StoreError::Unavailable("the read was interrupted".into())
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

    /// Binds the next positional parameter (`?1` for the first), for a
    /// placeholder already in the SQL.
    pub fn bind(&mut self, v: impl Into<Value>) {
        self.params.push(v.into());
    }

    /// Adds `AND <clause>`, where `{}` in the clause is replaced by a fresh parameter.
    pub fn and(&mut self, clause: &str, v: impl Into<Value>) {
        self.params.push(v.into());
        self.where_word();
        // Written in place: every read builds its query, and with
        // `str::replace` and `format!` this was ~2 % of a get's instructions.
        // Split on the `{` of each `{}` (a char search: splitting on the
        // two-char pattern set up a substring searcher each time).
        let mut pieces = clause.split('{');
        self.sql.push_str(pieces.next().unwrap_or_default());
        for piece in pieces {
            debug_assert!(piece.starts_with('}'), "a clause's braces are its `{{}}`s");
            self.write_index(self.params.len());
            self.sql.push_str(piece.strip_prefix('}').unwrap_or(piece));
        }
    }

    pub fn and_raw(&mut self, clause: &str) {
        self.where_word();
        self.sql.push_str(clause);
    }

    /// Adds `AND <column><op>?n`, binding `v`.
    fn and_column(&mut self, column: &str, op: &str, v: impl Into<Value>) {
        self.where_word();
        self.sql.push_str(column);
        self.sql.push_str(op);
        self.param(v);
    }

    fn where_word(&mut self) {
        self.sql
            .push_str(if self.has_where { " AND " } else { " WHERE " });
        self.has_where = true;
    }

    /// Binds `v` and writes its placeholder.
    fn param(&mut self, v: impl Into<Value>) {
        self.params.push(v.into());
        self.write_index(self.params.len());
    }

    fn write_index(&mut self, n: usize) {
        self.sql.push('?');
        self.sql.push_str(itoa::Buffer::new().format(n));
    }

    /// Restricts rows to what `scope` may see, through the named columns.
    pub fn scoped(&mut self, scope: &Scope, org_col: &str, ws_col: &str) {
        if let Tenant::Organization { id, workspaces } = &scope.tenant {
            self.and_column(org_col, " = ", id.as_str().to_owned());
            if let Some(ws) = workspaces {
                self.where_word();
                self.sql.push_str(ws_col);
                self.sql.push_str(" IN (");
                if ws.is_empty() {
                    self.sql.push_str("NULL");
                }
                for (i, w) in ws.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(", ");
                    }
                    self.param(w.as_str().to_owned());
                }
                self.sql.push(')');
            }
        }
    }

    pub fn page(&mut self, seq_col: &str, after: Option<i64>, limit: u32) {
        if let Some(after) = after {
            self.and_column(seq_col, " > ", after);
        }
        self.sql.push_str(" ORDER BY ");
        self.sql.push_str(seq_col);
        self.sql.push_str(" LIMIT ");
        self.param(limit as i64 + 1);
    }
}

/// Takes the next sequence number of `prefix` and formats the id.
///
/// The number is one past the highest of the prefix's table (each row's
/// `seq` is its id's number, and no such row is ever deleted), and at least
/// the `sequences` row's `next` (a floor: `reserve_ids_from` raises it so
/// that ids loaded from elsewhere are never minted again). A read, not an
/// `UPDATE … RETURNING` of the `sequences` row: the single writer is the
/// only one minting, and the row it inserts next moves the maximum on.
/// (Measured: the update was ~22,000 instructions, a fifth of a create.)
///
/// Within the writer's transaction the number is read once per prefix and
/// then counted on in memory ([`MintedInBatch`]).
pub fn mint_id(
    conn: &Connection,
    prefix: MintedPrefix,
    now: Instant,
) -> Result<(i64, String), StoreError> {
    let i = MintedPrefix::ALL
        .iter()
        .position(|p| *p == prefix)
        .unwrap_or_default();
    let counted = MINTED.with_borrow_mut(|m| {
        let next = m.as_mut()?.get_mut(i)?;
        let seq = next.take()?;
        *next = Some(seq + 1);
        Some(seq)
    });
    let seq = match counted {
        Some(seq) => seq,
        None => {
            let seq: i64 = conn
                .prepare_cached(next_seq_sql(prefix))
                .db()?
                .query_row([], |r| r.get(0))
                .db()?;
            MINTED.with_borrow_mut(|m| {
                if let Some(next) = m.as_mut().and_then(|m| m.get_mut(i)) {
                    *next = Some(seq + 1);
                }
            });
            seq
        }
    };
    Ok((seq, mint(prefix, now.year(), seq)))
}

thread_local! {
    /// The writer's open transaction's next number of each prefix, once
    /// read (`None` outside one: every mint reads).
    static MINTED: std::cell::RefCell<Option<[Option<i64>; MintedPrefix::ALL.len()]>> =
        const { std::cell::RefCell::new(None) };
}

/// Counting minted ids in memory for the span of one write transaction.
///
/// Reading the next number was ~7,000 instructions, twice per create. While
/// the writer holds the write lock (`BEGIN IMMEDIATE` to `COMMIT`) no other
/// connection inserts, and every row of a minted table is inserted with a
/// number from [`mint_id`]; so after one read the next numbers follow. The
/// count is forgotten whenever what was written may have been undone (a
/// failed write, a rolled-back savepoint or transaction) or the floor was
/// raised: the next mint reads again, and numbers stay gapless as before.
pub struct MintedInBatch;

impl MintedInBatch {
    /// Starts counting (the write lock was just taken); what was counted
    /// before is forgotten.
    pub fn start() {
        MINTED.set(Some([None; MintedPrefix::ALL.len()]));
    }
    /// Forgets the counts; the next mints read again.
    pub fn forget() {
        MINTED.with_borrow_mut(|m| {
            if let Some(m) = m {
                *m = [None; MintedPrefix::ALL.len()];
            }
        });
    }
    /// Stops counting (the transaction ended).
    pub fn stop() {
        MINTED.set(None);
    }
}

/// The query of the next number of `prefix` (see [`mint_id`]); also what
/// the benchmark's data generator mints from.
pub fn next_seq_sql(prefix: MintedPrefix) -> &'static str {
    macro_rules! next {
        ($table:literal, $prefix:literal) => {
            concat!(
                "SELECT MAX((SELECT COALESCE(MAX(seq), 0) + 1 FROM ",
                $table,
                "), COALESCE((SELECT next FROM sequences WHERE prefix = '",
                $prefix,
                "'), 1))"
            )
        };
    }
    match prefix {
        MintedPrefix::Pool => next!("pools", "CAP"),
        MintedPrefix::Allocation => next!("allocations", "ALLOC"),
        MintedPrefix::Request => next!("demand_requests", "REQ"),
        MintedPrefix::Event => next!("events", "EVT"),
        MintedPrefix::WebhookEndpoint => next!("webhook_endpoints", "WHE"),
        MintedPrefix::Token => next!("tokens", "TOK"),
        MintedPrefix::Adjustment => next!("supply_changes", "ADJ"),
    }
}

pub fn text_or_internal<T>(v: Option<T>, what: &str) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Internal(format!("unreadable {what} in the database")))
}
