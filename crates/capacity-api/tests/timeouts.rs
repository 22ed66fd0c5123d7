//! A request past its timeout answers 503 `timeout`, and its work ends with
//! it: on SQLite the read is interrupted and its reader serves the next
//! request; on PostgreSQL the statement is cancelled (`pg_stat_activity`
//! no longer shows it). Nothing here is timed: a tiny timeout meets a read
//! that cannot finish within it (a workspace of thousands of allocations on
//! SQLite, a table lock held by the test on PostgreSQL).

mod common;

use capacity_api::{AppState, Clock, Limits};
use capacity_domain::model::Resource;
use capacity_domain::{OrgId, PoolId, Quantity, ResourceType, ServiceLineId, WorkspaceId};
use capacity_store::{
    Access, CommitmentInput, NewAllocation, NewPool, Principal, Scope, Store, Tenant, TokenKind,
};
use common::{NOW, answer, at, mint_token};
use std::sync::Arc;
use std::time::Duration;

const WS: &str = "WS-26-000600";
const ORG: &str = "ORG-26-000600";

fn platform() -> Scope {
    Principal {
        token_id: "TOK-26-000900".into(),
        tenant: Tenant::Platform,
        access: Access::Write,
    }
}

/// A priced talent pool in [`WS`] with `n` allocations (of distinct lines).
async fn workspace_with_allocations(store: Arc<dyn Store>, n: u32) -> PoolId {
    let pool = store
        .create_pool(
            &platform(),
            NewPool {
                workspace_id: WorkspaceId::parse(WS).unwrap(),
                organization_id: OrgId::parse(ORG).unwrap(),
                resource_type: ResourceType::TalentHours,
                period: ResourceType::TalentHours.default_period(),
                total: Quantity::from_thousandths(1_000_000_000),
                overcommit_ratio: 1000,
                unit_price: Some(capacity_domain::model::UnitPrice {
                    amount: "85.00".into(),
                    currency: "USD".into(),
                }),
            },
            at(NOW),
        )
        .await
        .unwrap();
    // Concurrent creates share the writer's commits.
    let mut tasks = Vec::new();
    for i in 0..n {
        let (store, pool_id) = (store.clone(), pool.id.clone());
        tasks.push(tokio::spawn(async move {
            let new = NewAllocation {
                capacity_pool_id: pool_id,
                service_line_id: ServiceLineId::parse(&format!("LIN-26-{:06}", 100_000 + i))
                    .unwrap(),
                committed: CommitmentInput::PerPeriod(Quantity::from_thousandths(1000)),
                resources: vec![Resource {
                    kind: "talent".into(),
                    id: "SCR-128491".into(),
                    role: None,
                    committed_hours_per_week: None,
                }],
                starts_at: None,
                ends_at: None,
            };
            store.create_allocation(&platform(), new, at(NOW)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    pool.id
}

/// Serves `store` with `limits` on a random port; the base URL.
async fn serve(store: Arc<dyn Store>, limits: Limits) -> String {
    capacity_api::dispatcher::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut state = AppState::new(store, Clock::pinned(at(NOW)));
    state.settings = Arc::new(capacity_api::Settings {
        deliver_webhooks: false,
        ..capacity_api::Settings::default()
    });
    tokio::spawn(capacity_api::serve_with(
        listener,
        state,
        limits,
        std::future::pending(),
    ));
    base
}

fn tiny_timeout(ms: u64) -> Limits {
    Limits {
        request_timeout: Duration::from_millis(ms),
        ..Limits::default()
    }
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> common::Answer {
    answer(client.get(url).bearer_auth(token).send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_read_past_its_timeout_is_interrupted_and_its_reader_serves_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        Arc::new(capacity_store_sqlite::SqliteStore::open(dir.path().join("t.db")).unwrap());
    let store: Arc<dyn Store> = sqlite.clone();
    workspace_with_allocations(store.clone(), 3000).await;
    let token = mint_token(store.as_ref(), TokenKind::Platform, None, &[], Access::Read).await;
    let hurried = serve(store.clone(), tiny_timeout(5)).await;
    let patient = serve(store.clone(), Limits::default()).await;
    let client = reqwest::Client::new();
    let report = format!("/v1/capacity/costs?workspace_id={WS}&period=2026-04");
    // A thousand allocations a page cannot be read within 5 ms (debug build);
    // the request that found its read running interrupts it. A request whose
    // timeout fired before its read started (a busy machine) skips it
    // instead: try again, a bounded number of times.
    let mut timed_out = 0;
    for _ in 0..50 {
        let a = get(&client, format!("{hurried}{report}"), &token).await;
        if a.status == 503 {
            assert_eq!(a.body["code"], "timeout", "{}", a.body);
            timed_out += 1;
        } else {
            assert_eq!(a.status, 200, "{}", a.body);
        }
        if sqlite.interrupted_reads() > 0 {
            break;
        }
    }
    assert!(timed_out > 0, "no request timed out");
    assert!(
        sqlite.interrupted_reads() > 0,
        "no read was interrupted in {timed_out} timeouts"
    );
    // The heavy reader is free: the next report (and a point read) answers.
    let next = get(&client, format!("{patient}{report}&limit=10"), &token).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body["meta"]["has_more"], true);
    let pools = get(
        &client,
        format!("{patient}/v1/capacity?workspace_id={WS}"),
        &token,
    )
    .await;
    assert_eq!(pools.status, 200, "{}", pools.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_statement_past_its_timeout_is_cancelled() {
    use capacity_store_postgres::testing::{TestDatabase, URL_VAR};
    let Ok(server) = std::env::var(URL_VAR) else {
        eprintln!("skipped: {URL_VAR} is not set");
        return;
    };
    let db = TestDatabase::create(&server).await.unwrap();
    // A statement timeout far beyond the bounded wait below: only the
    // cancel can end the statement in time.
    let options = capacity_store_postgres::Options {
        statement_timeout: Duration::from_secs(120),
        ..Default::default()
    };
    let store: Arc<dyn Store> = Arc::new(
        capacity_store_postgres::PostgresStore::open_with(&db.url, options)
            .await
            .unwrap(),
    );
    workspace_with_allocations(store.clone(), 3).await;
    let token = mint_token(store.as_ref(), TokenKind::Platform, None, &[], Access::Read).await;
    let base = serve(store.clone(), tiny_timeout(300)).await;
    let client = reqwest::Client::new();
    let report = format!("{base}/v1/capacity/costs?workspace_id={WS}&period=2026-04");
    // The token is authenticated (and cached) before the lock is taken.
    let first = get(&client, report.clone(), &token).await;
    assert_eq!(first.status, 200, "{}", first.body);

    let (locker, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute("BEGIN; LOCK TABLE allocations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let stuck = get(&client, report.clone(), &token).await;
    assert_eq!(stuck.status, 503, "{}", stuck.body);
    assert_eq!(stuck.body["code"], "timeout", "{}", stuck.body);
    // With the lock still held, the service's statement is gone: cancelled,
    // not waiting for the lock. (The cancel is sent as the request ends:
    // look a bounded number of times.)
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND application_name = 'capacity' \
                   AND state = 'active' AND wait_event_type = 'Lock'";
    let mut left = -1;
    for _ in 0..400 {
        left = locker
            .query_one(waiting, &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(left, 0, "the timed-out statement still waits on the lock");
    locker.batch_execute("COMMIT").await.unwrap();
    // And its connection serves the next request.
    let next = get(&client, report, &token).await;
    assert_eq!(next.status, 200, "{}", next.body);
    drop(locker);
}
