//! Tenant scoping: what is outside a scope answers exactly as if it did not
//! exist (SPEC §6).

use crate::adjustments::adjustment;
use crate::*;
use capacity_domain::AllocationId;
use capacity_store::{AllocationFilter, EventFilter, PoolFilter, UsageOutcome, UsageRecord};
use std::sync::Arc;

/// Pool, allocation and events of organization A, workspace A.
async fn world(store: &dyn Store) -> (Pool, Allocation, String) {
    let pool = talent_pool(store, 100).await;
    let a = allocate(store, &pool.id, 1, 10).await.unwrap();
    let event = store
        .list_events(&platform(), EventFilter::default(), page(1))
        .await
        .unwrap()
        .items
        .remove(0)
        .id;
    (pool, a, event)
}

/// Everything of `world` is invisible to `scope`.
async fn assert_blind(store: &dyn Store, scope: &Scope, pool: &Pool, a: &Allocation, event: &str) {
    assert_not_found(store.get_pool(scope, &pool.id, now()).await);
    assert_not_found(store.list_adjustments(scope, &pool.id, page(10)).await);
    assert_not_found(
        store
            .adjust_supply(scope, &pool.id, adjustment(10, None), now())
            .await,
    );
    assert_not_found(
        store
            .create_allocation(scope, new_allocation(&pool.id, 9, 1), now())
            .await,
    );
    assert_not_found(store.get_allocation(scope, &a.id, now()).await);
    assert_not_found(store.get_event(scope, event).await);
    assert!(
        store
            .list_pools(scope, PoolFilter::default(), page(10), now())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        store
            .list_allocations(scope, AllocationFilter::default(), page(10), now())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        store
            .list_events(scope, EventFilter::default(), page(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let usage = store
        .record_usage(
            scope,
            vec![UsageRecord {
                id: "u1".into(),
                allocation_id: a.id.clone(),
                quantity: units(1),
                occurred_at: now(),
            }],
            now(),
        )
        .await
        .unwrap();
    assert!(
        matches!(&usage[0], UsageOutcome::Rejected { code, .. } if *code == "unknown_allocation"),
        "{usage:?}"
    );
    // Nothing leaked into A's figures either.
    let p = store.get_pool(&platform(), &pool.id, now()).await.unwrap();
    assert_eq!((p.total, p.allocated), (th(100), th(10)));
}

pub async fn another_organization_sees_nothing(store: Arc<dyn Store>) {
    let (pool, a, event) = world(store.as_ref()).await;
    let b = organization(ORG_B, None);
    assert_blind(store.as_ref(), &b, &pool, &a, &event).await;
    // A's own token sees it all.
    let own = organization(ORG_A, None);
    assert_eq!(
        store.get_pool(&own, &pool.id, now()).await.unwrap().id,
        pool.id
    );
    assert_eq!(
        store.get_allocation(&own, &a.id, now()).await.unwrap().id,
        a.id
    );
    assert_eq!(store.get_event(&own, &event).await.unwrap().id, event);
    // And an id that does not exist answers the same as B's view of A's.
    assert_not_found(
        store
            .get_allocation(
                &own,
                &AllocationId::parse("ALLOC-26-999999").unwrap(),
                now(),
            )
            .await,
    );
}

pub async fn a_workspace_narrowed_scope_sees_only_its_workspaces(store: Arc<dyn Store>) {
    let (pool, a, event) = world(store.as_ref()).await;
    let narrowed_away = organization(ORG_A, Some(&[WS_B]));
    assert_blind(store.as_ref(), &narrowed_away, &pool, &a, &event).await;
    // Its own workspace it does see.
    let other_ws = store
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_B, ResourceType::TalentHours, 10),
            now(),
        )
        .await
        .unwrap();
    let listed = store
        .list_pools(&narrowed_away, PoolFilter::default(), page(10), now())
        .await
        .unwrap();
    assert_eq!(
        listed.items.iter().map(|p| &p.id).collect::<Vec<_>>(),
        vec![&other_ws.id]
    );
    let narrowed_here = organization(ORG_A, Some(&[WS_A, WS_B]));
    let both = store
        .list_pools(&narrowed_here, PoolFilter::default(), page(10), now())
        .await
        .unwrap();
    assert_eq!(both.items.len(), 2);
    assert_eq!(
        store
            .get_allocation(&narrowed_here, &a.id, now())
            .await
            .unwrap()
            .id,
        a.id
    );
}
