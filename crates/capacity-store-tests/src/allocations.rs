//! Allocations: what a create records, its validation, service lines, filters.

use crate::*;
use capacity_domain::model::AllocationStatus;
use capacity_store::{AllocationFilter, EventFilter};
use std::sync::Arc;

pub async fn an_allocation_commits_supply(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let new = new_allocation(&pool.id, 1, 40);
    let resources = new.resources.clone();
    let a = store
        .create_allocation(&platform(), new, now())
        .await
        .unwrap();
    assert_eq!(a.id.as_str(), "ALLOC-26-000001");
    assert_eq!(a.capacity_pool_id, pool.id);
    assert_eq!(a.workspace_id, pool.workspace_id);
    assert_eq!(a.organization_id, pool.organization_id);
    assert_eq!(a.service_line_id, line(1));
    assert_eq!(a.resource_type, ResourceType::TalentHours);
    assert_eq!(a.period, pool.period);
    assert_eq!(a.status, AllocationStatus::Active);
    assert_eq!((a.starts_at, a.ends_at, a.closed_at), (now(), None, None));
    assert_eq!(a.terms.len(), 1);
    assert_eq!(a.terms[0].committed, units(40));
    assert_eq!(a.terms[0].effective_at, now());
    assert_eq!(a.terms[0].resources, resources);
    assert_eq!(a.actual_last_week, Quantity::ZERO);
    assert!(!a.orphaned);
    assert_eq!(a.version, 1);
    assert_eq!((a.created_at, a.updated_at), (now(), now()));

    let read = store
        .get_allocation(&platform(), &a.id, now())
        .await
        .unwrap();
    assert_eq!(read, a);

    let p = store.get_pool(&platform(), &pool.id, now()).await.unwrap();
    assert_eq!((p.allocated, p.available()), (th(40), th(60)));
    // Before it starts, nothing is committed.
    let earlier = store
        .get_pool(&platform(), &pool.id, now().plus_micros(-1))
        .await
        .unwrap();
    assert_eq!(earlier.allocated, 0);

    let created = store
        .list_events(
            &platform(),
            EventFilter {
                kind: Some("capacity.allocation.created".into()),
                created_after: None,
            },
            page(10),
        )
        .await
        .unwrap();
    assert_eq!(created.items.len(), 1);
    assert_eq!(created.items[0].data["object"]["id"], a.id.as_str());
    assert_eq!(
        created.items[0].data["object"]["committed_per_week"],
        serde_json::json!(40)
    );
}

pub async fn weekly_commitments_convert_to_the_pool_period(store: Arc<dyn Store>) {
    let pool = store
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::AgentCredits, 1000),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(pool.period, capacity_domain::Period::Monthly);
    let mut new = new_allocation(&pool.id, 1, 0);
    new.committed = capacity_store::CommitmentInput::PerWeek(units(3));
    new.resources = vec![];
    let a = store
        .create_allocation(&platform(), new, now())
        .await
        .unwrap();
    // 3 a week is 3 × 52 / 12 = 13 a month.
    assert_eq!(a.terms[0].committed, units(13));
    let p = store.get_pool(&platform(), &pool.id, now()).await.unwrap();
    assert_eq!(p.allocated, th(13));
}

pub async fn an_allocation_must_end_in_the_future_after_it_starts(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let mut past_end = new_allocation(&pool.id, 1, 10);
    past_end.starts_at = Some(now().plus_micros(days(-10)));
    past_end.ends_at = Some(now().plus_micros(-1));
    assert_invalid(
        store.create_allocation(&platform(), past_end, now()).await,
        "ends_at",
    );
    let mut backwards = new_allocation(&pool.id, 1, 10);
    backwards.starts_at = Some(now().plus_micros(days(10)));
    backwards.ends_at = Some(now().plus_micros(days(5)));
    assert_invalid(
        store.create_allocation(&platform(), backwards, now()).await,
        "ends_at",
    );
    let mut fine = new_allocation(&pool.id, 1, 10);
    fine.ends_at = Some(now().plus_micros(days(5)));
    let a = store
        .create_allocation(&platform(), fine, now())
        .await
        .unwrap();
    assert_eq!(a.ends_at, Some(now().plus_micros(days(5))));
    let after_end = store
        .get_pool(&platform(), &pool.id, now().plus_micros(days(5)))
        .await
        .unwrap();
    assert_eq!(after_end.allocated, 0, "the end is exclusive");
    let page = store
        .list_allocations(&platform(), AllocationFilter::default(), page(10), now())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "refused creates leave nothing behind");
}

pub async fn a_service_line_belongs_to_one_workspace(store: Arc<dyn Store>) {
    let talent = talent_pool(store.as_ref(), 100).await;
    let compute = store
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::Compute, 100),
            now(),
        )
        .await
        .unwrap();
    let other_ws = store
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_B, ResourceType::TalentHours, 100),
            now(),
        )
        .await
        .unwrap();
    allocate(store.as_ref(), &talent.id, 7, 10).await.unwrap();
    // The same line in the same workspace, another pool: fine.
    allocate(store.as_ref(), &compute.id, 7, 10).await.unwrap();
    // In another workspace: refused.
    assert_conflict(
        allocate(store.as_ref(), &other_ws.id, 7, 10).await,
        "service_line_workspace_mismatch",
    );
    let p = store
        .get_pool(&platform(), &other_ws.id, now())
        .await
        .unwrap();
    assert_eq!(p.allocated, 0);
}

pub async fn allocation_filters_select_what_they_name(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let talent = talent_pool(s, 100).await;
    let compute = s
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::Compute, 100),
            now(),
        )
        .await
        .unwrap();
    let b = s
        .create_pool(
            &platform(),
            new_pool(ORG_B, WS_B, ResourceType::TalentHours, 100),
            now(),
        )
        .await
        .unwrap();
    let a1 = allocate(s, &talent.id, 1, 10).await.unwrap();
    let a2 = allocate(s, &talent.id, 2, 10).await.unwrap();
    let a3 = allocate(s, &compute.id, 1, 10).await.unwrap();
    let b1 = allocate(s, &b.id, 3, 10).await.unwrap();
    let ids = |f: AllocationFilter| async move {
        s.list_allocations(&platform(), f, page(50), now())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|a| a.id)
            .collect::<Vec<_>>()
    };
    let all = vec![a1.id.clone(), a2.id.clone(), a3.id.clone(), b1.id.clone()];
    assert_eq!(ids(AllocationFilter::default()).await, all);
    assert_eq!(
        ids(AllocationFilter {
            workspace_id: Some(ws(WS_A)),
            ..Default::default()
        })
        .await,
        vec![a1.id.clone(), a2.id.clone(), a3.id.clone()]
    );
    assert_eq!(
        ids(AllocationFilter {
            capacity_pool_id: Some(talent.id.clone()),
            ..Default::default()
        })
        .await,
        vec![a1.id.clone(), a2.id.clone()]
    );
    assert_eq!(
        ids(AllocationFilter {
            service_line_id: Some(line(1)),
            ..Default::default()
        })
        .await,
        vec![a1.id.clone(), a3.id.clone()]
    );
    assert_eq!(
        ids(AllocationFilter {
            resource_type: Some(ResourceType::TalentHours),
            ..Default::default()
        })
        .await,
        vec![a1.id.clone(), a2.id.clone(), b1.id.clone()]
    );
    assert_eq!(
        ids(AllocationFilter {
            status: Some(AllocationStatus::Active),
            ..Default::default()
        })
        .await,
        all
    );
    assert_eq!(
        ids(AllocationFilter {
            status: Some(AllocationStatus::Closed),
            ..Default::default()
        })
        .await,
        vec![]
    );
    assert_eq!(
        ids(AllocationFilter {
            orphaned: Some(false),
            ..Default::default()
        })
        .await,
        all
    );
    assert_eq!(
        ids(AllocationFilter {
            orphaned: Some(true),
            ..Default::default()
        })
        .await,
        vec![]
    );
}

/// An allocation whose stored resources a test then damages with SQL.
pub async fn an_allocation_to_damage(store: &dyn Store) -> AllocationId {
    let pool = talent_pool(store, 100).await;
    allocate(store, &pool.id, 1, 10).await.unwrap().id
}

/// Stored resources that do not decode are an error, never "no resources"
/// (issue 15: stored data that does not decode fails closed).
pub async fn unreadable_resources_fail_closed(store: &dyn Store, id: &AllocationId) {
    let read = store.get_allocation(&platform(), id, now()).await;
    assert!(matches!(read, Err(StoreError::Internal(_))), "{read:?}");
}
