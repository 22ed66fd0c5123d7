//! The conformance suite on PostgreSQL: every rule, each in a fresh database
//! (`capacity_t_<random>`, dropped afterwards) on the server named by
//! `CAPACITY_TEST_POSTGRES_URL`. Without that variable each test says it was
//! skipped and why, and passes.

use capacity_store::Store;
use capacity_store_postgres::PostgresStore;
use capacity_store_postgres::testing::TestDatabase;
use std::sync::Arc;

async fn fresh(test: &'static str) -> Option<(Arc<dyn Store>, TestDatabase)> {
    let db = TestDatabase::from_env(test).await?;
    let store = PostgresStore::open(&db.url)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", db.url));
    Some((Arc::new(store), db))
}

capacity_store_tests::conformance_tests!(fresh);

/// Several processes starting at once against one new database: exactly one
/// applies each migration, none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_are_safe_to_run_concurrently() {
    let Some(db) = TestDatabase::from_env("migrations_are_safe_to_run_concurrently").await else {
        return;
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let url = db.url.clone();
        tasks.spawn(async move { PostgresStore::open(&url).await.map(|_| ()) });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("open and migrate");
    }
    let store = PostgresStore::open(&db.url).await.unwrap();
    assert!(store.is_empty().await.unwrap());
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let applied: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: Vec<(i64, String)> = capacity_store_postgres::migrate::MIGRATIONS
        .iter()
        .map(|m| (m.0, m.1.to_owned()))
        .collect();
    assert_eq!(applied, expected);
}

/// An unreachable server is `Unavailable` (503), not a crash or a hang.
#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    let opts = capacity_store_postgres::Options {
        connect_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    // Port 1 on loopback: nothing listens there.
    let r = PostgresStore::open_with("postgres://postgres@127.0.0.1:1/none", opts).await;
    match r {
        Err(capacity_store::StoreError::Unavailable(_)) => {}
        Err(e) => panic!("expected unavailable, got {e:?}"),
        Ok(_) => panic!("expected unavailable, got a store"),
    }
}

/// The two migration histories describe the same tables and columns (the
/// drift a shared suite cannot see until a query fails).
#[tokio::test]
async fn both_backends_have_the_same_tables_and_columns() {
    let Some(db) = TestDatabase::from_env("both_backends_have_the_same_tables_and_columns").await
    else {
        return;
    };
    PostgresStore::open(&db.url).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut pg: Vec<(String, String)> = client
        .query(
            "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns \
             WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    pg.sort();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.db");
    drop(capacity_store_sqlite::SqliteStore::open(&path).unwrap());
    let lite = rusqlite::Connection::open(&path).unwrap();
    let mut stmt = lite
        .prepare(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table'",
        )
        .unwrap();
    let mut sqlite: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    sqlite.sort();
    assert_eq!(pg, sqlite);
}
