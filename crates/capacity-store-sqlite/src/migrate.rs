//! Migrations, embedded in the binary and applied in order at start-up and by
//! `capacity migrate`. Numbers and names match the PostgreSQL backend's.

use crate::sql::DbResult;
use capacity_store::StoreError;
use rusqlite::Connection;

/// `(file stem, sql)`, in order; the stem is `{version:04}_{name}`.
macro_rules! migrations {
    ($($stem:literal),* $(,)?) => {
        &[$(($stem, include_str!(concat!("../migrations/", $stem, ".sql")))),*]
    };
}

pub const MIGRATIONS: &[(&str, &str)] = migrations![
    "0001_init",
    "0002_history_action",
    "0003_usage_weeks",
    "0004_webhooks",
    "0005_evaluations",
    "0006_list_indexes",
    "0007_commitment_steps_clustered",
    "0008_commitment_totals",
    "0009_id_sequences",
    "0010_fewer_allocation_indexes",
    "0011_allocation_terms_clustered",
    "0012_workspaces",
    "0013_idempotency_purge",
    "0014_webhook_leases",
];

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .db()?;
    for &(stem, sql) in MIGRATIONS {
        let (version, name) = stem.split_once('_').unwrap_or((stem, stem));
        let version: i64 = version.parse().unwrap_or(0);
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
