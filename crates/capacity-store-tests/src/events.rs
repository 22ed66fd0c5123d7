//! The transactional outbox: every write announces itself, and the list
//! filters by type and time.

use crate::adjustments::adjustment;
use crate::*;
use capacity_store::EventFilter;
use std::sync::Arc;

pub async fn every_write_announces_itself(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let a = allocate(s, &pool.id, 1, 10).await.unwrap();
    s.adjust_supply(&platform(), &pool.id, adjustment(5, None), now())
        .await
        .unwrap();
    let events = s
        .list_events(&platform(), EventFilter::default(), page(10))
        .await
        .unwrap()
        .items;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            "capacity.pool.created",
            "capacity.allocation.created",
            "capacity.pool.updated"
        ]
    );
    assert_eq!(events[0].id, "EVT-26-000001");
    assert!(events.iter().all(|e| e.created_at == now()));
    assert_eq!(events[1].data["object"]["id"], a.id.as_str());
    assert_eq!(events[2].data["object"]["total"], serde_json::json!(105));
    for e in &events {
        assert_eq!(&s.get_event(&platform(), &e.id).await.unwrap(), e);
    }
    assert_not_found(s.get_event(&platform(), "EVT-26-999999").await);
}

pub async fn events_filter_by_type_and_time(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let pool = talent_pool(s, 100).await;
    let later = now().plus_micros(3_600_000_000);
    s.create_allocation(&platform(), new_allocation(&pool.id, 1, 10), later)
        .await
        .unwrap();
    s.create_allocation(&platform(), new_allocation(&pool.id, 2, 10), later)
        .await
        .unwrap();
    let by_type = s
        .list_events(
            &platform(),
            EventFilter {
                kind: Some("capacity.allocation.created".into()),
                created_after: None,
            },
            page(10),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(by_type.len(), 2);
    assert!(by_type.iter().all(|e| e.created_at == later));
    let after_now = s
        .list_events(
            &platform(),
            EventFilter {
                kind: None,
                created_after: Some(now()),
            },
            page(10),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(after_now.len(), 2, "created_after is strict");
    let none = s
        .list_events(
            &platform(),
            EventFilter {
                kind: Some("capacity.pool.created".into()),
                created_after: Some(now()),
            },
            page(10),
        )
        .await
        .unwrap()
        .items;
    assert!(none.is_empty());
}
