//! Webhook endpoints and deliveries: who sees which endpoint, the fan-out of
//! events created after an endpoint, claims with a lease, attempts, and
//! concurrent claims that never hand one delivery out twice.

use crate::adjustments::adjustment;
use crate::*;
use capacity_store::{AttemptOutcome, DeliveryJob, NewWebhookEndpoint};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::task::JoinSet;

const LEASE: i64 = 60_000_000;
const MINUTE: i64 = 60_000_000;

pub fn endpoint(url: &str, types: &[&str]) -> NewWebhookEndpoint {
    NewWebhookEndpoint {
        url: url.into(),
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=".into(),
        description: Some("conformance".into()),
    }
}

fn failed(code: u16, retry_at: Instant) -> AttemptOutcome {
    AttemptOutcome {
        status_code: Some(code),
        error: Some(format!("endpoint answered {code}")),
        delivered: false,
        next_retry_at: Some(retry_at),
    }
}

fn ids(jobs: &[DeliveryJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.event_id.as_str()).collect()
}

pub async fn webhook_endpoints_are_created_listed_and_deleted(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (a, b) = (organization(ORG_A, None), organization(ORG_B, None));
    let ea = s
        .create_webhook_endpoint(&a, endpoint("https://a.example/hook", &[]), now())
        .await
        .unwrap();
    assert_eq!(ea.id, "WHE-26-000001");
    assert_eq!(ea.url, "https://a.example/hook");
    assert_eq!(ea.organization_id.as_ref().map(|o| o.as_str()), Some(ORG_A));
    assert_eq!(ea.created_at, now());
    assert_eq!(ea.secret, endpoint("", &[]).secret);
    assert_eq!(ea.description.as_deref(), Some("conformance"));
    let eb = s
        .create_webhook_endpoint(
            &b,
            endpoint("https://b.example/hook", &["capacity.pool.created"]),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(eb.event_types, vec!["capacity.pool.created".to_owned()]);
    let ep = s
        .create_webhook_endpoint(
            &platform(),
            endpoint("https://p.example/hook", &["*"]),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(ep.organization_id, None);

    let list = |scope: Scope| {
        let store = store.clone();
        async move {
            store
                .list_webhook_endpoints(&scope, page(10))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(a.clone()).await, vec![ea.id.clone()]);
    assert_eq!(list(b.clone()).await, vec![eb.id.clone()]);
    assert_eq!(
        list(platform()).await,
        vec![ea.id.clone(), eb.id.clone(), ep.id.clone()]
    );
    let first = s
        .list_webhook_endpoints(&platform(), page(2))
        .await
        .unwrap();
    let rest = s
        .list_webhook_endpoints(
            &platform(),
            PageRequest {
                limit: 2,
                after: first.next,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].id, ep.id);

    assert_eq!(s.get_webhook_endpoint(&a, &ea.id).await.unwrap().id, ea.id);
    assert_not_found(s.get_webhook_endpoint(&b, &ea.id).await);
    assert_not_found(s.delete_webhook_endpoint(&b, &ea.id).await);
    s.delete_webhook_endpoint(&a, &ea.id).await.unwrap();
    assert_not_found(s.get_webhook_endpoint(&a, &ea.id).await);
    assert_not_found(s.delete_webhook_endpoint(&a, &ea.id).await);
    assert_not_found(s.list_deliveries(&a, &ea.id, page(10)).await);
    assert!(list(a).await.is_empty());
    assert_eq!(list(platform()).await, vec![eb.id, ep.id]);
}

pub async fn deliveries_are_claimed_with_a_lease_and_attempts_recorded(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await; // before any endpoint: never delivered
    let a_scope = organization(ORG_A, None);
    let e = s
        .create_webhook_endpoint(
            &a_scope,
            endpoint("https://a.example/hook", &["capacity.allocation.created"]),
            now(),
        )
        .await
        .unwrap();
    let alloc = allocate(s, &pool.id, 1, 10).await.unwrap();
    s.adjust_supply(&platform(), &pool.id, adjustment(1, None), now())
        .await
        .unwrap(); // pool.updated: not subscribed
    s.create_pool(
        &platform(),
        new_pool(ORG_B, WS_B, ResourceType::Compute, 10),
        now(),
    )
    .await
    .unwrap(); // another organization's

    let jobs = s.claim_deliveries(now(), 10, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let job = jobs[0].clone();
    let created = crate::lifecycle::events_of(s, "capacity.allocation.created").await;
    assert_eq!(job.event_id, created[0].id);
    assert_eq!(job.event_created_at, now());
    assert_eq!(job.url, e.url);
    assert_eq!(job.secret, e.secret);
    assert_eq!(job.attempts, 0);
    let payload: serde_json::Value = serde_json::from_str(&job.payload).unwrap();
    assert_eq!(payload["id"], job.event_id.as_str());
    assert_eq!(payload["type"], "capacity.allocation.created");
    assert_eq!(payload["created_at"], NOW);
    assert_eq!(payload["data"]["object"]["id"], alloc.id.as_str());

    // Leased: nobody else gets it until the lease runs out.
    assert!(
        s.claim_deliveries(now(), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let lapsed = now().plus_micros(LEASE);
    let again = s.claim_deliveries(lapsed, 10, LEASE).await.unwrap();
    assert_eq!(ids(&again), vec![job.event_id.as_str()]);

    // A failed attempt: pending, retried when due.
    s.record_attempt(
        job.delivery_seq,
        failed(503, lapsed.plus_micros(5 * MINUTE)),
        lapsed,
    )
    .await
    .unwrap();
    let listed = s.list_deliveries(&a_scope, &e.id, page(10)).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let d = &listed.items[0];
    assert_eq!(d.event_id, job.event_id);
    assert_eq!(d.event_type, "capacity.allocation.created");
    assert_eq!(d.webhook_endpoint_id, e.id);
    assert_eq!(d.status, "pending");
    assert_eq!(d.attempts, 1);
    assert_eq!(d.last_status_code, Some(503));
    assert_eq!(d.last_error.as_deref(), Some("endpoint answered 503"));
    assert_eq!(d.last_attempt_at, Some(lapsed));
    assert_eq!(d.next_retry_at, Some(lapsed.plus_micros(5 * MINUTE)));
    assert_eq!(d.delivered_at, None);
    assert_eq!(d.created_at, now());
    assert!(
        s.claim_deliveries(lapsed.plus_micros(4 * MINUTE), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let due = lapsed.plus_micros(5 * MINUTE);
    let retry = s.claim_deliveries(due, 10, LEASE).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].attempts, 1);
    s.record_attempt(
        retry[0].delivery_seq,
        AttemptOutcome {
            status_code: Some(204),
            error: None,
            delivered: true,
            next_retry_at: None,
        },
        due,
    )
    .await
    .unwrap();
    let d = &s
        .list_deliveries(&a_scope, &e.id, page(10))
        .await
        .unwrap()
        .items[0];
    assert_eq!(d.status, "delivered");
    assert_eq!((d.attempts, d.last_status_code), (2, Some(204)));
    assert_eq!(d.delivered_at, Some(due));
    assert_eq!(d.next_retry_at, None);
    let much_later = due.plus_micros(100 * MINUTE);
    assert!(
        s.claim_deliveries(much_later, 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );

    // Given up: failed, never claimed again.
    let second = allocate(s, &pool.id, 2, 10).await.unwrap();
    let jobs = s.claim_deliveries(much_later, 10, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&jobs[0].payload).unwrap()["data"]["object"]["id"],
        second.id.as_str()
    );
    s.record_attempt(
        jobs[0].delivery_seq,
        AttemptOutcome {
            status_code: None,
            error: Some("connection refused".into()),
            delivered: false,
            next_retry_at: None,
        },
        much_later,
    )
    .await
    .unwrap();
    let listed = s.list_deliveries(&a_scope, &e.id, page(10)).await.unwrap();
    assert_eq!(listed.items[1].status, "failed");
    assert_eq!(listed.items[1].next_retry_at, None);
    assert!(
        s.claim_deliveries(much_later.plus_micros(LEASE), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting an endpoint drops its pending deliveries.
    allocate(s, &pool.id, 3, 10).await.unwrap();
    let pending = s.claim_deliveries(much_later, 10, LEASE).await.unwrap();
    assert_eq!(pending.len(), 1);
    s.delete_webhook_endpoint(&a_scope, &e.id).await.unwrap();
    assert!(
        s.claim_deliveries(much_later.plus_micros(LEASE), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    // A platform endpoint receives every organization's events after it.
    s.create_webhook_endpoint(
        &platform(),
        endpoint("https://p.example/hook", &[]),
        much_later,
    )
    .await
    .unwrap();
    s.create_pool(
        &platform(),
        new_pool(ORG_B, WS_B, ResourceType::StorageGb, 10),
        much_later,
    )
    .await
    .unwrap();
    let jobs = s
        .claim_deliveries(much_later.plus_micros(LEASE), 10, LEASE)
        .await
        .unwrap();
    let types: Vec<String> = jobs
        .iter()
        .map(|j| {
            serde_json::from_str::<serde_json::Value>(&j.payload).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types, vec!["capacity.pool.created".to_owned()]);
}

pub async fn concurrent_claims_never_hand_out_one_delivery_twice(store: Arc<dyn Store>) {
    let s = store.as_ref();
    s.create_webhook_endpoint(&platform(), endpoint("https://p.example/1", &[]), now())
        .await
        .unwrap();
    s.create_webhook_endpoint(&platform(), endpoint("https://p.example/2", &[]), now())
        .await
        .unwrap();
    let pool = talent_pool(s, 1000).await;
    for i in 0..29 {
        allocate(s, &pool.id, i + 1, 1).await.unwrap();
    }
    // 30 events × 2 endpoints.
    let expected = 60;
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let jobs = store.claim_deliveries(now(), 4, LEASE).await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                // Each attempt fails and is retried later, freeing its
                // endpoint's slot (at most four in flight per endpoint).
                for j in jobs {
                    store
                        .record_attempt(j.delivery_seq, failed(500, later()), now())
                        .await
                        .unwrap();
                    mine.push(j.delivery_seq);
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("task"));
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a delivery was claimed twice");
    assert_eq!(all.len(), expected);
    // Due again together; then each is claimed once more, four per
    // endpoint at a time while the earlier ones are in flight.
    let again = s.claim_deliveries(later(), 100, LEASE).await.unwrap();
    assert_eq!(
        again.len(),
        2 * capacity_store::MAX_LEASED_PER_ENDPOINT as usize
    );
}

fn later() -> Instant {
    now().plus_micros(10 * MINUTE)
}

/// 20 endpoints per organization (and for the platform): the 21st is a
/// conflict; another organization's count is its own; deleting frees a place.
pub async fn an_organization_has_at_most_twenty_webhook_endpoints(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let max = capacity_store::MAX_WEBHOOK_ENDPOINTS;
    assert_eq!(max, 20);
    let a = organization(ORG_A, None);
    let mut first = None;
    for i in 0..max {
        let e = s
            .create_webhook_endpoint(&a, endpoint(&format!("https://a.example/{i}"), &[]), now())
            .await
            .unwrap();
        first.get_or_insert(e.id);
    }
    for scope in [&a] {
        match s
            .create_webhook_endpoint(scope, endpoint("https://a.example/more", &[]), now())
            .await
        {
            Err(StoreError::Conflict { code, .. }) => assert_eq!(code, "webhook_endpoint_limit"),
            other => panic!("the 21st endpoint: {other:?}"),
        }
    }
    // Another organization and the platform count their own.
    s.create_webhook_endpoint(
        &organization(ORG_B, None),
        endpoint("https://b.example/1", &[]),
        now(),
    )
    .await
    .unwrap();
    for i in 0..max {
        s.create_webhook_endpoint(
            &platform(),
            endpoint(&format!("https://p.example/{i}"), &[]),
            now(),
        )
        .await
        .unwrap();
    }
    assert!(matches!(
        s.create_webhook_endpoint(&platform(), endpoint("https://p.example/x", &[]), now())
            .await,
        Err(StoreError::Conflict {
            code: "webhook_endpoint_limit",
            ..
        })
    ));
    s.delete_webhook_endpoint(&a, &first.unwrap())
        .await
        .unwrap();
    s.create_webhook_endpoint(&a, endpoint("https://a.example/again", &[]), now())
        .await
        .unwrap();
}

/// A tar-pit endpoint holds at most four deliveries at once; the rest of
/// its backlog waits, and other endpoints' deliveries are claimed past it.
pub async fn one_endpoint_has_at_most_four_deliveries_in_flight(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let cap = capacity_store::MAX_LEASED_PER_ENDPOINT as usize;
    assert_eq!(cap, 4);
    let slow = s
        .create_webhook_endpoint(
            &platform(),
            endpoint("https://slow.example/", &["capacity.allocation.created"]),
            now(),
        )
        .await
        .unwrap();
    let pool = talent_pool(s, 1000).await;
    for i in 0..10 {
        allocate(s, &pool.id, i + 1, 1).await.unwrap();
    }
    let fast = s
        .create_webhook_endpoint(
            &platform(),
            endpoint("https://fast.example/", &["capacity.allocation.created"]),
            now(),
        )
        .await
        .unwrap();
    allocate(s, &pool.id, 11, 1).await.unwrap();
    let first = s.claim_deliveries(now(), 32, LEASE).await.unwrap();
    let urls: Vec<&str> = first.iter().map(|j| j.url.as_str()).collect();
    assert_eq!(urls.iter().filter(|u| **u == slow.url).count(), cap);
    assert_eq!(urls.iter().filter(|u| **u == fast.url).count(), 1);
    // Still in flight: nothing more for the slow one.
    assert!(
        s.claim_deliveries(now(), 32, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    // One attempt ends: one more of its backlog may go.
    let slow_job = first.iter().find(|j| j.url == slow.url).unwrap();
    s.record_attempt(slow_job.delivery_seq, failed(504, later()), now())
        .await
        .unwrap();
    let next = s.claim_deliveries(now(), 32, LEASE).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].url, slow.url);
    // Leases that lapse (a process died mid-send) free the endpoint too.
    let lapsed = s
        .claim_deliveries(now().plus_micros(LEASE), 32, LEASE)
        .await
        .unwrap();
    assert_eq!(lapsed.iter().filter(|j| j.url == slow.url).count(), cap);
}

/// One claim writes a bounded number of delivery rows (it runs on the
/// SQLite writer, between other writes); the next claims carry on where
/// it stopped, and every delivery is written once.
pub async fn a_fan_out_writes_a_bounded_number_of_deliveries(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 1000).await;
    let mut endpoints = Vec::new();
    for i in 0..capacity_store::MAX_WEBHOOK_ENDPOINTS {
        let e = s
            .create_webhook_endpoint(
                &platform(),
                endpoint(
                    &format!("https://p.example/{i}"),
                    &["capacity.allocation.created"],
                ),
                now(),
            )
            .await
            .unwrap();
        endpoints.push(e.id);
    }
    let events = 60;
    for i in 0..events {
        allocate(s, &pool.id, i + 1, 1).await.unwrap();
    }
    let written = || async {
        let mut n = 0;
        for e in &endpoints {
            let mut after = None;
            loop {
                let p = s
                    .list_deliveries(&platform(), e, PageRequest { limit: 100, after })
                    .await
                    .unwrap();
                n += p.items.len();
                if p.next.is_none() {
                    break;
                }
                after = p.next;
            }
        }
        n
    };
    let total = events as usize * endpoints.len();
    s.claim_deliveries(now(), 0, LEASE).await.unwrap();
    let once = written().await;
    assert!(once > 0, "nothing fanned out");
    assert!(
        once <= capacity_store::FAN_OUT_ROWS + endpoints.len(),
        "one claim wrote {once} of {total}"
    );
    for _ in 0..total {
        if written().await == total {
            break;
        }
        s.claim_deliveries(now(), 0, LEASE).await.unwrap();
    }
    assert_eq!(written().await, total);
}

/// An endpoint whose stored `event_types` does not decode receives nothing
/// (it fails closed: not "all events"); the others are unaffected.
/// `corrupt` overwrites that endpoint's stored list with something that
/// is not a JSON list of strings (each backend's own SQL).
pub async fn unreadable_event_types_deliver_nothing<F, Fut>(store: Arc<dyn Store>, corrupt: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let s = store.as_ref();
    let broken = s
        .create_webhook_endpoint(
            &platform(),
            endpoint("https://broken.example/", &["capacity.allocation.created"]),
            now(),
        )
        .await
        .unwrap();
    let fine = s
        .create_webhook_endpoint(&platform(), endpoint("https://fine.example/", &[]), now())
        .await
        .unwrap();
    corrupt(broken.id.clone()).await;
    let pool = talent_pool(s, 100).await;
    allocate(s, &pool.id, 1, 1).await.unwrap();
    let jobs = s.claim_deliveries(now(), 100, LEASE).await.unwrap();
    assert!(!jobs.is_empty());
    assert!(
        jobs.iter().all(|j| j.url == fine.url),
        "an unreadable subscription got {:?}",
        jobs.iter().map(|j| &j.url).collect::<Vec<_>>()
    );
}
