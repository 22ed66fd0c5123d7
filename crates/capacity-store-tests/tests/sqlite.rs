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
