//! The rules under concurrent writers. Every request is its own task on a
//! multi-threaded runtime and nothing in the test orders them: whatever
//! serialises them is the store's doing (SQLite's single writer; on
//! PostgreSQL the pool row lock, across all the pool's connections).

use crate::adjustments::adjustment;
use crate::usage::record;
use crate::*;
use capacity_domain::forecast::PlanningPeriod;
use capacity_store::{AllocationFilter, EventFilter, PageRequest, PoolFilter, UsageOutcome};
use std::sync::Arc;
use tokio::task::JoinSet;

async fn count_events(store: &dyn Store, kind: &str) -> usize {
    store
        .list_events(
            &platform(),
            EventFilter {
                kind: Some(kind.into()),
                created_after: None,
            },
            page(100),
        )
        .await
        .unwrap()
        .items
        .len()
}

pub async fn concurrent_creates_never_overcommit(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 10).await;
    let mut tasks = JoinSet::new();
    for i in 0..60 {
        let (store, id) = (store.clone(), pool.id.clone());
        tasks.spawn(async move { allocate(store.as_ref(), &id, 100 + i, 1).await });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => created += 1,
            Err(StoreError::InsufficientCapacity { .. }) => refused += 1,
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    assert_eq!((created, refused), (10, 50));
    let p = store.get_pool(&platform(), &pool.id, now()).await.unwrap();
    assert_eq!((p.allocated, p.available()), (th(10), 0));
    let listed = store
        .list_allocations(&platform(), AllocationFilter::default(), page(100), now())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 10);
    assert_eq!(
        count_events(store.as_ref(), "capacity.allocation.created").await,
        10
    );
}

pub async fn concurrent_pool_creation_makes_one_pool(store: Arc<dyn Store>) {
    // The same workspace and resource type ten times at once: one pool.
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .create_pool(
                    &platform(),
                    new_pool(ORG_A, WS_A, ResourceType::TalentHours, 10),
                    now(),
                )
                .await
        });
    }
    let mut created = 0;
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => created += 1,
            Err(StoreError::Conflict {
                code: "pool_exists",
                ..
            }) => {}
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    assert_eq!(created, 1);

    // A new workspace claimed by two organizations at once: one wins it.
    let mut tasks = JoinSet::new();
    for (i, rt) in ResourceType::ALL.into_iter().enumerate() {
        for org in [ORG_A, ORG_B] {
            let store = store.clone();
            tasks.spawn(async move {
                let r = store
                    .create_pool(&platform(), new_pool(org, WS_B, rt, 10 + i as i64), now())
                    .await;
                (org, r)
            });
        }
    }
    let mut winners = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            (org, Ok(_)) => winners.push(org),
            (
                _,
                Err(StoreError::Conflict {
                    code: "workspace_organization_mismatch",
                    ..
                }),
            ) => {}
            (_, Err(e)) => panic!("unexpected failure: {e:?}"),
        }
    }
    assert_eq!(winners.len(), ResourceType::ALL.len());
    assert!(winners.iter().all(|o| *o == winners[0]), "{winners:?}");
}

pub async fn concurrent_creates_may_share_a_new_service_line(store: Arc<dyn Store>) {
    let mut pools = Vec::new();
    for rt in ResourceType::ALL {
        pools.push(
            store
                .create_pool(&platform(), new_pool(ORG_A, WS_A, rt, 100), now())
                .await
                .unwrap()
                .id,
        );
    }
    let mut tasks = JoinSet::new();
    for id in pools.clone() {
        let store = store.clone();
        tasks.spawn(async move { allocate(store.as_ref(), &id, 42, 1).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("every create lands");
    }
    let on_line = store
        .list_allocations(
            &platform(),
            AllocationFilter {
                service_line_id: Some(line(42)),
                ..Default::default()
            },
            page(100),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(on_line.items.len(), pools.len());
}

pub async fn a_record_id_sent_concurrently_counts_once(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let a = allocate(store.as_ref(), &pool.id, 1, 40).await.unwrap();
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (store, id) = (store.clone(), a.id.clone());
        tasks.spawn(async move {
            store
                .record_usage(
                    &platform(),
                    vec![record("same", &id, units(2), at("2026-04-08T00:00:00Z"))],
                    now(),
                )
                .await
        });
    }
    let (mut accepted, mut duplicate) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task").expect("batch").as_slice() {
            [UsageOutcome::Accepted] => accepted += 1,
            [UsageOutcome::Duplicate] => duplicate += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((accepted, duplicate), (1, 19));
    let read = store
        .get_allocation(&platform(), &a.id, now())
        .await
        .unwrap();
    assert_eq!(read.actual_last_week, units(2));
}

pub async fn supply_cuts_racing_creates_keep_the_invariant(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 30).await;
    let mut tasks = JoinSet::new();
    for i in 0..30 {
        let (s, id) = (store.clone(), pool.id.clone());
        tasks.spawn(async move { allocate(s.as_ref(), &id, 100 + i, 1).await.map(|_| ()) });
        if i == 10 {
            let (s, id) = (store.clone(), pool.id.clone());
            tasks.spawn(async move {
                s.adjust_supply(&platform(), &id, adjustment(-10, None), now())
                    .await
                    .map(|_| ())
            });
        }
    }
    let mut created = 0;
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(()) => created += 1,
            Err(StoreError::InsufficientCapacity { .. }) => {}
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    let created = created - 1; // the adjustment
    // If the cut landed after k creates, max(k, 20) creates succeed; the
    // pool is over-committed (and says so) exactly when k > 20.
    let p = store.get_pool(&platform(), &pool.id, now()).await.unwrap();
    assert_eq!(p.total, th(20));
    assert_eq!(p.allocated, th(created));
    assert!((20..=30).contains(&created), "{created} creates succeeded");
    let announced = count_events(store.as_ref(), "capacity.pool_overcommitted").await;
    assert_eq!(announced, usize::from(created > 20), "{created} creates");
}

pub async fn concurrent_patch_increases_never_overcommit(store: Arc<dyn Store>) {
    use crate::lifecycle::{NEXT_PERIOD, allocated, commit, immediately};
    let pool = talent_pool(store.as_ref(), 100).await;
    let mut allocations = Vec::new();
    for i in 0..10 {
        allocations.push(allocate(store.as_ref(), &pool.id, i + 1, 5).await.unwrap());
    }
    // 50 free; each patch asks for 10 more, half now, half from the next
    // period: exactly five fit, whatever the order.
    let mut tasks = JoinSet::new();
    for (i, a) in allocations.iter().enumerate() {
        let (store, id) = (store.clone(), a.id.clone());
        let p = if i % 2 == 0 {
            immediately(commit(15))
        } else {
            commit(15)
        };
        tasks.spawn(async move { store.patch_allocation(&platform(), &id, p, now()).await });
    }
    let (mut changed, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => changed += 1,
            Err(StoreError::InsufficientCapacity { .. }) => refused += 1,
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    assert_eq!((changed, refused), (5, 5));
    let s = store.as_ref();
    assert_eq!(allocated(s, &pool.id, at(NEXT_PERIOD)).await, th(100));
    assert!(allocated(s, &pool.id, now()).await <= th(100));
    assert_eq!(count_events(s, "capacity.allocation.updated").await, 5);

    // Patches naming one version of one allocation: one applies.
    let a = store
        .get_allocation(&platform(), &allocations[0].id, now())
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    // Each asks for the same decrease (1 < the 5 or 15 it holds): which one
    // goes first cannot change the outcome, only the version can.
    for _ in 0..8 {
        let (store, id) = (store.clone(), a.id.clone());
        let mut p = commit(1);
        p.if_match = Some(a.version);
        tasks.spawn(async move { store.patch_allocation(&platform(), &id, p, now()).await });
    }
    let (mut applied, mut stale) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(_) => applied += 1,
            Err(StoreError::PreconditionFailed { .. }) => stale += 1,
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    assert_eq!((applied, stale), (1, 7));
    let after = store
        .get_allocation(&platform(), &a.id, now())
        .await
        .unwrap();
    assert_eq!(after.version, a.version + 1);
}

pub async fn a_line_closed_while_allocations_are_made_for_it_orphans_every_one(
    store: Arc<dyn Store>,
) {
    use capacity_domain::model::ServiceLineStatus;
    // Allocations for one line on five pools, racing the line's close.
    let mut pools = Vec::new();
    for rt in ResourceType::ALL {
        pools.push(
            store
                .create_pool(&platform(), new_pool(ORG_A, WS_A, rt, 100), now())
                .await
                .unwrap()
                .id,
        );
    }
    let mut tasks = JoinSet::new();
    for round in 0..4 {
        for id in pools.clone() {
            let store = store.clone();
            tasks.spawn(async move { allocate(store.as_ref(), &id, 7, 1).await.map(|_| ()) });
        }
        if round == 1 {
            let store = store.clone();
            tasks.spawn(async move {
                store
                    .put_service_line(
                        &platform(),
                        &line(7),
                        crate::service_lines::signal(WS_A, ServiceLineStatus::Closed, false),
                        now(),
                    )
                    .await
                    .map(|_| ())
            });
        }
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task") {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict {
                code: "service_line_closed",
                ..
            }) => refused += 1,
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    let created = ok - 1; // the close
    assert_eq!(created + refused, 4 * pools.len());
    // Every allocation made for the line was made before it closed, and
    // the close announced each one: none slipped past it.
    let orphaned = store
        .list_allocations(
            &platform(),
            AllocationFilter {
                service_line_id: Some(line(7)),
                ..Default::default()
            },
            page(100),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(orphaned.items.len(), created);
    assert!(orphaned.items.iter().all(|a| a.orphaned));
    assert_eq!(
        count_events(store.as_ref(), "capacity.allocation_orphaned").await,
        created
    );
}

pub async fn concurrent_usage_batches_roll_up_exactly(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let a = allocate(store.as_ref(), &pool.id, 1, 40).await.unwrap();
    let b = allocate(store.as_ref(), &pool.id, 2, 40).await.unwrap();
    // Eight batches of 100 records whose ids overlap half with the next
    // batch's, on two allocations and two weeks.
    let mut tasks = JoinSet::new();
    for t in 0..8i64 {
        let (store, a, b) = (store.clone(), a.id.clone(), b.id.clone());
        tasks.spawn(async move {
            let batch = (t * 50..t * 50 + 100)
                .map(|i| {
                    let (alloc, week) = match i % 4 {
                        0 => (&a, "2026-04-08T00:00:00Z"),
                        1 => (&b, "2026-04-08T00:00:00Z"),
                        2 => (&a, "2026-04-01T00:00:00Z"),
                        _ => (&b, "2026-04-01T00:00:00Z"),
                    };
                    record(
                        &format!("r-{i}"),
                        alloc,
                        Quantity::from_thousandths(10),
                        at(week),
                    )
                })
                .collect();
            store.record_usage(&platform(), batch, now()).await
        });
    }
    let mut accepted = 0;
    while let Some(r) = tasks.join_next().await {
        accepted += r
            .expect("task")
            .expect("batch")
            .iter()
            .filter(|o| **o == UsageOutcome::Accepted)
            .count();
    }
    // Ids 0..450, each once.
    assert_eq!(accepted, 450);
    let series = |id: capacity_domain::AllocationId| {
        let store = store.clone();
        async move {
            store
                .utilisation_series(&platform(), &id, 2, now())
                .await
                .unwrap()
                .iter()
                .map(|w| w.actual.thousandths())
                .collect::<Vec<_>>()
        }
    };
    // Of ids 0..450: ≡0 mod 4 → 113, ≡1 → 113, ≡2 → 112, ≡3 → 112.
    assert_eq!(series(a.id.clone()).await, vec![1120, 1130]);
    assert_eq!(series(b.id.clone()).await, vec![1120, 1130]);
    let q2 = PlanningPeriod::parse("2026-Q2").unwrap();
    let d = store
        .forecast_data(&platform(), &ws(WS_A), ResourceType::TalentHours, q2, now())
        .await
        .unwrap();
    assert_eq!(d.usage_last_12_weeks.thousandths(), 4500);
}

/// Concurrent reads by different tenants (which a store may make together,
/// as PostgreSQL does: one statement per batch) each see only what their
/// own scope sees.
pub async fn concurrent_reads_see_only_their_own_tenant(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool_a = talent_pool(s, 100).await;
    let pool_b = s
        .create_pool(
            &platform(),
            new_pool(ORG_B, WS_B, ResourceType::TalentHours, 100),
            now(),
        )
        .await
        .unwrap();
    let a = allocate(s, &pool_a.id, 1, 10).await.unwrap();
    let b = allocate(s, &pool_b.id, 2, 10).await.unwrap();
    let q2 = PlanningPeriod::parse("2026-Q2").unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..64 {
        let store = store.clone();
        let (a, b) = (a.id.clone(), b.id.clone());
        let (pool_a, pool_b) = (pool_a.id.clone(), pool_b.id.clone());
        tasks.spawn(async move {
            // Even tasks read as organization A, odd ones as B; each asks
            // for its own allocation and workspace and for the other's.
            let (me, (mine, theirs), (my_ws, their_ws), my_pool) = if i % 2 == 0 {
                (ORG_A, (a, b), (WS_A, WS_B), pool_a)
            } else {
                (ORG_B, (b, a), (WS_B, WS_A), pool_b)
            };
            let scope = organization(me, None);
            let got = store.get_allocation(&scope, &mine, now()).await.unwrap();
            assert_eq!(got.id, mine);
            assert_not_found(store.get_allocation(&scope, &theirs, now()).await);
            let listed = |workspace: &str| PoolFilter {
                workspace_id: Some(ws(workspace)),
                ..Default::default()
            };
            let first = PageRequest {
                limit: 10,
                after: None,
            };
            let mine_listed = store
                .list_pools(&scope, listed(my_ws), first, now())
                .await
                .unwrap();
            let ids: Vec<_> = mine_listed.items.iter().map(|p| p.id.clone()).collect();
            assert_eq!(ids, vec![my_pool.clone()]);
            let theirs_listed = store
                .list_pools(&scope, listed(their_ws), first, now())
                .await
                .unwrap();
            assert!(
                theirs_listed.items.is_empty(),
                "a list showed another tenant's pool"
            );
            let forecast = store
                .forecast_data(&scope, &ws(my_ws), ResourceType::TalentHours, q2, now())
                .await
                .unwrap();
            assert_eq!(forecast.pool.map(|p| p.id), Some(my_pool));
            let other = store
                .forecast_data(&scope, &ws(their_ws), ResourceType::TalentHours, q2, now())
                .await;
            if let Ok(other) = other {
                assert!(
                    other.pool.is_none(),
                    "a forecast showed another tenant's pool"
                );
                assert_eq!(other.usage_last_12_weeks, units(0));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
}
