//! Idempotency keys: reserve, replay, mismatch, in flight, release, expiry,
//! and one reservation however many requests race for a key.

use crate::*;
use capacity_store::{IDEMPOTENCY_TTL_MICROS, IdempotencyReservation, StoredResponse};
use std::sync::Arc;
use tokio::task::JoinSet;

const OWNER: &str = "token-hash-1";

fn answer() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("etag".into(), "\"1\"".into()),
        ],
        body: br#"{"data":{"id":"ALLOC-26-000001"}}"#.to_vec(),
    }
}

pub async fn an_idempotency_key_replays_its_first_answer(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (body, other) = ([1u8; 32], [2u8; 32]);
    let reserve = |owner: &'static str, key: &'static str, fp: [u8; 32], t: Instant| {
        let store = store.clone();
        async move { store.idempotency_reserve(owner, key, fp, t).await.unwrap() }
    };
    assert_eq!(
        reserve(OWNER, "k1", body, now()).await,
        IdempotencyReservation::Reserved
    );
    // While the first request runs.
    assert_eq!(
        reserve(OWNER, "k1", body, now()).await,
        IdempotencyReservation::InFlight
    );
    assert_eq!(
        reserve(OWNER, "k1", other, now()).await,
        IdempotencyReservation::Mismatch
    );
    // Keys belong to their token.
    assert_eq!(
        reserve("token-hash-2", "k1", other, now()).await,
        IdempotencyReservation::Reserved
    );
    s.idempotency_finish(OWNER, "k1", Some(answer()))
        .await
        .unwrap();
    assert_eq!(
        reserve(OWNER, "k1", body, now()).await,
        IdempotencyReservation::Replay(answer())
    );
    assert_eq!(
        reserve(OWNER, "k1", other, now()).await,
        IdempotencyReservation::Mismatch
    );
    // Still remembered just before 24 hours, forgotten after.
    let day_later = now().plus_micros(IDEMPOTENCY_TTL_MICROS);
    assert_eq!(
        reserve(OWNER, "k1", body, day_later).await,
        IdempotencyReservation::Replay(answer())
    );
    assert_eq!(
        reserve(OWNER, "k1", other, day_later.plus_micros(1)).await,
        IdempotencyReservation::Reserved
    );

    // A released key (no answer worth keeping) runs afresh.
    assert_eq!(
        reserve(OWNER, "k2", body, now()).await,
        IdempotencyReservation::Reserved
    );
    s.idempotency_finish(OWNER, "k2", None).await.unwrap();
    assert_eq!(
        reserve(OWNER, "k2", body, now()).await,
        IdempotencyReservation::Reserved
    );
    // Releasing never drops a stored answer.
    s.idempotency_finish(OWNER, "k2", Some(answer()))
        .await
        .unwrap();
    s.idempotency_finish(OWNER, "k2", None).await.unwrap();
    assert_eq!(
        reserve(OWNER, "k2", body, now()).await,
        IdempotencyReservation::Replay(answer())
    );
}

pub async fn concurrent_requests_with_one_key_reserve_it_once(store: Arc<dyn Store>) {
    let mut tasks = JoinSet::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .idempotency_reserve(OWNER, "race", [7u8; 32], now())
                .await
        });
    }
    let (mut reserved, mut in_flight) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("task").expect("reserve") {
            IdempotencyReservation::Reserved => reserved += 1,
            IdempotencyReservation::InFlight => in_flight += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((reserved, in_flight), (1, 15));
}

pub async fn expired_keys_and_abandoned_reservations_are_purged(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let day = IDEMPOTENCY_TTL_MICROS;
    let long_ago = now().plus_micros(-2 * day);
    let minute_ago = now().plus_micros(-60_000_000);
    // Answered long ago (expired), answered recently (kept), reserved long
    // ago and never finished (abandoned), reserved just now (running).
    for (key, at) in [("old", long_ago), ("new", minute_ago)] {
        s.idempotency_reserve(OWNER, key, [1u8; 32], at)
            .await
            .unwrap();
        s.idempotency_finish(OWNER, key, Some(answer()))
            .await
            .unwrap();
    }
    s.idempotency_reserve(OWNER, "abandoned", [1u8; 32], minute_ago)
        .await
        .unwrap();
    s.idempotency_reserve(OWNER, "running", [1u8; 32], now())
        .await
        .unwrap();
    let in_flight_before = now().plus_micros(-1);
    let purged = s
        .idempotency_purge(now().plus_micros(-day), in_flight_before)
        .await
        .unwrap();
    assert_eq!(purged, 2, "the expired key and the abandoned reservation");
    assert_eq!(
        s.idempotency_purge(now().plus_micros(-day), in_flight_before)
            .await
            .unwrap(),
        0
    );
    let reserve = |key: &'static str| s.idempotency_reserve(OWNER, key, [1u8; 32], now());
    assert_eq!(
        reserve("new").await.unwrap(),
        IdempotencyReservation::Replay(answer())
    );
    assert_eq!(
        reserve("running").await.unwrap(),
        IdempotencyReservation::InFlight
    );
    assert_eq!(
        reserve("abandoned").await.unwrap(),
        IdempotencyReservation::Reserved
    );
}

/// A key whose answer a test then damages with SQL: (owner, key, fingerprint).
pub async fn an_answered_key_to_damage(
    store: &dyn Store,
) -> (&'static str, &'static str, [u8; 32]) {
    let (owner, key, fingerprint) = ("token-1", "damaged", [7u8; 32]);
    let reserved = store
        .idempotency_reserve(owner, key, fingerprint, now())
        .await
        .unwrap();
    assert_eq!(reserved, IdempotencyReservation::Reserved);
    let answer = StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), "application/json".into())],
        body: b"{}".to_vec(),
    };
    store
        .idempotency_finish(owner, key, Some(answer.clone()))
        .await
        .unwrap();
    let replayed = store
        .idempotency_reserve(owner, key, fingerprint, now())
        .await
        .unwrap();
    assert_eq!(replayed, IdempotencyReservation::Replay(answer));
    (owner, key, fingerprint)
}

/// A stored answer that does not decode is an error, never replayed as an
/// empty answer.
pub async fn an_unreadable_answer_fails_closed(
    store: &dyn Store,
    (owner, key, fingerprint): (&str, &str, [u8; 32]),
) {
    let r = store
        .idempotency_reserve(owner, key, fingerprint, now())
        .await;
    assert!(matches!(r, Err(StoreError::Internal(_))), "{r:?}");
}
