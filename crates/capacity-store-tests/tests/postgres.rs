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
    // Columns only PostgreSQL has, on purpose (migration 0009: the outbox
    // is fanned out by writing transaction; SQLite's one writer commits
    // events in number order).
    const POSTGRES_ONLY: &[(&str, &str)] = &[("events", "txid"), ("webhook_fanout", "last_txid")];
    pg.retain(|(t, c)| !POSTGRES_ONLY.contains(&(t.as_str(), c.as_str())));
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

/// Inserts an event as the store does (numbered by `ids_evt`, `txid` by
/// default) on a raw connection, so a test decides when it commits.
async fn insert_raw_event(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "INSERT INTO events (seq, id, organization_id, workspace_id, type, data, created_at) \
             SELECT n, 'EVT-26-' || lpad(n::TEXT, 6, '0'), 'ORG-26-000001', 'WS-26-000001', \
             'capacity.pool.updated', '{\"object\":{}}', 0 FROM (SELECT nextval('ids_evt') AS n) s \
             RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Event numbers are taken without a lock, so a transaction may commit a
/// later-numbered event before another commits an earlier one. The
/// fan-out must neither hand out the later one past the earlier (it waits
/// for the earlier transaction) nor skip the earlier one once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fan_out_never_skips_an_event_that_commits_after_a_later_one() {
    use capacity_store_tests::{now, platform, webhooks::endpoint};
    let Some((store, db)) =
        fresh("the_fan_out_never_skips_an_event_that_commits_after_a_later_one").await
    else {
        return;
    };
    store
        .create_webhook_endpoint(
            &platform(),
            endpoint("https://hooks.example.com/a", &["*"]),
            now(),
        )
        .await
        .unwrap();
    let (first, second) = (raw(&db.url).await, raw(&db.url).await);
    first.batch_execute("BEGIN").await.unwrap();
    let early = insert_raw_event(&first).await;
    second.batch_execute("BEGIN").await.unwrap();
    let late = insert_raw_event(&second).await;
    assert!(early < late, "{early} numbered before {late}");
    second.batch_execute("COMMIT").await.unwrap();

    // The later event is committed, the earlier one not yet: nothing goes
    // out (the earlier transaction, still running, holds the later back).
    let lease = 60_000_000;
    let jobs = store.claim_deliveries(now(), 10, lease).await.unwrap();
    assert!(
        jobs.is_empty(),
        "handed out before {early} committed: {jobs:?}"
    );

    // Once it commits, both go out, in number order.
    first.batch_execute("COMMIT").await.unwrap();
    let seen: Vec<String> = store
        .claim_deliveries(now(), 10, lease)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.event_id)
        .collect();
    assert_eq!(seen, vec![early, late]);
}

/// Creates running at once each get their own number, from one sequence
/// with no lock held, and a refused create takes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_take_distinct_numbers_and_refusals_take_none() {
    use capacity_store::{EventFilter, StoreError};
    use capacity_store_tests::{allocate, page, platform, talent_pool};
    use std::collections::HashSet;
    let Some((store, _db)) =
        fresh("concurrent_creates_take_distinct_numbers_and_refusals_take_none").await
    else {
        return;
    };
    let pool = talent_pool(store.as_ref(), 1000).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (store, id) = (store.clone(), pool.id.clone());
        tasks.spawn(async move { allocate(store.as_ref(), &id, 100 + i, 1).await });
    }
    let mut numbers = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let a = r.expect("task").expect("created");
        numbers.push(
            capacity_domain::ids::parse_minted(
                capacity_domain::ids::MintedPrefix::Allocation,
                a.id.as_str(),
            )
            .unwrap(),
        );
    }
    numbers.sort();
    let distinct: HashSet<i64> = numbers.iter().copied().collect();
    assert_eq!(distinct.len(), 40, "{numbers:?}");
    let events = store
        .list_events(&platform(), EventFilter::default(), page(100))
        .await
        .unwrap();
    let event_ids: HashSet<&str> = events.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(event_ids.len(), events.items.len());

    let refused = allocate(store.as_ref(), &pool.id, 999, 10_000).await;
    assert!(
        matches!(refused, Err(StoreError::InsufficientCapacity { .. })),
        "{refused:?}"
    );
    let next = allocate(store.as_ref(), &pool.id, 1000, 1).await.unwrap();
    let last = *numbers.last().unwrap();
    assert_eq!(
        capacity_domain::ids::parse_minted(
            capacity_domain::ids::MintedPrefix::Allocation,
            next.id.as_str()
        ),
        Some(last + 1)
    );
}

/// Writes judge against timelines a process caches per pool generation:
/// two processes (two stores) writing to one pool in turn each see what
/// the other committed, so together they still never overcommit.
#[tokio::test]
async fn processes_writing_to_one_pool_in_turn_never_overcommit() {
    use capacity_store::StoreError;
    use capacity_store_tests::{allocate, now, platform, talent_pool};
    let Some((first, db)) = fresh("processes_writing_to_one_pool_in_turn_never_overcommit").await
    else {
        return;
    };
    let second: Arc<dyn Store> = Arc::new(PostgresStore::open(&db.url).await.unwrap());
    let pool = talent_pool(first.as_ref(), 10).await;
    allocate(first.as_ref(), &pool.id, 1, 6).await.unwrap();
    allocate(second.as_ref(), &pool.id, 2, 3).await.unwrap();
    // The first process cached the pool before the second's create.
    let refused = allocate(first.as_ref(), &pool.id, 3, 3).await;
    assert!(
        matches!(refused, Err(StoreError::InsufficientCapacity { .. })),
        "{refused:?}"
    );
    allocate(first.as_ref(), &pool.id, 4, 1).await.unwrap();
    let refused = allocate(second.as_ref(), &pool.id, 5, 1).await;
    assert!(
        matches!(refused, Err(StoreError::InsufficientCapacity { .. })),
        "{refused:?}"
    );
    let p = second.get_pool(&platform(), &pool.id, now()).await.unwrap();
    assert_eq!(p.allocated, 10_000);
}

#[tokio::test]
async fn an_unreadable_workspace_list_fails_closed() {
    let Some((store, db)) = fresh("an_unreadable_workspace_list_fails_closed").await else {
        return;
    };
    let id = capacity_store_tests::tokens::a_narrowed_token(store.as_ref()).await;
    raw(&db.url)
        .await
        .execute(
            "UPDATE tokens SET workspaces = 'not json' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    capacity_store_tests::tokens::an_unreadable_workspace_list_fails_closed(store.as_ref()).await;
}

/// The shared rule, with the stored list overwritten by SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_event_types_deliver_nothing() {
    let Some((store, db)) = fresh("unreadable_event_types_deliver_nothing").await else {
        return;
    };
    let url = db.url.clone();
    capacity_store_tests::webhooks::unreadable_event_types_deliver_nothing(
        store,
        |id| async move {
            let client = raw(&url).await;
            let n = client
            .execute(
                "UPDATE webhook_endpoints SET event_types = '{\"not\": \"a list\"}' WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
            assert_eq!(n, 1);
        },
    )
    .await;
}

/// Migration 0012 registers the workspaces already stored, from their rows:
/// the registry is dropped and its migration forgotten, then run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_workspaces_are_registered_by_their_migration() {
    let Some((store, db)) = fresh("stored_workspaces_are_registered_by_their_migration").await
    else {
        return;
    };
    capacity_store_tests::ownership::rows_before_the_registry(store.as_ref()).await;
    drop(store);
    raw(&db.url)
        .await
        .batch_execute("DROP TABLE workspaces; DELETE FROM schema_migrations WHERE version = 12")
        .await
        .unwrap();
    let store = PostgresStore::open(&db.url).await.unwrap();
    capacity_store_tests::ownership::the_migration_registered_the_stored_workspaces(&store).await;
}

/// Stored data that does not decode fails closed: an allocation's resources,
/// an idempotency key's stored answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_stored_json_fails_closed() {
    let Some((store, db)) = fresh("unreadable_stored_json_fails_closed").await else {
        return;
    };
    let id = capacity_store_tests::allocations::an_allocation_to_damage(store.as_ref()).await;
    let key = capacity_store_tests::idempotency::an_answered_key_to_damage(store.as_ref()).await;
    raw(&db.url)
        .await
        .batch_execute(
            "UPDATE allocation_terms SET resources = 'not json'; \
             UPDATE idempotency_keys SET body = convert_to('{\"headers\": 1}', 'UTF8')",
        )
        .await
        .unwrap();
    capacity_store_tests::allocations::unreadable_resources_fail_closed(store.as_ref(), &id).await;
    capacity_store_tests::idempotency::an_unreadable_answer_fails_closed(store.as_ref(), key).await;
}
