//! The conformance suite on SQLite: every rule, each on a fresh database file.

use capacity_store::Store;
use capacity_store_sqlite::SqliteStore;
use std::sync::Arc;

async fn fresh(_test: &'static str) -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = SqliteStore::open(dir.path().join("conformance.db")).expect("open SQLite");
    Some((Arc::new(store), dir))
}

capacity_store_tests::conformance_tests!(fresh);

#[tokio::test]
async fn an_unreadable_workspace_list_fails_closed() {
    let (store, dir) = fresh("an_unreadable_workspace_list_fails_closed")
        .await
        .unwrap();
    let id = capacity_store_tests::tokens::a_narrowed_token(store.as_ref()).await;
    let raw = rusqlite::Connection::open(dir.path().join("conformance.db")).unwrap();
    raw.execute(
        "UPDATE tokens SET workspaces = 'not json' WHERE id = ?1",
        [&id],
    )
    .unwrap();
    capacity_store_tests::tokens::an_unreadable_workspace_list_fails_closed(store.as_ref()).await;
}

/// The shared rule, with the stored list overwritten by SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_event_types_deliver_nothing() {
    let (store, dir) = fresh("unreadable_event_types_deliver_nothing")
        .await
        .unwrap();
    let path = dir.path().join("conformance.db");
    capacity_store_tests::webhooks::unreadable_event_types_deliver_nothing(
        store,
        |id| async move {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            let n = conn
            .execute(
                "UPDATE webhook_endpoints SET event_types = '{\"not\": \"a list\"}' WHERE id = ?1",
                [id],
            )
            .unwrap();
            assert_eq!(n, 1);
        },
    )
    .await;
}

/// Migration 0012 registers the workspaces already stored, from their rows:
/// the registry is dropped and its migration forgotten, then run again.
#[tokio::test]
async fn stored_workspaces_are_registered_by_their_migration() {
    let (store, dir) = fresh("stored_workspaces_are_registered_by_their_migration")
        .await
        .unwrap();
    capacity_store_tests::ownership::rows_before_the_registry(store.as_ref()).await;
    drop(store);
    let path = dir.path().join("conformance.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE workspaces; DELETE FROM schema_migrations WHERE version = 12")
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    capacity_store_tests::ownership::the_migration_registered_the_stored_workspaces(&store).await;
}

/// Stored data that does not decode fails closed: an allocation's resources,
/// an idempotency key's stored answer.
#[tokio::test]
async fn unreadable_stored_json_fails_closed() {
    let (store, dir) = fresh("unreadable_stored_json_fails_closed").await.unwrap();
    let id = capacity_store_tests::allocations::an_allocation_to_damage(store.as_ref()).await;
    let key = capacity_store_tests::idempotency::an_answered_key_to_damage(store.as_ref()).await;
    let raw = rusqlite::Connection::open(dir.path().join("conformance.db")).unwrap();
    raw.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    raw.execute_batch(
        "UPDATE allocation_terms SET resources = 'not json'; \
         UPDATE idempotency_keys SET body = CAST('{\"headers\": 1}' AS BLOB)",
    )
    .unwrap();
    capacity_store_tests::allocations::unreadable_resources_fail_closed(store.as_ref(), &id).await;
    capacity_store_tests::idempotency::an_unreadable_answer_fails_closed(store.as_ref(), key).await;
}
