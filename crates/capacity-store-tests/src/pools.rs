//! Capacity pools: creation, uniqueness, tenancy of creation, minted ids.

use crate::*;
use capacity_domain::MintedPrefix;
use capacity_domain::model::SupplySource;
use capacity_store::{AllocationPatch, EventFilter, PageRequest, PoolFilter};
use std::sync::Arc;

pub async fn a_pool_starts_with_its_opening_supply(store: Arc<dyn Store>) {
    assert!(store.is_empty().await.unwrap());
    let pool = talent_pool(store.as_ref(), 200).await;
    assert!(!store.is_empty().await.unwrap());
    assert_eq!(pool.id.as_str(), "CAP-26-000001");
    assert_eq!(pool.workspace_id.as_str(), WS_A);
    assert_eq!(pool.organization_id.as_str(), ORG_A);
    assert_eq!(pool.resource_type, ResourceType::TalentHours);
    assert_eq!(pool.period, ResourceType::TalentHours.default_period());
    assert_eq!(
        (pool.total, pool.allocated, pool.available()),
        (th(200), 0, th(200))
    );
    assert_eq!((pool.created_at, pool.updated_at), (now(), now()));

    let read = store.get_pool(&platform(), &pool.id, now()).await.unwrap();
    assert_eq!(read, pool);

    let ledger = store
        .list_adjustments(&platform(), &pool.id, page(10))
        .await
        .unwrap();
    assert_eq!(ledger.items.len(), 1);
    let opening = &ledger.items[0];
    assert_eq!(opening.source, SupplySource::Initial);
    assert_eq!(opening.delta.thousandths(), th(200));
    assert_eq!(opening.effective_at, now());
    assert_eq!(opening.created_by, platform().token_id);

    let events = store
        .list_events(&platform(), EventFilter::default(), page(10))
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].kind, "capacity.pool.created");
    assert_eq!(events.items[0].data["object"]["id"], pool.id.as_str());
}

pub async fn a_workspace_holds_one_pool_per_resource_type(store: Arc<dyn Store>) {
    let first = talent_pool(store.as_ref(), 100).await;
    let again = store
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::TalentHours, 50),
            now(),
        )
        .await;
    assert_conflict(again, "pool_exists");
    let compute = store
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::Compute, 50),
            now(),
        )
        .await
        .unwrap();
    assert_ne!(compute.id, first.id);
    let all = store
        .list_pools(&platform(), PoolFilter::default(), page(10), now())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
}

pub async fn a_workspace_belongs_to_one_organization(store: Arc<dyn Store>) {
    talent_pool(store.as_ref(), 100).await;
    let elsewhere = store
        .create_pool(
            &platform(),
            new_pool(ORG_B, WS_A, ResourceType::Compute, 10),
            now(),
        )
        .await;
    assert_conflict(elsewhere, "workspace_organization_mismatch");
}

/// An organization never registers a workspace, and one it cannot see
/// answers as a workspace that does not exist.
pub async fn a_scope_creates_pools_only_in_its_tenant(store: Arc<dyn Store>) {
    let other_org = organization(ORG_B, None);
    let r = store
        .create_pool(
            &other_org,
            new_pool(ORG_A, WS_A, ResourceType::TalentHours, 10),
            now(),
        )
        .await;
    assert_not_found(r);
    let narrowed = organization(ORG_A, Some(&[WS_B]));
    let r = store
        .create_pool(
            &narrowed,
            new_pool(ORG_A, WS_A, ResourceType::TalentHours, 10),
            now(),
        )
        .await;
    assert_not_found(r);
    assert!(store.is_empty().await.unwrap());
    let none = store.list_workspaces(&platform(), page(10)).await.unwrap();
    assert!(none.items.is_empty(), "{:?}", none.items);
}

pub async fn minted_ids_follow_reserved_sequences(store: Arc<dyn Store>) {
    store
        .reserve_ids_from(MintedPrefix::Pool, 112)
        .await
        .unwrap();
    let p = talent_pool(store.as_ref(), 10).await;
    assert_eq!(p.id.as_str(), "CAP-26-000112");
    // Reserving below the next number never goes back.
    store.reserve_ids_from(MintedPrefix::Pool, 5).await.unwrap();
    let q = store
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::Compute, 10),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(q.id.as_str(), "CAP-26-000113");
    store
        .reserve_ids_from(MintedPrefix::Allocation, 441)
        .await
        .unwrap();
    let a = allocate(store.as_ref(), &p.id, 1, 1).await.unwrap();
    assert_eq!(a.id.as_str(), "ALLOC-26-000441");
    // The year part is the creation year, the number keeps counting.
    let later = store
        .create_allocation(
            &platform(),
            new_allocation(&p.id, 2, 1),
            at("2027-01-02T00:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(later.id.as_str(), "ALLOC-27-000442");
}

pub async fn pool_filters_select_what_they_name(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let a_talent = talent_pool(s, 10).await;
    let a_compute = s
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::Compute, 10),
            now(),
        )
        .await
        .unwrap();
    let b_talent = s
        .create_pool(
            &platform(),
            new_pool(ORG_B, WS_B, ResourceType::TalentHours, 10),
            now(),
        )
        .await
        .unwrap();
    let ids = |f: PoolFilter| async move {
        s.list_pools(&platform(), f, page(10), now())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(PoolFilter {
            workspace_id: Some(ws(WS_A)),
            ..Default::default()
        })
        .await,
        vec![a_talent.id.clone(), a_compute.id.clone()]
    );
    assert_eq!(
        ids(PoolFilter {
            organization_id: Some(OrgId::parse(ORG_B).unwrap()),
            ..Default::default()
        })
        .await,
        vec![b_talent.id.clone()]
    );
    assert_eq!(
        ids(PoolFilter {
            resource_type: Some(ResourceType::TalentHours),
            ..Default::default()
        })
        .await,
        vec![a_talent.id.clone(), b_talent.id.clone()]
    );
    assert_eq!(
        ids(PoolFilter {
            workspace_id: Some(ws(WS_B)),
            resource_type: Some(ResourceType::Compute),
            ..Default::default()
        })
        .await,
        vec![]
    );
    // A workspace's list with the other filters and a cursor (PostgreSQL
    // cuts these pages from one batch read).
    assert_eq!(
        ids(PoolFilter {
            workspace_id: Some(ws(WS_A)),
            organization_id: Some(OrgId::parse(ORG_B).unwrap()),
            ..Default::default()
        })
        .await,
        vec![]
    );
    let in_a = || PoolFilter {
        workspace_id: Some(ws(WS_A)),
        ..Default::default()
    };
    let first = s
        .list_pools(&platform(), in_a(), page(1), now())
        .await
        .unwrap();
    assert_eq!(
        first.items.iter().map(|p| &p.id).collect::<Vec<_>>(),
        [&a_talent.id]
    );
    let after = PageRequest {
        limit: 1,
        after: first.next,
    };
    let second = s
        .list_pools(&platform(), in_a(), after, now())
        .await
        .unwrap();
    assert_eq!(
        second.items.iter().map(|p| &p.id).collect::<Vec<_>>(),
        [&a_compute.id]
    );
    assert_eq!(second.next, None);
}

/// A pool's commitment at any instant is the sum of its allocations'
/// timelines, whether or not (and however far) the stored running total has
/// been folded — forward past now, backfilled allocations before the fold,
/// changes at instants already folded.
pub async fn commitment_reads_do_not_depend_on_folding(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 1000).await;
    let day = |n: i64| now().plus_micros(days(n));
    let mut backfill = new_allocation(&pool.id, 1, 100);
    backfill.starts_at = Some(day(-30));
    backfill.ends_at = Some(day(10));
    let x = s
        .create_allocation(&platform(), backfill, now())
        .await
        .unwrap();
    let expect = |x_ends: i64, y: bool| {
        move |t: i64| {
            let x = if (-30..x_ends).contains(&t) { 100 } else { 0 };
            let y = if y && t >= 0 { 50 } else { 0 };
            th(x + y)
        }
    };
    let check = |value: Box<dyn Fn(i64) -> i64 + Send>, label: &'static str| {
        let store = store.clone();
        let pool = pool.id.clone();
        async move {
            for t in [-31, -30, -1, 0, 4, 5, 6, 9, 10, 11, 19, 20, 21, 45] {
                let read = store.get_pool(&platform(), &pool, day(t)).await.unwrap();
                assert_eq!(read.allocated, value(t), "{label}: day {t}");
            }
        }
    };
    check(Box::new(expect(10, false)), "before any fold").await;
    assert_eq!(store.fold_commitments(day(20)).await.unwrap(), 1);
    check(Box::new(expect(10, false)), "folded ahead of now").await;

    // Changes at instants the fold already covers.
    allocate(s, &pool.id, 2, 50).await.unwrap();
    check(Box::new(expect(10, true)), "a create inside the fold").await;
    let shorten = AllocationPatch {
        ends_at: Some(Some(day(5))),
        ..Default::default()
    };
    s.patch_allocation(&platform(), &x.id, shorten, now())
        .await
        .unwrap();
    check(Box::new(expect(5, true)), "an end moved inside the fold").await;

    // Folding never moves backwards, and moving it on changes no read.
    assert_eq!(store.fold_commitments(day(-100)).await.unwrap(), 0);
    check(Box::new(expect(5, true)), "an earlier fold").await;
    assert_eq!(store.fold_commitments(day(40)).await.unwrap(), 1);
    check(Box::new(expect(5, true)), "folded further").await;
}
