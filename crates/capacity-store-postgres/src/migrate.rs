//! Migrations, embedded in the binary and applied in order at start-up and by
//! `capacity migrate`. Numbers and names match the SQLite backend's.
//!
//! Several processes may start at once against one database (a rolling
//! deploy, three servers behind a load balancer). Each migration runs in its
//! own transaction that first takes a transaction-scoped advisory lock, so
//! exactly one process applies it and the others, once the lock is theirs,
//! find it recorded and skip it. PostgreSQL's DDL is transactional: a
//! migration that fails leaves nothing behind.

use crate::sql::DbResult;
use capacity_store::StoreError;
use tokio_postgres::Client;

/// `(version, name, sql)`, in order; the file stem is `{version:04}_{name}`.
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
    (
        5,
        "evaluations",
        include_str!("../migrations/0005_evaluations.sql"),
    ),
    (
        6,
        "list_indexes",
        include_str!("../migrations/0006_list_indexes.sql"),
    ),
    (
        7,
        "commitment_steps_clustered",
        include_str!("../migrations/0007_commitment_steps_clustered.sql"),
    ),
    (
        8,
        "commitment_totals",
        include_str!("../migrations/0008_commitment_totals.sql"),
    ),
    (
        9,
        "id_sequences",
        include_str!("../migrations/0009_id_sequences.sql"),
    ),
    (
        10,
        "fewer_allocation_indexes",
        include_str!("../migrations/0010_fewer_allocation_indexes.sql"),
    ),
    (
        11,
        "allocation_terms_clustered",
        include_str!("../migrations/0011_allocation_terms_clustered.sql"),
    ),
    (
        12,
        "workspaces",
        include_str!("../migrations/0012_workspaces.sql"),
    ),
    (
        13,
        "idempotency_purge",
        include_str!("../migrations/0013_idempotency_purge.sql"),
    ),
    (
        14,
        "webhook_leases",
        include_str!("../migrations/0014_webhook_leases.sql"),
    ),
];

/// The advisory lock key of migrations ("capacity" in ASCII).
pub const LOCK_KEY: i64 = 0x6361_7061_6369_7479;

pub async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    {
        let tx = client.transaction().await.db()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .db()?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .await
        .db()?;
        tx.commit().await.db()?;
    }
    for &(version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await.db()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .db()?;
        let applied: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
                &[&version],
            )
            .await
            .db()?
            .try_get(0)
            .db()?;
        if !applied {
            tx.batch_execute(sql).await.db()?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) \
                 VALUES ($1, $2, EXTRACT(EPOCH FROM now())::BIGINT)",
                &[&version, &name],
            )
            .await
            .db()?;
            tracing::info!(version, name, "applied migration");
        }
        tx.commit().await.db()?;
    }
    Ok(())
}
