//! The allocation lifecycle (SPEC §5, PATCH rules): scheduled and immediate
//! changes, the invariant on increases, `If-Match`, closing, history, and
//! the utilisation warning.

use crate::adjustments::adjustment;
use crate::usage::record;
use crate::*;
use capacity_domain::model::AllocationStatus;
use capacity_store::{AllocationPatch, CommitmentInput, EventFilter};
use std::sync::Arc;

/// The first day of the next billing period at [`NOW`].
pub const NEXT_PERIOD: &str = "2026-05-01T00:00:00Z";

/// An allocation of `committed` hours a week on `pool`, started on
/// 2026-01-15 (so last week is complete history).
pub async fn backdated(
    store: &dyn Store,
    pool: &PoolId,
    line_no: u32,
    committed: i64,
) -> Allocation {
    let mut new = new_allocation(pool, line_no, committed);
    new.starts_at = Some(at("2026-01-15T00:00:00Z"));
    store
        .create_allocation(&platform(), new, now())
        .await
        .expect("create a backdated allocation")
}

pub fn commit(units_per_week: i64) -> AllocationPatch {
    AllocationPatch {
        committed: Some(CommitmentInput::PerPeriod(units(units_per_week))),
        ..AllocationPatch::default()
    }
}

/// Sets (`Some`) or clears (`None`) `ends_at`.
pub fn ends(at_instant: Option<Instant>) -> AllocationPatch {
    AllocationPatch {
        ends_at: Some(at_instant),
        ..AllocationPatch::default()
    }
}

pub fn immediately(mut p: AllocationPatch) -> AllocationPatch {
    p.effective_immediately = true;
    p
}

pub async fn patch(
    store: &dyn Store,
    a: &Allocation,
    p: AllocationPatch,
) -> Result<Allocation, StoreError> {
    store.patch_allocation(&platform(), &a.id, p, now()).await
}

pub async fn allocated(store: &dyn Store, pool: &PoolId, at_instant: Instant) -> i64 {
    store
        .get_pool(&platform(), pool, at_instant)
        .await
        .unwrap()
        .allocated
}

pub async fn events_of(store: &dyn Store, kind: &str) -> Vec<capacity_domain::model::Event> {
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
}

pub async fn a_patch_schedules_commitment_changes_for_the_next_billing_period(
    store: Arc<dyn Store>,
) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = backdated(s, &pool.id, 1, 40).await;
    let mut p = commit(32);
    p.ends_at = Some(Some(at("2026-06-30T00:00:00Z")));
    p.reason = Some("scale down".into());
    let b = patch(s, &a, p).await.unwrap();
    // The commitment is unchanged until the next period; ends_at is at once.
    assert_eq!(b.version, a.version + 1);
    assert_eq!(b.ends_at, Some(at("2026-06-30T00:00:00Z")));
    assert_eq!(b.current_terms(now()).committed, units(40));
    assert_eq!(b.terms.len(), 2);
    assert_eq!(b.terms[1].effective_at, at(NEXT_PERIOD));
    assert_eq!(b.terms[1].committed, units(32));
    assert_eq!(b.terms[1].reason.as_deref(), Some("scale down"));
    assert_eq!(b.terms[1].resources, a.terms[0].resources);
    let view = serde_json::to_value(b.view(now())).unwrap();
    assert_eq!(view["committed_per_week"], serde_json::json!(40));
    assert_eq!(view["pending_changes"].as_array().unwrap().len(), 1);
    assert_eq!(view["pending_changes"][0]["committed_per_week"], 32);
    assert_eq!(b.updated_at, now());
    assert_eq!(
        s.get_allocation(&platform(), &a.id, now()).await.unwrap(),
        b
    );

    // No job needed: reading after effective_at shows the new figures.
    assert_eq!(allocated(s, &pool.id, now()).await, th(40));
    assert_eq!(allocated(s, &pool.id, at(NEXT_PERIOD)).await, th(32));
    let later = s
        .get_allocation(&platform(), &a.id, at(NEXT_PERIOD))
        .await
        .unwrap();
    assert_eq!(later.current_terms(at(NEXT_PERIOD)).committed, units(32));
    // After ends_at nothing is committed.
    assert_eq!(allocated(s, &pool.id, at("2026-06-30T00:00:00Z")).await, 0);

    // A later PATCH for the same period replaces the pending change.
    let c = patch(s, &b, commit(30)).await.unwrap();
    assert_eq!(c.terms.len(), 2);
    assert_eq!(c.terms[1].committed, units(30));
    assert_eq!(allocated(s, &pool.id, at(NEXT_PERIOD)).await, th(30));

    // An immediate change applies now and cancels the pending change to
    // the same field (the latest instruction wins).
    let d = patch(s, &c, immediately(commit(35))).await.unwrap();
    assert_eq!(d.current_terms(now()).committed, units(35));
    assert_eq!(d.terms.len(), 2);
    assert_eq!(d.terms[1].effective_at, now());
    assert_eq!(allocated(s, &pool.id, now()).await, th(35));
    assert_eq!(allocated(s, &pool.id, at(NEXT_PERIOD)).await, th(35));

    // Resources are replaced wholesale, scheduled like the commitment; the
    // id and service line never change.
    let resources = vec![capacity_domain::model::Resource {
        kind: "talent".into(),
        id: "SCR-555555".into(),
        role: Some("data_engineer".into()),
        committed_hours_per_week: Some(units(35)),
    }];
    let e = patch(
        s,
        &d,
        AllocationPatch {
            resources: Some(resources.clone()),
            ..AllocationPatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (e.id.clone(), e.service_line_id.clone()),
        (a.id, a.service_line_id)
    );
    assert_eq!(e.current_terms(now()).resources, a.terms[0].resources);
    assert_eq!(e.current_terms(at(NEXT_PERIOD)).resources, resources);
    assert_eq!(e.current_terms(at(NEXT_PERIOD)).committed, units(35));

    // A patch that changes nothing changes nothing (not even the version).
    let same = patch(s, &e, commit(35)).await;
    let same = same.unwrap();
    assert_eq!(same.version, e.version);
}

pub async fn an_increase_is_judged_against_supply_from_its_effective_time(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = backdated(s, &pool.id, 1, 40).await;
    let b = backdated(s, &pool.id, 2, 50).await;

    // Now: 40 + 50 = 90 of 100; +20 now is 10 short.
    match patch(s, &a, immediately(commit(60))).await {
        Err(StoreError::InsufficientCapacity { overcommit, unit }) => {
            assert_eq!(unit, "hours_per_week");
            assert_eq!(overcommit.at, now());
            assert_eq!(overcommit.shortfall, th(10));
            assert_eq!(overcommit.committed, th(110));
            assert_eq!(overcommit.capacity, th(100));
        }
        other => panic!("expected insufficient capacity, got {other:?}"),
    }
    // Scheduled: judged from the next period on.
    match patch(s, &a, commit(55)).await {
        Err(StoreError::InsufficientCapacity { overcommit, .. }) => {
            assert_eq!(overcommit.at, at(NEXT_PERIOD));
            assert_eq!(overcommit.shortfall, th(5));
        }
        other => panic!("expected insufficient capacity, got {other:?}"),
    }
    // Refused changes change nothing.
    let read = s.get_allocation(&platform(), &a.id, now()).await.unwrap();
    assert_eq!((read.version, read.terms.len()), (1, 1));
    assert_eq!(allocated(s, &pool.id, at(NEXT_PERIOD)).await, th(90));

    // A scheduled supply increase makes room from its time on only.
    s.adjust_supply(
        &platform(),
        &pool.id,
        adjustment(20, Some(at(NEXT_PERIOD))),
        now(),
    )
    .await
    .unwrap();
    assert!(patch(s, &a, immediately(commit(60))).await.is_err());
    let a2 = patch(s, &a, commit(60)).await.unwrap();
    assert_eq!(allocated(s, &pool.id, at(NEXT_PERIOD)).await, th(110));

    // Reopening a later end date is an increase too.
    let b2 = patch(s, &b, ends(Some(at("2026-06-01T00:00:00Z"))))
        .await
        .unwrap();
    s.create_allocation(
        &platform(),
        {
            let mut n = new_allocation(&pool.id, 3, 50);
            n.starts_at = Some(at("2026-06-01T00:00:00Z"));
            n
        },
        now(),
    )
    .await
    .unwrap();
    match patch(s, &b2, ends(None)).await {
        Err(StoreError::InsufficientCapacity { overcommit, .. }) => {
            assert_eq!(overcommit.at, at("2026-06-01T00:00:00Z"));
            assert_eq!(overcommit.shortfall, th(40));
        }
        other => panic!("expected insufficient capacity, got {other:?}"),
    }

    // Reductions are never refused, even in an over-committed pool.
    s.adjust_supply(&platform(), &pool.id, adjustment(-30, None), now())
        .await
        .unwrap();
    assert_eq!(
        s.get_pool(&platform(), &pool.id, now())
            .await
            .unwrap()
            .available(),
        th(-20)
    );
    let a3 = patch(s, &a2, immediately(commit(35))).await.unwrap();
    assert_eq!(a3.current_terms(now()).committed, units(35));
    // Pausing keeps the commitment.
    let paused = patch(
        s,
        &b2,
        AllocationPatch {
            status: Some(AllocationStatus::Paused),
            ..AllocationPatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(paused.status, AllocationStatus::Paused);
    assert_eq!(allocated(s, &pool.id, now()).await, th(85));
}

pub async fn if_match_names_the_version_a_patch_applies_to(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = backdated(s, &pool.id, 1, 40).await;
    let mut stale = commit(30);
    stale.if_match = Some(a.version + 1);
    match patch(s, &a, stale).await {
        Err(StoreError::PreconditionFailed { expected }) => assert_eq!(expected, a.version + 1),
        other => panic!("expected precondition failed, got {other:?}"),
    }
    assert_eq!(
        s.get_allocation(&platform(), &a.id, now()).await.unwrap(),
        a
    );
    let mut fresh = commit(30);
    fresh.if_match = Some(a.version);
    let b = patch(s, &a, fresh).await.unwrap();
    assert_eq!(b.version, a.version + 1);
    // The version it named is gone now.
    let mut again = immediately(commit(20));
    again.if_match = Some(a.version);
    assert!(matches!(
        patch(s, &b, again).await,
        Err(StoreError::PreconditionFailed { .. })
    ));
    // Another organization cannot even see it.
    assert_not_found(
        s.patch_allocation(&organization(ORG_B, None), &a.id, commit(10), now())
            .await,
    );
}

pub async fn closed_is_final_and_releases_the_commitment(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = backdated(s, &pool.id, 1, 40).await;
    let b = backdated(s, &pool.id, 2, 30).await;

    assert_invalid(
        patch(s, &a, ends(Some(now().plus_micros(-1)))).await,
        "ends_at",
    );
    // Not before it starts, either.
    let mut future = new_allocation(&pool.id, 3, 1);
    future.starts_at = Some(at("2026-06-01T00:00:00Z"));
    let future = s
        .create_allocation(&platform(), future, now())
        .await
        .unwrap();
    assert_invalid(
        patch(s, &future, ends(Some(at("2026-05-15T00:00:00Z")))).await,
        "ends_at",
    );
    assert_invalid(
        patch(s, &future, ends(Some(at("2026-06-01T00:00:00Z")))).await,
        "ends_at",
    );

    let closed = patch(
        s,
        &a,
        AllocationPatch {
            status: Some(AllocationStatus::Closed),
            reason: Some("line ended".into()),
            ..AllocationPatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(closed.status, AllocationStatus::Closed);
    assert_eq!(closed.closed_at, Some(now()));
    assert_eq!(allocated(s, &pool.id, now()).await, th(30));
    assert_eq!(events_of(s, "capacity.allocation.closed").await.len(), 1);
    for p in [
        AllocationPatch {
            status: Some(AllocationStatus::Active),
            ..AllocationPatch::default()
        },
        commit(10),
        AllocationPatch::default(),
    ] {
        assert_conflict(patch(s, &closed, p).await, "allocation_closed");
    }
    // Usage for a closed allocation is refused.
    let out = s
        .record_usage(
            &platform(),
            vec![record("after-close", &a.id, units(1), now())],
            now(),
        )
        .await
        .unwrap();
    assert!(matches!(
        out[0],
        capacity_store::UsageOutcome::Rejected {
            code: "allocation_closed",
            ..
        }
    ));
    // Paused ⇄ active keeps the commitment.
    let paused = patch(
        s,
        &b,
        AllocationPatch {
            status: Some(AllocationStatus::Paused),
            ..AllocationPatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(allocated(s, &pool.id, now()).await, th(30));
    let active = patch(
        s,
        &paused,
        AllocationPatch {
            status: Some(AllocationStatus::Active),
            ..AllocationPatch::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(active.status, AllocationStatus::Active);
    assert_eq!(active.version, b.version + 2);
}

pub async fn history_records_every_change(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = backdated(s, &pool.id, 1, 40).await;
    let mut p = commit(32);
    p.ends_at = Some(Some(at("2026-06-30T00:00:00Z")));
    p.reason = Some("scale down".into());
    let b = patch(s, &a, p).await.unwrap();
    let mut c = immediately(commit(36));
    c.reason = Some("a bit more".into());
    let c = patch(s, &b, c).await.unwrap();
    patch(
        s,
        &c,
        AllocationPatch {
            status: Some(AllocationStatus::Closed),
            ..AllocationPatch::default()
        },
    )
    .await
    .unwrap();

    let all = s
        .allocation_history(&platform(), &a.id, page(100))
        .await
        .unwrap();
    assert_eq!(all.next, None);
    let h = all.items;
    let actions: Vec<(&str, Instant)> = h
        .iter()
        .map(|e| (e.action.as_str(), e.effective_at))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("created", at("2026-01-15T00:00:00Z")),
            ("updated", at(NEXT_PERIOD)),
            ("updated", now()),
            ("updated", now()),
            ("closed", now()),
        ]
    );
    assert!(h.iter().all(|e| e.allocation_id == a.id));
    assert!(h.iter().all(|e| e.actor == platform().token_id));
    assert!(h.iter().all(|e| e.created_at == now()));
    assert_eq!(h[0].before, serde_json::Value::Null);
    assert_eq!(h[0].after["id"], a.id.as_str());
    assert_eq!(h[0].after["committed_per_week"], 40);
    // The scheduled commitment: before and after as of the next period.
    assert_eq!(h[1].reason.as_deref(), Some("scale down"));
    assert_eq!(
        h[1].before,
        serde_json::json!({"committed": 40, "committed_per_week": 40})
    );
    assert_eq!(
        h[1].after,
        serde_json::json!({"committed": 32, "committed_per_week": 32})
    );
    // ends_at applies at once.
    assert_eq!(h[2].before, serde_json::json!({"ends_at": null}));
    assert_eq!(
        h[2].after,
        serde_json::json!({"ends_at": "2026-06-30T00:00:00Z"})
    );
    // The immediate change.
    assert_eq!(h[3].reason.as_deref(), Some("a bit more"));
    assert_eq!(h[3].before["committed"], 40);
    assert_eq!(h[3].after["committed"], 36);
    assert_eq!(h[4].before, serde_json::json!({"status": "active"}));
    assert_eq!(h[4].after, serde_json::json!({"status": "closed"}));

    // Pages continue where they stopped, without gaps.
    let first = s
        .allocation_history(&platform(), &a.id, page(2))
        .await
        .unwrap();
    assert_eq!(first.items, h[..2].to_vec());
    let rest = s
        .allocation_history(
            &platform(),
            &a.id,
            PageRequest {
                limit: 10,
                after: first.next,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items, h[2..].to_vec());
    assert_not_found(
        s.allocation_history(&organization(ORG_B, None), &a.id, page(10))
            .await,
    );
}

pub async fn reducing_below_last_weeks_actual_warns_in_the_same_write(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = backdated(s, &pool.id, 1, 40).await;
    s.record_usage(
        &platform(),
        vec![record(
            "u1",
            &a.id,
            Quantity::parse("38.5").unwrap(),
            at("2026-04-08T10:00:00Z"),
        )],
        now(),
    )
    .await
    .unwrap();
    // Above last week's actual: no warning.
    let b = patch(s, &a, commit(39)).await.unwrap();
    assert!(
        events_of(s, "capacity.utilisation_warning")
            .await
            .is_empty()
    );
    // Below it: one warning, with the figures.
    let c = patch(s, &b, commit(32)).await.unwrap();
    let warnings = events_of(s, "capacity.utilisation_warning").await;
    assert_eq!(warnings.len(), 1);
    let data = &warnings[0].data["object"];
    assert_eq!(data["committed_per_week"], 32);
    assert_eq!(data["actual_last_week"], serde_json::json!(38.5));
    assert_eq!(data["effective_at"], NEXT_PERIOD);
    assert_eq!(data["allocation"]["id"], a.id.as_str());
    // Every change is announced as an update too.
    assert_eq!(events_of(s, "capacity.allocation.updated").await.len(), 2);
    assert_eq!(c.actual_last_week, Quantity::parse("38.5").unwrap());
}
