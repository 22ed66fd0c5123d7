//! Service lines: lifecycle signals from the platform. Closing a line
//! orphans its open allocations, or closes them when asked.

use crate::lifecycle::{allocated, events_of, patch};
use crate::*;
use capacity_domain::model::{AllocationStatus, ServiceLineStatus};
use capacity_store::{AllocationFilter, AllocationPatch, ServiceLinePut};
use std::sync::Arc;

pub fn signal(
    workspace: &str,
    status: ServiceLineStatus,
    close_allocations: bool,
) -> ServiceLinePut {
    ServiceLinePut {
        workspace_id: ws(workspace),
        organization_id: None,
        status,
        close_allocations,
    }
}

pub async fn closing_a_service_line_orphans_its_open_allocations(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = allocate(s, &pool.id, 1, 10).await.unwrap();
    let b = allocate(s, &pool.id, 1, 20).await.unwrap();
    let done = allocate(s, &pool.id, 1, 5).await.unwrap();
    let other = allocate(s, &pool.id, 2, 30).await.unwrap();
    patch(
        s,
        &done,
        AllocationPatch {
            status: Some(AllocationStatus::Closed),
            ..AllocationPatch::default()
        },
    )
    .await
    .unwrap();

    let l = s
        .put_service_line(
            &platform(),
            &line(1),
            signal(WS_A, ServiceLineStatus::Closed, false),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(l.status, ServiceLineStatus::Closed);
    assert_eq!(l.workspace_id, ws(WS_A));
    assert_eq!(l.organization_id.as_str(), ORG_A);
    assert_eq!(l.updated_at, now());

    // One event per open allocation; they still count against supply.
    let orphaned = events_of(s, "capacity.allocation_orphaned").await;
    let ids: Vec<&serde_json::Value> = orphaned.iter().map(|e| &e.data["object"]["id"]).collect();
    assert_eq!(ids, vec![a.id.as_str(), b.id.as_str()]);
    assert_eq!(allocated(s, &pool.id, now()).await, th(60));
    let listed = s
        .list_allocations(
            &platform(),
            AllocationFilter {
                orphaned: Some(true),
                ..Default::default()
            },
            page(10),
            now(),
        )
        .await
        .unwrap();
    let got: Vec<_> = listed.items.iter().map(|x| x.id.clone()).collect();
    assert_eq!(got, vec![a.id.clone(), b.id.clone()]);
    assert!(listed.items.iter().all(|x| x.orphaned));
    let (read, allocations) = s
        .get_service_line(&platform(), &line(1), page(10), now())
        .await
        .unwrap();
    assert_eq!(read, l);
    assert_eq!(allocations.next, None);
    let got: Vec<_> = allocations
        .items
        .iter()
        .map(|x| (x.id.clone(), x.orphaned))
        .collect();
    assert_eq!(
        got,
        vec![
            (a.id.clone(), true),
            (b.id.clone(), true),
            (done.id.clone(), false)
        ]
    );
    // Paged: two, then the rest after the cursor.
    let (_, first) = s
        .get_service_line(&platform(), &line(1), page(2), now())
        .await
        .unwrap();
    let (_, rest) = s
        .get_service_line(
            &platform(),
            &line(1),
            PageRequest {
                limit: 2,
                after: first.next,
            },
            now(),
        )
        .await
        .unwrap();
    assert!(first.next.is_some());
    assert_eq!(rest.next, None);
    let paged: Vec<_> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|x| x.id.clone())
        .collect();
    assert_eq!(paged, vec![a.id.clone(), b.id.clone(), done.id.clone()]);
    let other = s
        .get_allocation(&platform(), &other.id, now())
        .await
        .unwrap();
    assert!(!other.orphaned);

    // Closing it again orphans nothing new; a closed line takes no allocation.
    s.put_service_line(
        &platform(),
        &line(1),
        signal(WS_A, ServiceLineStatus::Closed, false),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(events_of(s, "capacity.allocation_orphaned").await.len(), 2);
    assert_conflict(allocate(s, &pool.id, 1, 1).await, "service_line_closed");

    // Reopened: its allocations are no longer orphaned.
    s.put_service_line(
        &platform(),
        &line(1),
        signal(WS_A, ServiceLineStatus::Active, false),
        now(),
    )
    .await
    .unwrap();
    let a = s.get_allocation(&platform(), &a.id, now()).await.unwrap();
    assert!(!a.orphaned);
    allocate(s, &pool.id, 1, 1).await.unwrap();
}

pub async fn close_allocations_closes_them_instead(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = allocate(s, &pool.id, 1, 10).await.unwrap();
    let b = allocate(s, &pool.id, 1, 20).await.unwrap();
    allocate(s, &pool.id, 2, 30).await.unwrap();
    s.put_service_line(
        &platform(),
        &line(1),
        signal(WS_A, ServiceLineStatus::Closed, true),
        now(),
    )
    .await
    .unwrap();
    for id in [&a.id, &b.id] {
        let x = s.get_allocation(&platform(), id, now()).await.unwrap();
        assert_eq!(x.status, AllocationStatus::Closed);
        assert!(!x.orphaned);
        let h = s
            .allocation_history(&platform(), id, page(10))
            .await
            .unwrap()
            .items;
        assert_eq!(h.last().unwrap().action, "closed");
        assert_eq!(
            h.last().unwrap().reason.as_deref(),
            Some("service line LIN-26-000001 closed")
        );
    }
    assert_eq!(allocated(s, &pool.id, now()).await, th(30));
    assert_eq!(events_of(s, "capacity.allocation.closed").await.len(), 2);
    assert!(
        events_of(s, "capacity.allocation_orphaned")
            .await
            .is_empty()
    );
}

pub async fn a_service_line_signal_is_checked_against_its_workspace(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    allocate(s, &pool.id, 1, 10).await.unwrap();
    // A line of another workspace.
    assert_conflict(
        s.put_service_line(
            &platform(),
            &line(1),
            ServiceLinePut {
                organization_id: Some(OrgId::parse(ORG_B).unwrap()),
                ..signal(WS_B, ServiceLineStatus::Closed, false)
            },
            now(),
        )
        .await,
        "service_line_workspace_mismatch",
    );
    // A workspace not seen before needs its organization.
    assert_invalid(
        s.put_service_line(
            &platform(),
            &line(2),
            signal(WS_B, ServiceLineStatus::Active, false),
            now(),
        )
        .await,
        "organization_id",
    );
    // A known workspace under another organization.
    assert_conflict(
        s.put_service_line(
            &platform(),
            &line(2),
            ServiceLinePut {
                organization_id: Some(OrgId::parse(ORG_B).unwrap()),
                ..signal(WS_A, ServiceLineStatus::Active, false)
            },
            now(),
        )
        .await,
        "workspace_organization_mismatch",
    );
    // A new line in a new workspace fixes its organization.
    let l = s
        .put_service_line(
            &platform(),
            &line(3),
            ServiceLinePut {
                organization_id: Some(OrgId::parse(ORG_B).unwrap()),
                ..signal(WS_B, ServiceLineStatus::Active, false)
            },
            now(),
        )
        .await
        .unwrap();
    assert_eq!(
        (l.status, l.organization_id.as_str()),
        (ServiceLineStatus::Active, ORG_B)
    );
    assert_eq!(l.created_at, now());
    // Organization A cannot see it, nor signal it.
    let a = organization(ORG_A, None);
    assert_not_found(s.get_service_line(&a, &line(3), page(10), now()).await);
    assert_not_found(
        s.put_service_line(
            &a,
            &line(3),
            signal(WS_B, ServiceLineStatus::Closed, false),
            now(),
        )
        .await,
    );
    assert_not_found(
        s.get_service_line(&platform(), &line(9), page(10), now())
            .await,
    );
}
