//! Metering: per-record outcomes, de-duplication, and last week's actual.

use crate::*;
use capacity_domain::AllocationId;
use capacity_store::{UsageOutcome, UsageRecord};
use std::sync::Arc;

pub fn record(
    id: &str,
    alloc: &AllocationId,
    quantity: Quantity,
    occurred_at: Instant,
) -> UsageRecord {
    UsageRecord {
        id: id.into(),
        allocation_id: alloc.clone(),
        quantity,
        occurred_at,
    }
}

#[track_caller]
fn assert_rejected(o: &UsageOutcome, expected: &str) {
    match o {
        UsageOutcome::Rejected { code, .. } if *code == expected => {}
        other => panic!("expected rejected {expected}, got {other:?}"),
    }
}

pub async fn a_record_id_counts_once(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let a = allocate(store.as_ref(), &pool.id, 1, 40).await.unwrap();
    let last_week = at("2026-04-08T10:00:00Z");
    let out = store
        .record_usage(
            &platform(),
            vec![
                record("r1", &a.id, units(5), last_week),
                record("r1", &a.id, units(5), last_week),
                record("r2", &a.id, units(2), last_week),
            ],
            now(),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            UsageOutcome::Accepted,
            UsageOutcome::Duplicate,
            UsageOutcome::Accepted
        ]
    );
    // The same id in a later batch, even with another quantity, is a duplicate.
    let again = store
        .record_usage(
            &platform(),
            vec![record("r1", &a.id, units(9), last_week)],
            now(),
        )
        .await
        .unwrap();
    assert_eq!(again, vec![UsageOutcome::Duplicate]);
    let read = store
        .get_allocation(&platform(), &a.id, now())
        .await
        .unwrap();
    assert_eq!(read.actual_last_week, units(7));
}

pub async fn each_record_is_judged_on_its_own(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let a = allocate(store.as_ref(), &pool.id, 1, 40).await.unwrap();
    let unknown = AllocationId::parse("ALLOC-26-999999").unwrap();
    let out = store
        .record_usage(
            &platform(),
            vec![
                record("ok-1", &a.id, units(1), now()),
                record("unknown", &unknown, units(1), now()),
                record("future", &a.id, units(1), now().plus_micros(1)),
                record("old", &a.id, units(1), now().plus_micros(days(-401))),
                record(
                    "oldest-allowed",
                    &a.id,
                    units(1),
                    now().plus_micros(days(-400)),
                ),
                record("ok-2", &a.id, Quantity::from_thousandths(1), now()),
            ],
            now(),
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 6);
    assert_eq!(out[0], UsageOutcome::Accepted);
    assert_rejected(&out[1], "unknown_allocation");
    assert_rejected(&out[2], "occurred_in_future");
    assert_rejected(&out[3], "too_old");
    assert_eq!(out[4], UsageOutcome::Accepted);
    assert_eq!(out[5], UsageOutcome::Accepted);
    // A rejected record's id is not used up.
    let retry = store
        .record_usage(
            &platform(),
            vec![record("future", &a.id, units(1), now())],
            now(),
        )
        .await
        .unwrap();
    assert_eq!(retry, vec![UsageOutcome::Accepted]);
}

pub async fn actual_last_week_sums_the_last_complete_iso_week(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let mut new = new_allocation(&pool.id, 1, 40);
    new.starts_at = Some(at("2026-01-15T00:00:00Z"));
    let a = store
        .create_allocation(&platform(), new, now())
        .await
        .unwrap();
    let other = allocate(store.as_ref(), &pool.id, 2, 10).await.unwrap();
    let out = store
        .record_usage(
            &platform(),
            vec![
                record("before", &a.id, units(100), at("2026-04-05T23:59:59Z")),
                record(
                    "first",
                    &a.id,
                    Quantity::parse("20.25").unwrap(),
                    at("2026-04-06T00:00:00Z"),
                ),
                record(
                    "last",
                    &a.id,
                    Quantity::parse("18.25").unwrap(),
                    at("2026-04-12T23:59:59Z"),
                ),
                record("this-week", &a.id, units(100), at("2026-04-13T00:00:00Z")),
                record("other", &other.id, units(3), at("2026-04-08T00:00:00Z")),
            ],
            now(),
        )
        .await
        .unwrap();
    assert!(out.iter().all(|o| *o == UsageOutcome::Accepted), "{out:?}");
    let read = store
        .get_allocation(&platform(), &a.id, now())
        .await
        .unwrap();
    assert_eq!(read.actual_last_week, Quantity::parse("38.5").unwrap());
    assert_eq!(read.committed_last_week, units(40));
    assert_eq!(read.utilisation_percent().map(|p| p.tenths()), Some(963));
    // Lists complete every item the same way.
    let listed = store
        .list_allocations(&platform(), Default::default(), page(10), now())
        .await
        .unwrap();
    let got: Vec<(String, Quantity)> = listed
        .items
        .iter()
        .map(|a| (a.id.to_string(), a.actual_last_week))
        .collect();
    assert_eq!(
        got,
        vec![
            (a.id.to_string(), Quantity::parse("38.5").unwrap()),
            (other.id.to_string(), units(3)),
        ]
    );
    // `other` started this week: it committed nothing last week.
    assert_eq!(listed.items[1].committed_last_week, Quantity::ZERO);
}

/// Issue 14 (checked arithmetic): weekly usage totals stay exact. A batch
/// that would take one allocation's, or one pool's, usage in one ISO week
/// past 10^12 units is refused whole (409 `usage_week_limit`) and records nothing —
/// whether its own records or the stored total carry it past.
pub async fn weekly_usage_stays_an_exact_sum(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = allocate(s, &pool.id, 1, 10).await.unwrap();
    let b = allocate(s, &pool.id, 2, 10).await.unwrap();
    let last_week = at("2026-04-08T10:00:00Z");
    let earlier = at("2026-03-30T10:00:00Z");
    let most = units(1_000_000_000_000);
    let p = platform();
    let out = s
        .record_usage(&p, vec![record("full", &a.id, most, last_week)], now())
        .await
        .unwrap();
    assert_eq!(out, vec![UsageOutcome::Accepted]);
    // The stored total of the allocation's week, then of the pool's week.
    for over in [
        record("a-over", &a.id, Quantity::from_thousandths(1), last_week),
        record("b-over", &b.id, Quantity::from_thousandths(1), last_week),
    ] {
        assert_conflict(
            s.record_usage(
                &p,
                vec![record("b-ok", &b.id, units(1), earlier), over],
                now(),
            )
            .await,
            "usage_week_limit",
        );
    }
    // A batch's own records.
    let half = units(600_000_000_000);
    assert_conflict(
        s.record_usage(
            &p,
            vec![
                record("h1", &b.id, half, earlier),
                record("h2", &b.id, half, earlier),
            ],
            now(),
        )
        .await,
        "usage_week_limit",
    );
    // Nothing of the refused batches was kept: their good record is new.
    let out = s
        .record_usage(&p, vec![record("b-ok", &b.id, units(1), earlier)], now())
        .await
        .unwrap();
    assert_eq!(out, vec![UsageOutcome::Accepted]);
    let read = s.get_allocation(&p, &a.id, now()).await.unwrap();
    assert_eq!(read.actual_last_week, most);
}
