//! Ownership (SPEC §5 "Workspaces", §6): a workspace belongs to one
//! organization for ever, only the platform registers workspaces and service
//! lines, and whatever a caller cannot see answers exactly as what does not
//! exist — the same error, and nothing written.

use crate::demand::{Q3_END, Q3_START, request};
use crate::*;
use capacity_domain::forecast::PlanningPeriod;
use capacity_domain::model::ServiceLineStatus;
use capacity_store::{ServiceLinePut, WorkspacePut};
use std::sync::Arc;

const WS_UNUSED: &str = "WS-26-000900";

fn put(org: &str, name: Option<&str>) -> WorkspacePut {
    WorkspacePut {
        organization_id: OrgId::parse(org).unwrap(),
        name: name.map(str::to_owned),
    }
}

/// The same error for "exists elsewhere" as for "does not exist".
fn same_answer<T: std::fmt::Debug, U: std::fmt::Debug>(
    elsewhere: Result<T, StoreError>,
    missing: Result<U, StoreError>,
) {
    let (e, m) = (format!("{elsewhere:?}"), format!("{missing:?}"));
    assert!(matches!(missing, Err(StoreError::Missing(_))), "{m}");
    assert_eq!(e, m, "another tenant's object answers unlike a missing one");
}

/// Finding 1 and 3 of issue 14: an organization posting demand into a
/// workspace nobody has used yet, which the platform later gives to another
/// organization, must neither succeed nor show in that organization's
/// forecast; and another organization's workspace answers as an unused one.
pub async fn demand_names_only_the_callers_registered_workspaces(store: Arc<dyn Store>) {
    let s = store.as_ref();
    talent_pool(s, 100).await; // WS_A, registered to ORG_A
    let intruder = organization(ORG_B, None);
    let mut into_unused = request(ResourceType::TalentHours, 1000, Q3_START, Some(Q3_END));
    into_unused.workspace_id = ws(WS_UNUSED);
    let mut into_a = into_unused.clone();
    into_a.workspace_id = ws(WS_A);
    same_answer(
        s.create_request(&intruder, into_a, now()).await,
        s.create_request(&intruder, into_unused.clone(), now())
            .await,
    );
    // Naming an organization does not help an organization token either.
    into_unused.organization_id = Some(OrgId::parse(ORG_B).unwrap());
    assert_not_found(s.create_request(&intruder, into_unused, now()).await);

    // The platform gives the unused workspace to ORG_A: its forecast holds
    // no demand but its own.
    s.create_pool(
        &platform(),
        new_pool(ORG_A, WS_UNUSED, ResourceType::TalentHours, 100),
        now(),
    )
    .await
    .unwrap();
    let q3 = PlanningPeriod::parse("2026-Q3").unwrap();
    let a = organization(ORG_A, None);
    let d = s
        .forecast_data(&a, &ws(WS_UNUSED), ResourceType::TalentHours, q3, now())
        .await
        .unwrap();
    assert_eq!(d.pending.peak(q3.start, q3.end), 0);
    let listed = s
        .list_requests(&platform(), Default::default(), page(10))
        .await
        .unwrap();
    assert!(listed.items.is_empty(), "{:?}", listed.items);
}

/// Finding 2 of issue 14: an organization token can neither register a
/// line nor tell another organization's line from an unknown one.
pub async fn service_lines_are_the_platforms(store: Arc<dyn Store>) {
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
    // ORG_B's line 2, registered by the platform's allocation.
    s.create_allocation(&platform(), new_allocation(&pool_b.id, 2, 1), now())
        .await
        .unwrap();
    let a = organization(ORG_A, None);
    // A zero commitment on its own pool, naming an unused line and ORG_B's.
    same_answer(
        s.create_allocation(&a, new_allocation(&pool_a.id, 2, 0), now())
            .await,
        s.create_allocation(&a, new_allocation(&pool_a.id, 7, 0), now())
            .await,
    );
    // Nothing was registered: the platform may still give line 7 to ORG_B.
    s.put_service_line(
        &platform(),
        &line(7),
        ServiceLinePut {
            workspace_id: ws(WS_B),
            organization_id: None,
            status: ServiceLineStatus::Active,
            close_allocations: false,
        },
        now(),
    )
    .await
    .unwrap();
    // The platform sees both workspaces: a line of another is a conflict.
    assert_conflict(
        s.create_allocation(&platform(), new_allocation(&pool_a.id, 2, 1), now())
            .await,
        "service_line_workspace_mismatch",
    );
    // A line the platform registered to ORG_A's workspace is ORG_A's to use.
    s.create_allocation(&platform(), new_allocation(&pool_a.id, 1, 1), now())
        .await
        .unwrap();
    s.create_allocation(&a, new_allocation(&pool_a.id, 1, 1), now())
        .await
        .unwrap();
    // A narrowed token sees only its workspaces' lines.
    let narrowed = organization(ORG_A, Some(&[WS_B]));
    assert_not_found(
        s.create_allocation(&narrowed, new_allocation(&pool_a.id, 1, 1), now())
            .await,
    );
}

/// A workspace is registered once, to one organization, by the platform
/// (explicitly, or by creating a pool there); callers list their own.
pub async fn a_workspace_is_registered_once_by_the_platform(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (w, created) = s
        .put_workspace(&platform(), &ws(WS_B), put(ORG_B, Some("Berlin")), now())
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (w.organization_id.as_str(), w.name.as_deref()),
        (ORG_B, Some("Berlin"))
    );
    let later = now().plus_micros(1_000_000);
    let (w, created) = s
        .put_workspace(&platform(), &ws(WS_B), put(ORG_B, Some("Bonn")), later)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(
        (w.name.as_deref(), w.created_at, w.updated_at),
        (Some("Bonn"), now(), later)
    );
    // Absent name: unchanged.
    let (w, _) = s
        .put_workspace(&platform(), &ws(WS_B), put(ORG_B, None), later)
        .await
        .unwrap();
    assert_eq!(w.name.as_deref(), Some("Bonn"));
    assert_conflict(
        s.put_workspace(&platform(), &ws(WS_B), put(ORG_A, None), now())
            .await,
        "workspace_organization_mismatch",
    );
    assert!(matches!(
        s.put_workspace(
            &organization(ORG_A, None),
            &ws(WS_A),
            put(ORG_A, None),
            now()
        )
        .await,
        Err(StoreError::Forbidden(_))
    ));
    // A pool registers its workspace.
    talent_pool(s, 10).await;
    let a = organization(ORG_A, None);
    let own = s.list_workspaces(&a, page(10)).await.unwrap();
    let ids: Vec<&str> = own.items.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, [WS_A]);
    assert_eq!(
        s.get_workspace(&a, &ws(WS_A))
            .await
            .unwrap()
            .organization_id
            .as_str(),
        ORG_A
    );
    assert_not_found(s.get_workspace(&a, &ws(WS_B)).await);
    assert_not_found(s.get_workspace(&a, &ws(WS_UNUSED)).await);
    let narrowed = organization(ORG_A, Some(&[WS_UNUSED]));
    assert!(
        s.list_workspaces(&narrowed, page(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let all = s.list_workspaces(&platform(), page(1)).await.unwrap();
    assert_eq!(all.items[0].id.as_str(), WS_B);
    let rest = s
        .list_workspaces(
            &platform(),
            PageRequest {
                limit: 10,
                after: all.next,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items[0].id.as_str(), WS_A);
    assert_eq!(rest.next, None);
}

/// Issue 14 (checked arithmetic): pending demand is summed exactly. A
/// request that would take a workspace's pending demand of a type past the
/// largest quantity at some instant is refused (409 `pending_demand_limit`:
/// it depends on the state, not on the request alone) and
/// changes nothing; demand elsewhere in time is still accepted.
pub async fn pending_demand_stays_an_exact_sum(store: Arc<dyn Store>) {
    let s = store.as_ref();
    talent_pool(s, 100).await;
    let a = organization(ORG_A, None);
    let most = 1_000_000_000_000;
    s.create_request(
        &a,
        request(ResourceType::TalentHours, most, Q3_START, Some(Q3_END)),
        now(),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        assert_conflict(
            s.create_request(
                &a,
                request(ResourceType::TalentHours, 1, Q3_START, None),
                now(),
            )
            .await,
            "pending_demand_limit",
        );
    }
    s.create_request(
        &a,
        request(ResourceType::TalentHours, most, Q3_END, None),
        now(),
    )
    .await
    .unwrap();
    let q3 = PlanningPeriod::parse("2026-Q3").unwrap();
    let d = s
        .forecast_data(&a, &ws(WS_A), ResourceType::TalentHours, q3, now())
        .await
        .unwrap();
    assert_eq!(d.pending.peak(q3.start, q3.end), th(most));
    let listed = s
        .list_requests(&a, Default::default(), page(10))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);
}

/// Rows written before workspaces were registered (for the migration test):
/// pools in `WS_A` (ORG_A) and `WS_B` (ORG_B), and a line in a workspace
/// that holds nothing else.
pub async fn rows_before_the_registry(store: &dyn Store) {
    talent_pool(store, 10).await;
    store
        .create_pool(
            &platform(),
            new_pool(ORG_B, WS_B, ResourceType::Compute, 10),
            now(),
        )
        .await
        .unwrap();
    store
        .put_service_line(
            &platform(),
            &line(3),
            ServiceLinePut {
                workspace_id: ws(WS_UNUSED),
                organization_id: Some(OrgId::parse(ORG_B).unwrap()),
                status: ServiceLineStatus::Active,
                close_allocations: false,
            },
            now(),
        )
        .await
        .unwrap();
}

/// What the migration registers from [`rows_before_the_registry`]: each
/// workspace to the organization of its rows.
pub async fn the_migration_registered_the_stored_workspaces(store: &dyn Store) {
    let all = store.list_workspaces(&platform(), page(10)).await.unwrap();
    let mut got: Vec<(&str, &str)> = all
        .items
        .iter()
        .map(|w| (w.id.as_str(), w.organization_id.as_str()))
        .collect();
    got.sort();
    assert_eq!(got, [(WS_A, ORG_A), (WS_B, ORG_B), (WS_UNUSED, ORG_B)]);
    // And they hold: another organization cannot post demand there.
    let mut intruding = request(ResourceType::TalentHours, 1, Q3_START, None);
    intruding.workspace_id = ws(WS_UNUSED);
    assert_not_found(
        store
            .create_request(&organization(ORG_A, None), intruding, now())
            .await,
    );
}
