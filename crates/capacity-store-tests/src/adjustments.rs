//! The supply ledger: adjustments now or scheduled, and what they may not do.

use crate::*;
use capacity_domain::Delta;
use capacity_domain::model::SupplySource;
use capacity_store::{EventFilter, NewAdjustment};
use std::sync::Arc;

pub fn adjustment(delta_units: i64, effective_at: Option<Instant>) -> NewAdjustment {
    NewAdjustment {
        delta: Delta::from_thousandths(th(delta_units)),
        reason: Some("conformance".into()),
        source: if delta_units >= 0 {
            SupplySource::TalentOnboarded
        } else {
            SupplySource::TalentOffboarded
        },
        effective_at,
    }
}

pub async fn supply_changes_apply_now_or_when_scheduled(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let later = now().plus_micros(days(7));
    let (adj, after) = store
        .adjust_supply(&platform(), &pool.id, adjustment(50, None), now())
        .await
        .unwrap();
    assert_eq!(adj.effective_at, now());
    assert_eq!(adj.delta.thousandths(), th(50));
    assert_eq!(adj.capacity_pool_id, pool.id);
    assert_eq!(adj.source, SupplySource::TalentOnboarded);
    assert_eq!(adj.reason.as_deref(), Some("conformance"));
    assert_eq!(after.total, th(150));

    let (scheduled, after) = store
        .adjust_supply(&platform(), &pool.id, adjustment(-30, Some(later)), now())
        .await
        .unwrap();
    assert_eq!(scheduled.effective_at, later);
    assert_eq!(after.total, th(150), "a scheduled cut is not in force yet");
    let before_it = store
        .get_pool(&platform(), &pool.id, later.plus_micros(-1))
        .await
        .unwrap();
    assert_eq!(before_it.total, th(150));
    let from_it = store.get_pool(&platform(), &pool.id, later).await.unwrap();
    assert_eq!(from_it.total, th(120));

    let ledger = store
        .list_adjustments(&platform(), &pool.id, page(10))
        .await
        .unwrap();
    let deltas: Vec<i64> = ledger.items.iter().map(|a| a.delta.thousandths()).collect();
    assert_eq!(deltas, vec![th(100), th(50), th(-30)]);
    assert_eq!(ledger.items[2].id, scheduled.id);

    let updates = store
        .list_events(
            &platform(),
            EventFilter {
                kind: Some("capacity.pool.updated".into()),
                created_after: None,
            },
            page(10),
        )
        .await
        .unwrap();
    assert_eq!(updates.items.len(), 2);
}

pub async fn adjustments_cannot_be_backdated(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let r = store
        .adjust_supply(
            &platform(),
            &pool.id,
            adjustment(10, Some(now().plus_micros(-1))),
            now(),
        )
        .await;
    assert_invalid(r, "effective_at");
    let ledger = store
        .list_adjustments(&platform(), &pool.id, page(10))
        .await
        .unwrap();
    assert_eq!(
        ledger.items.len(),
        1,
        "a refused adjustment leaves no trace"
    );
}

pub async fn supply_may_not_go_negative(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    let r = store
        .adjust_supply(&platform(), &pool.id, adjustment(-150, None), now())
        .await;
    assert_invalid(r, "delta");
    // Fine alone, negative together with a cut already scheduled.
    let later = now().plus_micros(days(3));
    store
        .adjust_supply(&platform(), &pool.id, adjustment(-80, Some(later)), now())
        .await
        .unwrap();
    let r = store
        .adjust_supply(&platform(), &pool.id, adjustment(-30, None), now())
        .await;
    assert_invalid(r, "delta");
    let p = store.get_pool(&platform(), &pool.id, later).await.unwrap();
    assert_eq!(p.total, th(20));
}

pub async fn a_supply_cut_below_commitments_is_accepted_and_announced(store: Arc<dyn Store>) {
    let pool = talent_pool(store.as_ref(), 100).await;
    allocate(store.as_ref(), &pool.id, 1, 80).await.unwrap();
    let (_, after) = store
        .adjust_supply(&platform(), &pool.id, adjustment(-50, None), now())
        .await
        .unwrap();
    assert_eq!(after.total, th(50));
    assert_eq!(after.allocated, th(80));
    assert_eq!(after.available(), th(-30));
    let over = store
        .list_events(
            &platform(),
            EventFilter {
                kind: Some("capacity.pool_overcommitted".into()),
                created_after: None,
            },
            page(10),
        )
        .await
        .unwrap();
    assert_eq!(over.items.len(), 1);
    let data = &over.items[0].data["object"];
    assert_eq!(
        data["shortfall"],
        serde_json::json!(30),
        "a number, as every quantity"
    );
    assert_eq!(data["committed"], serde_json::json!(80));
    assert_eq!(data["capacity"], serde_json::json!(50));
    assert_eq!(data["pool"]["id"], pool.id.as_str());
    // An increase never announces an overcommitment.
    store
        .adjust_supply(&platform(), &pool.id, adjustment(10, None), now())
        .await
        .unwrap();
    let over = store
        .list_events(
            &platform(),
            EventFilter {
                kind: Some("capacity.pool_overcommitted".into()),
                created_after: None,
            },
            page(10),
        )
        .await
        .unwrap();
    assert_eq!(over.items.len(), 1);
}
