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
