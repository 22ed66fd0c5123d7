//! Cursor pagination: pages in creation order, no gaps, no repeats, and a
//! last page that says so.

use crate::adjustments::adjustment;
use crate::*;
use capacity_store::{AllocationFilter, EventFilter, Page, PoolFilter};
use std::future::Future;
use std::sync::Arc;

/// Follows `next` from the first page to the last; answers every item and
/// the size of each page.
async fn walk<T, F, Fut>(limit: u32, fetch: F) -> (Vec<T>, Vec<usize>)
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = Page<T>>,
{
    let mut after = None;
    let (mut items, mut sizes) = (Vec::new(), Vec::new());
    for _ in 0..1000 {
        let page = fetch(PageRequest { limit, after }).await;
        assert!(page.items.len() <= limit as usize);
        sizes.push(page.items.len());
        items.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return (items, sizes),
        }
    }
    panic!("pagination does not end");
}

pub async fn pools_page_in_creation_order(store: Arc<dyn Store>) {
    let mut created = Vec::new();
    for i in 0..5 {
        let p = store
            .create_pool(
                &platform(),
                new_pool(
                    ORG_A,
                    &format!("WS-26-0001{i:02}"),
                    ResourceType::TalentHours,
                    10,
                ),
                now(),
            )
            .await
            .unwrap();
        created.push(p.id);
    }
    let s = store.as_ref();
    let (items, sizes) = walk(2, |p| async move {
        s.list_pools(&platform(), PoolFilter::default(), p, now())
            .await
            .unwrap()
    })
    .await;
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(items.into_iter().map(|p| p.id).collect::<Vec<_>>(), created);
    // A page that ends exactly at the last item says there is no more.
    let (_, sizes) = walk(5, |p| async move {
        s.list_pools(&platform(), PoolFilter::default(), p, now())
            .await
            .unwrap()
    })
    .await;
    assert_eq!(sizes, vec![5]);
    // Filters and pages combine.
    let (items, _) = walk(1, |p| async move {
        s.list_pools(
            &platform(),
            PoolFilter {
                workspace_id: Some(ws("WS-26-000103")),
                ..Default::default()
            },
            p,
            now(),
        )
        .await
        .unwrap()
    })
    .await;
    assert_eq!(items.len(), 1);
}

pub async fn allocations_events_and_adjustments_page_without_gaps(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let mut allocations = Vec::new();
    for i in 0..5 {
        allocations.push(allocate(s, &pool.id, i + 1, 1).await.unwrap().id);
    }
    for _ in 0..4 {
        s.adjust_supply(&platform(), &pool.id, adjustment(1, None), now())
            .await
            .unwrap();
    }

    let (items, sizes) = walk(2, |p| async move {
        s.list_allocations(&platform(), AllocationFilter::default(), p, now())
            .await
            .unwrap()
    })
    .await;
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(
        items.into_iter().map(|a| a.id).collect::<Vec<_>>(),
        allocations
    );

    let (events, sizes) = walk(3, |p| async move {
        s.list_events(&platform(), EventFilter::default(), p)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(sizes, vec![3, 3, 3, 1]);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[0], "capacity.pool.created");
    assert_eq!(kinds[1..6], ["capacity.allocation.created"; 5]);
    assert_eq!(kinds[6..], ["capacity.pool.updated"; 4]);
    let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 10);

    let pool_id = &pool.id;
    let (ledger, sizes) = walk(2, |p| async move {
        s.list_adjustments(&platform(), pool_id, p).await.unwrap()
    })
    .await;
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(ledger.len(), 5);
    let total: i64 = ledger.iter().map(|a| a.delta.thousandths()).sum();
    assert_eq!(total, th(104));
}
