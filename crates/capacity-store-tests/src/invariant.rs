//! The no-overcommit invariant (SPEC §4), one writer at a time. The same
//! rule under concurrent writers is in [`crate::concurrency`].

use crate::adjustments::adjustment;
use crate::*;
use capacity_store::{AllocationFilter, EventFilter};
use std::sync::Arc;

#[track_caller]
fn assert_insufficient<T: std::fmt::Debug>(
    r: Result<T, StoreError>,
    at: Instant,
    committed: i64,
    capacity: i64,
    shortfall: i64,
) {
    match r {
        Err(StoreError::InsufficientCapacity { overcommit, unit }) => {
            assert_eq!(unit, "hours_per_week");
            assert_eq!(overcommit.at, at, "first violation");
            assert_eq!(overcommit.committed, committed, "committed");
            assert_eq!(overcommit.capacity, capacity, "capacity");
            assert_eq!(overcommit.shortfall, shortfall, "shortfall");
        }
        other => panic!("expected insufficient capacity, got {other:?}"),
    }
}

pub async fn a_create_beyond_available_is_refused_naming_the_first_violation(
    store: Arc<dyn Store>,
) {
    let pool = talent_pool(store.as_ref(), 100).await;
    allocate(store.as_ref(), &pool.id, 1, 60).await.unwrap();
    let events_before = store
        .list_events(&platform(), EventFilter::default(), page(100))
        .await
        .unwrap()
        .items
        .len();
    assert_insufficient(
        allocate(store.as_ref(), &pool.id, 2, 50).await,
        now(),
        th(110),
        th(100),
        th(10),
    );
    // Exactly what is left still fits.
    allocate(store.as_ref(), &pool.id, 3, 40).await.unwrap();
    assert_insufficient(
        store
            .create_allocation(
                &platform(),
                NewAllocation {
                    committed: CommitmentInput::PerPeriod(Quantity::from_thousandths(1)),
                    ..new_allocation(&pool.id, 4, 0)
                },
                now(),
            )
            .await,
        now(),
        th(100) + 1,
        th(100),
        1,
    );
    let p = store.get_pool(&platform(), &pool.id, now()).await.unwrap();
    assert_eq!((p.allocated, p.available()), (th(100), 0));
    let allocations = store
        .list_allocations(&platform(), AllocationFilter::default(), page(10), now())
        .await
        .unwrap();
    assert_eq!(allocations.items.len(), 2);
    let events_after = store
        .list_events(&platform(), EventFilter::default(), page(100))
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(events_after, events_before + 1, "refusals announce nothing");
}

pub async fn every_future_instant_is_judged(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let cut_at = now().plus_micros(days(30));
    store
        .adjust_supply(&platform(), &pool.id, adjustment(-50, Some(cut_at)), now())
        .await
        .unwrap();
    // 60 fits today but not once the scheduled cut applies.
    assert_insufficient(
        allocate(store.as_ref(), &pool.id, 1, 60).await,
        cut_at,
        th(60),
        th(50),
        th(10),
    );
    // Ending exactly when the cut applies is fine (the end is exclusive).
    let mut until_cut = new_allocation(&pool.id, 1, 60);
    until_cut.ends_at = Some(cut_at);
    store
        .create_allocation(&platform(), until_cut, now())
        .await
        .unwrap();
    // A commitment starting later is judged at its start.
    let mut from_cut = new_allocation(&pool.id, 2, 51);
    from_cut.starts_at = Some(cut_at);
    assert_insufficient(
        store
            .create_allocation(&platform(), from_cut.clone(), now())
            .await,
        cut_at,
        th(51),
        th(50),
        th(1),
    );
    from_cut.committed = CommitmentInput::PerPeriod(units(50));
    store
        .create_allocation(&platform(), from_cut, now())
        .await
        .unwrap();
    // Now 40 is free today, nothing from the cut on.
    assert_insufficient(
        allocate(store.as_ref(), &pool.id, 3, 41).await,
        now(),
        th(101),
        th(100),
        th(1),
    );
    assert_insufficient(
        allocate(store.as_ref(), &pool.id, 3, 1).await,
        cut_at,
        th(51),
        th(50),
        th(1),
    );
    let today = store.get_pool(&platform(), &pool.id, now()).await.unwrap();
    assert_eq!((today.total, today.allocated), (th(100), th(60)));
    let then = store.get_pool(&platform(), &pool.id, cut_at).await.unwrap();
    assert_eq!((then.total, then.allocated), (th(50), th(50)));
}

pub async fn the_past_is_not_judged(store: Arc<dyn Store>) {
    // The pool's supply starts now; a backfilled commitment from a month ago
    // is judged only from now on.
    let pool = talent_pool(store.as_ref(), 100).await;
    let mut backfill = new_allocation(&pool.id, 1, 100);
    backfill.starts_at = Some(now().plus_micros(days(-30)));
    let a = store
        .create_allocation(&platform(), backfill, now())
        .await
        .unwrap();
    assert_eq!(a.starts_at, now().plus_micros(days(-30)));
    let p = store.get_pool(&platform(), &pool.id, now()).await.unwrap();
    assert_eq!(p.available(), 0);
    assert_insufficient(
        allocate(store.as_ref(), &pool.id, 2, 1).await,
        now(),
        th(101),
        th(100),
        th(1),
    );
}

pub async fn the_overcommit_ratio_scales_capacity(store: Arc<dyn Store>) {
    let mut new = new_pool(ORG_A, WS_A, ResourceType::TalentHours, 100);
    new.overcommit_ratio = 1500;
    let pool = store.create_pool(&platform(), new, now()).await.unwrap();
    assert_eq!(pool.overcommit_ratio, 1500);
    assert_eq!(pool.available(), th(150));
    allocate(store.as_ref(), &pool.id, 1, 150).await.unwrap();
    assert_insufficient(
        allocate(store.as_ref(), &pool.id, 2, 1).await,
        now(),
        th(151),
        th(150),
        th(1),
    );
}
