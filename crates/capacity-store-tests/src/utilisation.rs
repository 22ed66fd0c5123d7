//! Utilisation: weekly usage rollups written with each accepted record,
//! `actual_last_week` and the weekly series read from them, the commitment
//! in force each week, the weekly low-utilisation evaluation.

use crate::lifecycle::{backdated, commit, events_of, immediately};
use crate::usage::record;
use crate::*;
use capacity_domain::model::AllocationStatus;
use capacity_domain::time::MICROS_PER_WEEK;
use capacity_store::{AllocationFilter, AllocationPatch, UsageOutcome, UsageRecord};
use std::sync::Arc;
use tokio::task::JoinSet;

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap()
}

fn percents(series: &[capacity_domain::model::UtilisationWeek]) -> Vec<Option<i64>> {
    series
        .iter()
        .map(|w| w.utilisation_percent.map(|p| p.tenths()))
        .collect()
}

pub async fn usage_rolls_up_by_week_across_batches(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = backdated(s, &pool.id, 1, 40).await;
    let b = backdated(s, &pool.id, 2, 20).await;
    // Three weeks of usage, sent in batches that overlap and repeat ids.
    let w1 = at("2026-03-30T09:00:00Z");
    let w2 = at("2026-04-06T00:00:00Z");
    let last_instant = at("2026-04-12T23:59:59Z").plus_micros(999_999);
    let batches: Vec<Vec<UsageRecord>> = vec![
        vec![
            record("a-1", &a.id, q("10"), w1),
            record("a-2", &a.id, q("12.5"), w2),
            record("b-1", &b.id, q("4"), w2),
        ],
        vec![
            record("a-2", &a.id, q("99"), w2),
            record("a-3", &a.id, q("26"), last_instant),
            record("a-4", &a.id, q("7"), last_instant.plus_micros(1)),
            record("a-3", &a.id, q("26"), last_instant),
        ],
        (0..1000)
            .map(|i| {
                record(
                    &format!("b-bulk-{i}"),
                    &b.id,
                    Quantity::from_thousandths(16),
                    w2.plus_micros(i * 1_000_000),
                )
            })
            .collect(),
    ];
    let mut outcomes = Vec::new();
    for batch in batches {
        outcomes.push(s.record_usage(&platform(), batch, now()).await.unwrap());
    }
    use UsageOutcome::{Accepted, Duplicate};
    assert_eq!(outcomes[0], vec![Accepted, Accepted, Accepted]);
    assert_eq!(outcomes[1], vec![Duplicate, Accepted, Accepted, Duplicate]);
    assert_eq!(outcomes[2].len(), 1000);
    assert!(outcomes[2].iter().all(|o| *o == Accepted));

    // Last week: 12.5 + 26 (its last microsecond); this week's 7 is not in it.
    let a = s.get_allocation(&platform(), &a.id, now()).await.unwrap();
    assert_eq!(a.actual_last_week, q("38.5"));
    assert_eq!(a.utilisation_percent().map(|p| p.tenths()), Some(963));
    let b = s.get_allocation(&platform(), &b.id, now()).await.unwrap();
    assert_eq!(b.actual_last_week, q("20"));
    assert_eq!(b.utilisation_percent().map(|p| p.tenths()), Some(1000));

    let series = s
        .utilisation_series(&platform(), &a.id, 3, now())
        .await
        .unwrap();
    let weeks: Vec<(Instant, Quantity, Quantity)> = series
        .iter()
        .map(|w| (w.week_start, w.committed, w.actual))
        .collect();
    assert_eq!(
        weeks,
        vec![
            (at("2026-03-23T00:00:00Z"), units(40), Quantity::ZERO),
            (at("2026-03-30T00:00:00Z"), units(40), q("10")),
            (at("2026-04-06T00:00:00Z"), units(40), q("38.5")),
        ]
    );
    assert_eq!(percents(&series), vec![Some(0), Some(250), Some(963)]);

    // The list filter reads the same figure.
    let below = s
        .list_allocations(
            &platform(),
            AllocationFilter {
                utilisation_below_tenths: Some(1000),
                ..Default::default()
            },
            page(10),
            now(),
        )
        .await
        .unwrap();
    let ids: Vec<_> = below.items.iter().map(|x| x.id.clone()).collect();
    assert_eq!(ids, vec![a.id.clone()]);

    // A week later, this week's usage is last week's.
    let next_week = now().plus_micros(MICROS_PER_WEEK);
    let a = s
        .get_allocation(&platform(), &a.id, next_week)
        .await
        .unwrap();
    assert_eq!(a.actual_last_week, q("7"));
}

pub async fn the_series_judges_each_week_by_the_commitment_then_in_force(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = s
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::TalentHours, 100),
            at("2026-01-01T00:00:00Z"),
        )
        .await
        .unwrap();
    // Created on 2026-03-01, backfilled from 2026-01-15; cut to 20 at once
    // on Monday 2026-03-30.
    let mut new = new_allocation(&pool.id, 1, 40);
    new.starts_at = Some(at("2026-01-15T00:00:00Z"));
    let a = s
        .create_allocation(&platform(), new, at("2026-03-01T00:00:00Z"))
        .await
        .unwrap();
    s.patch_allocation(
        &platform(),
        &a.id,
        immediately(commit(20)),
        at("2026-03-30T00:00:00Z"),
    )
    .await
    .unwrap();
    let out = s
        .record_usage(
            &platform(),
            vec![
                record("w0", &a.id, q("30"), at("2026-03-25T12:00:00Z")),
                record("w1", &a.id, q("10"), at("2026-04-01T12:00:00Z")),
                record("w2", &a.id, q("20"), at("2026-04-08T12:00:00Z")),
            ],
            now(),
        )
        .await
        .unwrap();
    assert!(out.iter().all(|o| *o == UsageOutcome::Accepted));
    let series = s
        .utilisation_series(&platform(), &a.id, 14, now())
        .await
        .unwrap();
    assert_eq!(series.len(), 14);
    assert_eq!(series[0].week_start, at("2026-01-05T00:00:00Z"));
    // Before it started nothing was committed: no percentage.
    assert_eq!(series[0].committed, Quantity::ZERO);
    assert_eq!(series[0].utilisation_percent, None);
    // The week it started counts its commitment (the peak in force).
    assert_eq!(series[1].committed, units(40));
    let tail: Vec<_> = series[11..]
        .iter()
        .map(|w| (w.committed_per_week, w.actual))
        .collect();
    assert_eq!(
        tail,
        vec![
            (units(40), q("30")),
            (units(20), q("10")),
            (units(20), q("20"))
        ]
    );
    assert_eq!(
        percents(&series[11..]),
        vec![Some(750), Some(500), Some(1000)]
    );
    let read = s.get_allocation(&platform(), &a.id, now()).await.unwrap();
    assert_eq!(read.committed_last_week, units(20));
    assert_not_found(
        s.utilisation_series(&organization(ORG_B, None), &a.id, 3, now())
            .await,
    );
}

pub async fn monthly_commitments_are_judged_exactly_per_week(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let credits = s
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::AgentCredits, 100_000),
            now(),
        )
        .await
        .unwrap();
    // 5200 a month is 1200 a week (× 12 / 52).
    let mut new = new_allocation(&credits.id, 1, 5200);
    new.starts_at = Some(at("2026-01-15T00:00:00Z"));
    new.resources = vec![];
    let m = s.create_allocation(&platform(), new, now()).await.unwrap();
    let talent = talent_pool(s, 100).await;
    let third = backdated(s, &talent.id, 2, 3).await;
    let two_thirds = backdated(s, &talent.id, 3, 3).await;
    let last_week = at("2026-04-08T12:00:00Z");
    s.record_usage(
        &platform(),
        vec![
            record("m", &m.id, units(600), last_week),
            record("t1", &third.id, units(1), last_week),
            record("t2", &two_thirds.id, units(2), last_week),
        ],
        now(),
    )
    .await
    .unwrap();
    let read = |id: AllocationId| {
        let store = store.clone();
        async move {
            store
                .get_allocation(&platform(), &id, now())
                .await
                .unwrap()
                .utilisation_percent()
                .map(|p| p.tenths())
        }
    };
    assert_eq!(read(m.id.clone()).await, Some(500));
    assert_eq!(read(third.id).await, Some(333));
    assert_eq!(read(two_thirds.id).await, Some(667));
    let series = s
        .utilisation_series(&platform(), &m.id, 1, now())
        .await
        .unwrap();
    assert_eq!(series[0].committed, units(5200));
    assert_eq!(series[0].committed_per_week, units(1200));
    assert_eq!(percents(&series), vec![Some(500)]);
}

pub async fn low_utilisation_is_evaluated_once_per_week(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 200).await;
    let low = backdated(s, &pool.id, 1, 40).await;
    let high = backdated(s, &pool.id, 2, 40).await;
    let paused = backdated(s, &pool.id, 3, 40).await;
    s.patch_allocation(
        &platform(),
        &paused.id,
        AllocationPatch {
            status: Some(AllocationStatus::Paused),
            ..AllocationPatch::default()
        },
        now(),
    )
    .await
    .unwrap();
    let last_week = at("2026-04-08T12:00:00Z");
    s.record_usage(
        &platform(),
        vec![
            record("low", &low.id, units(10), last_week),
            record("high", &high.id, units(38), last_week),
            record("paused", &paused.id, units(1), last_week),
        ],
        now(),
    )
    .await
    .unwrap();
    let week = now().week_start();
    assert_eq!(
        s.evaluate_low_utilisation(week, 700, now()).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        s.evaluate_low_utilisation(week, 700, now()).await.unwrap(),
        None
    );
    let events = events_of(s, "capacity.utilisation_low").await;
    assert_eq!(events.len(), 1);
    let data = &events[0].data["object"];
    assert_eq!(data["allocation"]["id"], low.id.as_str());
    assert_eq!(data["utilisation_percent"], 25);
    assert_eq!(data["threshold_percent"], 70);
    assert_eq!(data["week_start"], "2026-04-06T00:00:00Z");
    assert_eq!(events[0].created_at, now());

    // The next week is judged on its own week: nothing was used in it.
    let next = week.plus_micros(MICROS_PER_WEEK);
    let later = now().plus_micros(MICROS_PER_WEEK);
    assert_eq!(
        s.evaluate_low_utilisation(next, 700, later).await.unwrap(),
        Some(2)
    );
    assert_eq!(events_of(s, "capacity.utilisation_low").await.len(), 3);
}

pub async fn concurrent_evaluations_of_one_week_record_once(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 200).await;
    for i in 0..5 {
        backdated(store.as_ref(), &pool.id, i + 1, 10).await;
    }
    let week = now().week_start();
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move { store.evaluate_low_utilisation(week, 700, now()).await });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.expect("task").expect("evaluate"));
    }
    results.sort();
    let mut expected = vec![None; 7];
    expected.push(Some(5));
    assert_eq!(results, expected);
    assert_eq!(
        events_of(store.as_ref(), "capacity.utilisation_low")
            .await
            .len(),
        5
    );
}

pub async fn a_utilisation_filter_few_meet_answers_in_bounded_pages(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 1000).await;
    // Allocations made now have no last week: no utilisation, never below.
    let unmet = capacity_store::UTILISATION_SCAN_PER_ITEM as u32 + 10;
    for n in 1..=unmet {
        allocate(s, &pool.id, n, 1).await.unwrap();
    }
    // Committed all last week and unused: 0 %.
    let met = backdated(s, &pool.id, unmet + 1, 1).await;
    let filter = AllocationFilter {
        utilisation_below_tenths: Some(500),
        ..Default::default()
    };
    // A page of one looks at UTILISATION_SCAN_PER_ITEM allocations at most:
    // the first page finds nothing and says where to go on.
    let first = s
        .list_allocations(&platform(), filter.clone(), page(1), now())
        .await
        .unwrap();
    assert!(first.items.is_empty());
    assert!(first.next.is_some());
    let mut found = Vec::new();
    let mut after = first.next;
    let mut pages = 1;
    while let Some(a) = after {
        let p = s
            .list_allocations(
                &platform(),
                filter.clone(),
                PageRequest {
                    limit: 1,
                    after: Some(a),
                },
                now(),
            )
            .await
            .unwrap();
        found.extend(p.items.into_iter().map(|x| x.id));
        after = p.next;
        pages += 1;
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(found, vec![met.id.clone()]);
    // A page large enough looks at them all at once.
    let whole = s
        .list_allocations(&platform(), filter, page(100), now())
        .await
        .unwrap();
    let ids: Vec<_> = whole.items.iter().map(|x| x.id.clone()).collect();
    assert_eq!((ids, whole.next), (vec![met.id], None));
}
