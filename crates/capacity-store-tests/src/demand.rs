//! Demand and planning: requests (create, update, list, the supply-gap
//! event), what a forecast reads (on data laid out like the seed), and what
//! a cost report reads.

use crate::adjustments::adjustment;
use crate::lifecycle::{backdated, events_of};
use crate::usage::record;
use crate::*;
use capacity_domain::forecast::{PlanningPeriod, figures};
use capacity_domain::model::{AllocationStatus, RequestStatus, UnitPrice};
use capacity_domain::time::{MICROS_PER_DAY, MICROS_PER_WEEK};
use capacity_store::{
    AllocationPatch, CommitmentInput, NewDemandRequest, RequestFilter, RequestUpdate,
};
use std::sync::Arc;

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap()
}

pub const Q3_START: &str = "2026-07-01T00:00:00Z";
pub const Q3_END: &str = "2026-10-01T00:00:00Z";

pub fn request(rt: ResourceType, per_week: i64, from: &str, to: Option<&str>) -> NewDemandRequest {
    NewDemandRequest {
        workspace_id: ws(WS_A),
        organization_id: None,
        resource_type: rt,
        quantity: CommitmentInput::PerWeek(units(per_week)),
        starts_at: at(from),
        ends_at: to.map(at),
        note: Some("conformance".into()),
    }
}

fn by_status(status: RequestStatus) -> RequestFilter {
    RequestFilter {
        status: Some(status),
        ..Default::default()
    }
}

pub async fn requests_are_created_updated_and_listed(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let alloc = allocate(s, &pool.id, 1, 40).await.unwrap();

    // 30 of the 60 available: no gap.
    let r1 = s
        .create_request(
            &platform(),
            request(ResourceType::TalentHours, 30, Q3_START, Some(Q3_END)),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(r1.id, "REQ-26-000001");
    assert_eq!(r1.status, RequestStatus::Pending);
    assert_eq!(r1.organization_id.as_str(), ORG_A);
    assert_eq!(r1.period, capacity_domain::Period::Weekly);
    assert_eq!(r1.quantity, units(30));
    assert_eq!((r1.created_at, r1.updated_at), (now(), now()));
    assert!(events_of(s, "capacity.supply_gap").await.is_empty());
    // 30 + 50 pending against 60: a gap of 20, announced with the request.
    let r2 = s
        .create_request(
            &platform(),
            request(ResourceType::TalentHours, 50, Q3_START, None),
            now(),
        )
        .await
        .unwrap();
    let gaps = events_of(s, "capacity.supply_gap").await;
    assert_eq!(gaps.len(), 1);
    let data = &gaps[0].data["object"];
    assert_eq!(data["request"]["id"], r2.id.as_str());
    assert_eq!(data["pending_requests"], 80);
    assert_eq!(data["available_supply"], 60);
    assert_eq!(data["supply_gap"], 20);
    // A request per week for a monthly type with no pool: the type's period.
    let r3 = s
        .create_request(
            &platform(),
            request(ResourceType::AgentCredits, 1200, Q3_START, Some(Q3_END)),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(r3.period, capacity_domain::Period::Monthly);
    assert_eq!(r3.quantity, units(5200));
    // With no supply at all, any demand is a gap.
    assert_eq!(events_of(s, "capacity.supply_gap").await.len(), 2);

    assert_invalid(
        s.create_request(
            &platform(),
            request(ResourceType::TalentHours, 1, Q3_END, Some(Q3_START)),
            now(),
        )
        .await,
        "ends_at",
    );
    // A workspace not seen before needs its organization.
    let mut unseen = request(ResourceType::Compute, 1, Q3_START, None);
    unseen.workspace_id = ws(WS_B);
    assert_invalid(
        s.create_request(&platform(), unseen.clone(), now()).await,
        "organization_id",
    );
    unseen.organization_id = Some(OrgId::parse(ORG_B).unwrap());
    assert_not_found(
        s.create_request(&organization(ORG_A, None), unseen.clone(), now())
            .await,
    );
    let r4 = s.create_request(&platform(), unseen, now()).await.unwrap();
    assert_eq!(r4.organization_id.as_str(), ORG_B);

    // Lists filter and page; another organization sees only its own.
    let all = s
        .list_requests(&platform(), RequestFilter::default(), page(10))
        .await
        .unwrap();
    assert_eq!(
        all.items,
        vec![r1.clone(), r2.clone(), r3.clone(), r4.clone()]
    );
    let talent = s
        .list_requests(
            &platform(),
            RequestFilter {
                workspace_id: Some(ws(WS_A)),
                resource_type: Some(ResourceType::TalentHours),
                status: None,
            },
            page(1),
        )
        .await
        .unwrap();
    assert_eq!(talent.items, vec![r1.clone()]);
    let rest = s
        .list_requests(
            &platform(),
            RequestFilter {
                workspace_id: Some(ws(WS_A)),
                resource_type: Some(ResourceType::TalentHours),
                status: None,
            },
            PageRequest {
                limit: 10,
                after: talent.next,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items, vec![r2.clone()]);
    let b = s
        .list_requests(
            &organization(ORG_B, None),
            RequestFilter::default(),
            page(10),
        )
        .await
        .unwrap();
    assert_eq!(b.items, vec![r4.clone()]);

    // pending → fulfilled (with its allocation) or cancelled; then final.
    let fulfil = |id: &str, allocation_id: Option<AllocationId>, status: RequestStatus| {
        let (store, id) = (store.clone(), id.to_owned());
        async move {
            store
                .update_request(
                    &platform(),
                    &id,
                    RequestUpdate {
                        status,
                        allocation_id,
                    },
                    now().plus_micros(1),
                )
                .await
        }
    };
    assert_invalid(fulfil(&r1.id, None, RequestStatus::Pending).await, "status");
    assert_invalid(
        fulfil(&r1.id, Some(alloc.id.clone()), RequestStatus::Cancelled).await,
        "allocation_id",
    );
    assert_invalid(
        fulfil(
            &r1.id,
            Some(AllocationId::parse("ALLOC-26-999999").unwrap()),
            RequestStatus::Fulfilled,
        )
        .await,
        "allocation_id",
    );
    let done = fulfil(&r1.id, Some(alloc.id.clone()), RequestStatus::Fulfilled)
        .await
        .unwrap();
    assert_eq!(done.status, RequestStatus::Fulfilled);
    assert_eq!(done.allocation_id, Some(alloc.id.clone()));
    assert_eq!(done.updated_at, now().plus_micros(1));
    assert_conflict(
        fulfil(&r1.id, None, RequestStatus::Cancelled).await,
        "request_not_pending",
    );
    let cancelled = fulfil(&r2.id, None, RequestStatus::Cancelled)
        .await
        .unwrap();
    assert_eq!(cancelled.status, RequestStatus::Cancelled);
    // Another workspace's allocation cannot fulfil it.
    assert_invalid(
        fulfil(&r4.id, Some(alloc.id.clone()), RequestStatus::Fulfilled).await,
        "allocation_id",
    );
    assert_not_found(
        s.update_request(
            &organization(ORG_B, None),
            &r3.id,
            RequestUpdate {
                status: RequestStatus::Cancelled,
                allocation_id: None,
            },
            now(),
        )
        .await,
    );
    let pending = s
        .list_requests(&platform(), by_status(RequestStatus::Pending), page(10))
        .await
        .unwrap();
    assert_eq!(pending.items, vec![r3, r4]);
    let fulfilled = s
        .list_requests(&platform(), by_status(RequestStatus::Fulfilled), page(10))
        .await
        .unwrap();
    assert_eq!(fulfilled.items, vec![done]);
}

/// The seed's talent pool (SPEC §9): 200 hours a week, 160 committed across
/// 40 + 60 + 60, weekly usage history, and 80 hours a week of pending demand
/// over the next quarter. Answers the ids of the three allocations.
pub async fn seed_like(store: &dyn Store) -> (Pool, Vec<Allocation>) {
    let pool = talent_pool(store, 200).await;
    let mut allocations = Vec::new();
    for (line_no, committed, days_ago) in [(1, 40, 90), (2, 60, 60), (3, 60, 45)] {
        let mut new = new_allocation(&pool.id, line_no, committed);
        let start = now().plus_micros(-days_ago * MICROS_PER_DAY).micros();
        new.starts_at = Some(Instant::from_micros(
            start - start.rem_euclid(MICROS_PER_DAY),
        ));
        allocations.push(
            store
                .create_allocation(&platform(), new, now())
                .await
                .unwrap(),
        );
    }
    // 12 weeks of 30 hours for the first, 6 weeks of 50 for the second.
    let this_week = now().week_start();
    let mut records = Vec::new();
    for (a, weeks, amount) in [(&allocations[0], 12, 30), (&allocations[1], 6, 50)] {
        for i in 1..=weeks {
            let at_ = this_week.plus_micros(-i * MICROS_PER_WEEK + 2 * MICROS_PER_DAY);
            records.push(record(&format!("{}-{i}", a.id), &a.id, units(amount), at_));
        }
    }
    // One outside the last 12 weeks.
    records.push(record(
        "old",
        &allocations[0].id,
        units(1000),
        this_week.plus_micros(-13 * MICROS_PER_WEEK),
    ));
    store
        .record_usage(&platform(), records, now())
        .await
        .unwrap();
    store
        .create_request(
            &platform(),
            request(ResourceType::TalentHours, 80, Q3_START, Some(Q3_END)),
            now(),
        )
        .await
        .unwrap();
    (pool, allocations)
}

pub async fn forecast_data_reads_the_timelines_of_the_period(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (pool, allocations) = seed_like(s).await;
    let q3 = PlanningPeriod::parse("2026-Q3").unwrap();
    assert_eq!((q3.start, q3.end), (at(Q3_START), at(Q3_END)));
    let read = |scope: Scope, rt: ResourceType| {
        let store = store.clone();
        async move {
            store
                .forecast_data(&scope, &ws(WS_A), rt, q3, now())
                .await
                .unwrap()
        }
    };
    let d = read(platform(), ResourceType::TalentHours).await;
    assert_eq!(d.pool.as_ref().map(|p| p.id.clone()), Some(pool.id.clone()));
    let p = &d.pool_period;
    let f = figures(&p.supply, 1000, &p.committed, &d.pending, q3);
    assert_eq!(
        (f.committed, f.pending, f.available, f.gap),
        (th(160), th(80), th(40), th(40))
    );
    assert!(p.supply_changes.is_empty());
    assert!(p.expiring.is_empty());
    assert_eq!((p.expiring_count, p.expiring_total), (0, units(0)));
    // 12 × 30 + 6 × 50; the 13th week back is outside.
    assert_eq!(d.usage_last_12_weeks, units(660));

    // A supply increase and an allocation ending inside the quarter (read
    // after the forecast above: nothing of it may be served from before).
    let (adj, _) = s
        .adjust_supply(
            &platform(),
            &pool.id,
            adjustment(20, Some(at("2026-08-01T00:00:00Z"))),
            now(),
        )
        .await
        .unwrap();
    s.adjust_supply(
        &platform(),
        &pool.id,
        adjustment(5, Some(at(Q3_END))),
        now(),
    )
    .await
    .unwrap();
    s.patch_allocation(
        &platform(),
        &allocations[1].id,
        AllocationPatch {
            ends_at: Some(Some(at("2026-08-15T00:00:00Z"))),
            ..AllocationPatch::default()
        },
        now(),
    )
    .await
    .unwrap();
    let d = read(platform(), ResourceType::TalentHours).await;
    let p = &d.pool_period;
    let changes: Vec<_> = p.supply_changes.iter().map(|c| c.id.clone()).collect();
    assert_eq!(changes, vec![adj.id]);
    assert_eq!(p.expiring.len(), 1);
    assert_eq!((p.expiring_count, p.expiring_total), (1, units(60)));
    assert_eq!(p.expiring[0].allocation_id, allocations[1].id);
    assert_eq!(p.expiring[0].service_line_id, line(2));
    assert_eq!(p.expiring[0].committed, units(60));
    assert_eq!(p.expiring[0].ends_at, at("2026-08-15T00:00:00Z"));
    assert_eq!(p.supply.value_at(at("2026-08-01T00:00:00Z")), th(220));
    assert_eq!(p.committed.value_at(at("2026-08-15T00:00:00Z")), th(100));
    let f = figures(&p.supply, 1000, &p.committed, &d.pending, q3);
    // The peak (160) is held from July 1 to August 15: supply is read where
    // it is least (200).
    assert_eq!((f.committed, f.available, f.gap), (th(160), th(40), th(40)));

    // Closing an allocation now ends its commitment inside the current
    // quarter: it is listed there, once, with what it committed.
    s.patch_allocation(
        &platform(),
        &allocations[0].id,
        AllocationPatch {
            status: Some(AllocationStatus::Closed),
            ..AllocationPatch::default()
        },
        now(),
    )
    .await
    .unwrap();
    let q2 = PlanningPeriod::parse("2026-Q2").unwrap();
    let d = store
        .forecast_data(&platform(), &ws(WS_A), ResourceType::TalentHours, q2, now())
        .await
        .unwrap();
    let p = &d.pool_period;
    let ended: Vec<_> = p
        .expiring
        .iter()
        .map(|e| (e.allocation_id.clone(), e.ends_at))
        .collect();
    assert_eq!(ended, vec![(allocations[0].id.clone(), now())]);
    assert_eq!(p.expiring_total, p.expiring[0].committed);

    // No pool of that type: no supply, but the workspace's demand still counts.
    let compute = read(platform(), ResourceType::Compute).await;
    assert!(compute.pool.is_none());
    assert_eq!(compute.pending.peak(q3.start, q3.end), 0);
    // Another organization sees nothing of it.
    let hidden = read(organization(ORG_B, None), ResourceType::TalentHours).await;
    assert!(hidden.pool.is_none());
    assert_eq!(hidden.pending.peak(q3.start, q3.end), 0);
}

pub async fn cost_data_reads_each_pool_with_its_allocations_and_usage(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let mut priced = new_pool(ORG_A, WS_A, ResourceType::TalentHours, 100);
    priced.unit_price = Some(UnitPrice {
        amount: "85.00".into(),
        currency: "USD".into(),
    });
    let talent = s.create_pool(&platform(), priced, now()).await.unwrap();
    let credits = s
        .create_pool(
            &platform(),
            new_pool(ORG_A, WS_A, ResourceType::AgentCredits, 1000),
            now(),
        )
        .await
        .unwrap();
    let a = backdated(s, &talent.id, 1, 40).await;
    let b = backdated(s, &talent.id, 2, 20).await;
    // Starts after the month: no cost in April.
    let mut later = new_allocation(&talent.id, 3, 10);
    later.starts_at = Some(at("2026-06-01T00:00:00Z"));
    s.create_allocation(&platform(), later, now())
        .await
        .unwrap();
    let c = backdated(s, &credits.id, 4, 100).await;
    s.record_usage(
        &platform(),
        vec![
            record("march", &a.id, units(50), at("2026-03-31T23:59:59Z")),
            record("april-1", &a.id, q("12.5"), at("2026-04-01T00:00:00Z")),
            record("april-2", &a.id, units(20), at("2026-04-14T00:00:00Z")),
            record("credits", &c.id, units(7), at("2026-04-02T00:00:00Z")),
        ],
        now(),
    )
    .await
    .unwrap();
    let april = PlanningPeriod::parse("2026-04").unwrap();
    let d = s
        .cost_data(&platform(), &ws(WS_A), april, page(100), now())
        .await
        .unwrap();
    let got: Vec<(PoolId, Vec<(AllocationId, Quantity)>)> = d
        .pools
        .iter()
        .map(|(p, allocs)| {
            (
                p.id.clone(),
                allocs.iter().map(|(a, u)| (a.id.clone(), *u)).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                talent.id.clone(),
                vec![(a.id.clone(), q("32.5")), (b.id.clone(), Quantity::ZERO)]
            ),
            (credits.id.clone(), vec![(c.id.clone(), units(7))]),
        ]
    );
    assert_eq!(
        d.pools[0].0.unit_price.as_ref().map(|p| p.amount.as_str()),
        Some("85.00")
    );
    // Usage after `now` is not in the month so far; a past month is whole.
    let march = PlanningPeriod::parse("2026-03").unwrap();
    let d = s
        .cost_data(&platform(), &ws(WS_A), march, page(100), now())
        .await
        .unwrap();
    assert_eq!(d.pools[0].1[0].1, units(50));
    // Another organization gets no pools.
    let hidden = s
        .cost_data(
            &organization(ORG_B, None),
            &ws(WS_A),
            april,
            page(100),
            now(),
        )
        .await
        .unwrap();
    assert!(hidden.pools.is_empty());
    assert_eq!(d.next, None);
    // Paged by one allocation: every page lists both pools, and the pages
    // together hold the report's rows once each, in the same order; the
    // allocation that starts after the month is looked at but not shown.
    let mut after = None;
    let mut paged: Vec<(PoolId, AllocationId, Quantity)> = Vec::new();
    let mut pages = 0;
    loop {
        let d = s
            .cost_data(
                &platform(),
                &ws(WS_A),
                april,
                PageRequest { limit: 1, after },
                now(),
            )
            .await
            .unwrap();
        pages += 1;
        assert_eq!(d.pools.len(), 2);
        for (p, allocs) in &d.pools {
            paged.extend(allocs.iter().map(|(a, u)| (p.id.clone(), a.id.clone(), *u)));
        }
        match d.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert!(pages >= 4, "{pages} pages");
    paged.sort_by_key(|(p, _, _)| if *p == talent.id { 0 } else { 1 });
    let whole: Vec<_> = got
        .iter()
        .flat_map(|(p, allocs)| allocs.iter().map(|(a, u)| (p.clone(), a.clone(), *u)))
        .collect();
    assert_eq!(paged, whole);
}
