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
