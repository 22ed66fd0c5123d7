//! Migrations, embedded in the binary and applied in order at start-up and by
//! `capacity migrate`. Numbers and names match the PostgreSQL backend's.

use crate::sql::DbResult;
use capacity_store::StoreError;
use rusqlite::Connection;

pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "history_action",
        include_str!("../migrations/0002_history_action.sql"),
    ),
    (
        3,
        "usage_weeks",
        include_str!("../migrations/0003_usage_weeks.sql"),
    ),
    (
        4,
        "webhooks",
        include_str!("../migrations/0004_webhooks.sql"),
    ),
];

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .db()?;
    for &(version, name, sql) in MIGRATIONS {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .db()?;
        let applied: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
                [version],
                |r| r.get(0),
            )
            .db()?;
        if !applied {
            tx.execute_batch(sql).db()?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, unixepoch())",
                rusqlite::params![version, name],
            )
            .db()?;
            tracing::info!(version, name, "applied migration");
        }
        tx.commit().db()?;
    }
    Ok(())
}
