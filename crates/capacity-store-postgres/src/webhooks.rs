//! Webhook endpoints, the fan-out of the events outbox into deliveries, and
//! claiming due deliveries with a lease.
//!
//! Several processes run the dispatcher at once. What keeps them from
//! sending one delivery twice at the same time:
//! - the fan-out cursor (`webhook_fanout`'s one row) is locked `FOR UPDATE`
//!   by the claiming transaction, so one process at a time fans out, and
//!   the next sees the cursor where the last one left it;
//! - due deliveries are picked with `FOR UPDATE SKIP LOCKED` and given a
//!   lease (`lease_until`) in the same transaction: rows an attempt is
//!   being recorded for are skipped, and once the claim commits, its lease
//!   excludes them (under READ COMMITTED a locked row that changed is
//!   re-checked against the WHERE clause before it is returned). As claims
//!   take turns on the cursor's lock, the per-endpoint in-flight counts a
//!   claim reads (`MAX_LEASED_PER_ENDPOINT`) hold until it commits.
//!
//! Events do not become visible in `seq` order: numbers are taken without a
//! lock, and a transaction may commit event n + 1 before another commits
//! event n. The fan-out cursor is therefore `(txid, seq)`, the writing
//! transaction's id first (migration 0009), and a fan-out reads only events
//! of transactions below a horizon under which every transaction of this
//! database has ended (`horizon`): every transaction still to commit an
//! event has an id at or above it, so no event can appear behind the cursor
//! later. An event of a transaction that commits late is delayed (it holds
//! back the events of later transactions), never skipped.

use crate::sql::{Db, DbResult, Query, mint_id};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::{Instant, OrgId};
use capacity_store::{
    AttemptOutcome, Delivery, DeliveryJob, FanOutEndpoint, FanOutEvent, MAX_LEASED_PER_ENDPOINT,
    NewWebhookEndpoint, Page, PageRequest, Scope, StoreError, Tenant, WebhookEndpoint,
    admit_webhook_endpoint, decode_event_types, pick_claims, plan_fan_out,
};
use std::collections::HashMap;
use tokio_postgres::Row;

const SELECT: &str = "SELECT seq, id, organization_id, url, event_types, description, secret, created_at FROM webhook_endpoints";

/// How many events one fan-out turns into deliveries.
const FAN_OUT_BATCH: i64 = 1000;

fn row(r: &Row) -> Result<(i64, WebhookEndpoint), StoreError> {
    let types: String = r.try_get(4).db()?;
    // A list that does not decode is not shown as "all events".
    let event_types = decode_event_types(&types).ok_or_else(|| {
        StoreError::Internal("a webhook endpoint's event_types does not decode".into())
    })?;
    Ok((
        r.try_get(0).db()?,
        WebhookEndpoint {
            id: r.try_get(1).db()?,
            organization_id: r
                .try_get::<_, Option<String>>(2)
                .db()?
                .map(OrgId::from_trusted),
            url: r.try_get(3).db()?,
            event_types,
            description: r.try_get(5).db()?,
            secret: r.try_get(6).db()?,
            created_at: Instant::from_micros(r.try_get(7).db()?),
        },
    ))
}

/// Endpoints visible to a scope: platform sees all, an organization its own.
fn scoped(q: &mut Query, scope: &Scope) {
    q.and_raw("deleted_at IS NULL");
    if let Tenant::Organization { id, .. } = &scope.tenant {
        q.and("organization_id = {}", id.as_str().to_owned());
    }
}

pub async fn create(
    db: &Db<'_>,
    scope: &Scope,
    new: NewWebhookEndpoint,
    now: Instant,
) -> Result<WebhookEndpoint, StoreError> {
    // Creates of one tenant's endpoints take turns, so two cannot both
    // see 19 and make 21.
    let org = scope.organization().map(|o| o.as_str().to_owned());
    db.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('capacity.webhook_endpoints:' || COALESCE($1::TEXT, ''), 0))",
        &[&org],
    )
    .await?;
    let active: i64 = db
        .query_one(
            "SELECT COUNT(*) FROM webhook_endpoints WHERE deleted_at IS NULL \
             AND organization_id IS NOT DISTINCT FROM $1",
            &[&org],
        )
        .await?
        .try_get(0)
        .db()?;
    admit_webhook_endpoint(active as u64)?;
    let (seq, id) = mint_id(db, MintedPrefix::WebhookEndpoint, now).await?;
    let from: i64 = db
        .query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM events", &[])
        .await?
        .try_get(0)
        .db()?;
    db.execute(
        "INSERT INTO webhook_endpoints (seq, id, organization_id, url, event_types, description, secret, from_event_seq, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &seq,
            &id,
            &scope.organization().map(|o| o.as_str()),
            &new.url,
            &serde_json::json!(new.event_types).to_string(),
            &new.description,
            &new.secret,
            &from,
            &now.micros(),
        ],
    )
    .await?;
    get(db, scope, &id).await.map(|e| e.1)
}

pub async fn get(
    db: &Db<'_>,
    scope: &Scope,
    id: &str,
) -> Result<(i64, WebhookEndpoint), StoreError> {
    let mut q = Query::new(SELECT);
    q.and("id = {}", id.to_owned());
    scoped(&mut q, scope);
    db.query_opt_built(&q)
        .await?
        .as_ref()
        .map(row)
        .transpose()?
        .ok_or(StoreError::NotFound)
}

pub async fn list(
    db: &Db<'_>,
    scope: &Scope,
    page: PageRequest,
) -> Result<Page<WebhookEndpoint>, StoreError> {
    let mut q = Query::new(SELECT);
    scoped(&mut q, scope);
    q.page("seq", page.after, page.limit);
    let rows = db
        .query_built(&q)
        .await?
        .iter()
        .map(row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit))
}

pub async fn delete(db: &Db<'_>, scope: &Scope, id: &str) -> Result<(), StoreError> {
    let (seq, _) = get(db, scope, id).await?;
    // The database's clock, as SQLite's `unixepoch()` (the contract passes
    // no `now` here; `deleted_at` is only ever tested for NULL).
    db.execute(
        "UPDATE webhook_endpoints SET deleted_at = EXTRACT(EPOCH FROM now())::BIGINT * 1000000 \
         WHERE seq = $1",
        &[&seq],
    )
    .await?;
    db.execute(
        "DELETE FROM webhook_deliveries WHERE endpoint_seq = $1 AND status = 'pending'",
        &[&seq],
    )
    .await?;
    Ok(())
}

fn delivery_row(r: &Row) -> Result<(i64, Delivery), tokio_postgres::Error> {
    let seq: i64 = r.try_get(0)?;
    let opt = |i: usize| -> Result<Option<Instant>, tokio_postgres::Error> {
        Ok(r.try_get::<_, Option<i64>>(i)?.map(Instant::from_micros))
    };
    let status: String = r.try_get(4)?;
    Ok((
        seq,
        Delivery {
            id: format!("DLV-{seq:06}"),
            event_id: r.try_get(1)?,
            event_type: r.try_get(2)?,
            webhook_endpoint_id: r.try_get(3)?,
            next_retry_at: if status == "pending" { opt(9)? } else { None },
            status,
            attempts: attempts(r.try_get(5)?),
            last_status_code: r.try_get::<_, Option<i64>>(6)?.map(|c| c as u16),
            last_error: r.try_get(7)?,
            last_attempt_at: opt(8)?,
            delivered_at: opt(10)?,
            created_at: Instant::from_micros(r.try_get(11)?),
        },
    ))
}

fn attempts(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub async fn deliveries(
    db: &Db<'_>,
    scope: &Scope,
    endpoint_id: &str,
    page: PageRequest,
) -> Result<Page<Delivery>, StoreError> {
    let (endpoint_seq, _) = get(db, scope, endpoint_id).await?;
    let mut q = Query::new(
        "SELECT d.seq, e.id, e.type, w.id, d.status, d.attempts, d.last_status_code, d.last_error, d.last_attempt_at, \
         d.next_attempt_at, d.delivered_at, d.created_at \
         FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq JOIN webhook_endpoints w ON w.seq = d.endpoint_seq",
    );
    q.and("d.endpoint_seq = {}", endpoint_seq);
    q.page("d.seq", page.after, page.limit);
    let rows = db
        .query_built(&q)
        .await?
        .iter()
        .map(delivery_row)
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// How far the outbox is final: a transaction id `H` such that every
/// transaction of this database with an id below `H` has ended, so every
/// event with `txid < H` is committed (or gone) and visible to the
/// statements that follow. Call it holding an id (the cursor's lock gave
/// the fan-out one, `C`): transactions that get ids later have ids above
/// `C`, so `H` is `C` or the lowest id below it of this database's running
/// transactions (`pg_stat_activity`, read fresh: other databases' do not
/// count, whatever they hold). Read in its own statement, before the
/// events: a statement's snapshot is taken when it starts.
async fn horizon(db: &Db<'_>) -> Result<i64, StoreError> {
    let answers = db
        .pipeline(&[
            ("SELECT pg_stat_clear_snapshot()", &[]),
            (
                // backend_xid is 32 bits: each is placed in the epoch of `C`
                // by its distance below it (all are within 2^31).
                "WITH me AS (SELECT pg_current_xact_id()::TEXT::BIGINT AS c) \
                 SELECT LEAST(MIN(me.c), MIN(me.c - ((me.c - s.x) & 4294967295))) \
                 FROM me LEFT JOIN (SELECT backend_xid::TEXT::BIGINT AS x FROM pg_stat_activity \
                     WHERE datname = current_database() AND backend_xid IS NOT NULL \
                     AND pid <> pg_backend_pid()) s \
                 ON ((me.c - s.x) & 4294967295) BETWEEN 1 AND 2147483647",
                &[],
            ),
        ])
        .await?;
    answers
        .get(1)
        .and_then(|rows| rows.first())
        .ok_or_else(|| StoreError::Internal("no outbox horizon".into()))?
        .try_get(0)
        .db()
}

/// Turns events not yet fanned out into delivery rows, up to 1000 events
/// in (txid, seq) order and about [`FAN_OUT_ROWS`](capacity_store::FAN_OUT_ROWS)
/// rows (`plan_fan_out`), holding the cursor row's lock until the claiming
/// transaction commits.
async fn fan_out(db: &Db<'_>, now: Instant) -> Result<(), StoreError> {
    let row = db
        .query_one(
            "SELECT last_txid, last_event_seq FROM webhook_fanout WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?;
    let cursor: (i64, i64) = (row.try_get(0).db()?, row.try_get(1).db()?);
    let endpoints: Vec<FanOutEndpoint> = db
        .query(
            "SELECT seq, organization_id, event_types, from_event_seq FROM webhook_endpoints \
             WHERE deleted_at IS NULL",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            let types: String = r.try_get(2)?;
            Ok(FanOutEndpoint {
                seq: r.try_get(0)?,
                organization_id: r.try_get(1)?,
                event_types: decode_event_types(&types),
                from_event_seq: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .db()?;
    let horizon = horizon(db).await?;
    if endpoints.is_empty() {
        // Nothing to deliver: the cursor moves past every final event.
        db.execute(
            "UPDATE webhook_fanout f SET last_txid = e.txid, last_event_seq = e.seq \
             FROM (SELECT txid, seq FROM events WHERE txid < $1 \
                   ORDER BY txid DESC, seq DESC LIMIT 1) e \
             WHERE f.id = 1 AND (e.txid, e.seq) > (f.last_txid, f.last_event_seq)",
            &[&horizon],
        )
        .await?;
        return Ok(());
    }
    let events: Vec<(i64, FanOutEvent)> = db
        .query(
            "SELECT txid, seq, organization_id, type FROM events \
             WHERE (txid, seq) > ($1, $2) AND txid < $3 ORDER BY txid, seq LIMIT $4",
            &[&cursor.0, &cursor.1, &horizon, &FAN_OUT_BATCH],
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                FanOutEvent {
                    seq: r.try_get(1)?,
                    organization_id: r.try_get(2)?,
                    kind: r.try_get(3)?,
                },
            ))
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .db()?;
    if events.is_empty() {
        return Ok(());
    }
    for e in endpoints.iter().filter(|e| e.event_types.is_none()) {
        tracing::error!(
            endpoint_seq = e.seq,
            "a webhook endpoint's stored event_types does not decode; it receives nothing"
        );
    }
    let plain: Vec<FanOutEvent> = events.iter().map(|(_, e)| e.clone()).collect();
    let (rows, covered) = plan_fan_out(&plain, &endpoints);
    // Every (endpoint, event) pair in one multi-row insert.
    let (endpoint_seqs, event_seqs): (Vec<i64>, Vec<i64>) = rows.into_iter().unzip();
    if !endpoint_seqs.is_empty() {
        db.execute(
            "INSERT INTO webhook_deliveries (endpoint_seq, event_seq, status, next_attempt_at, created_at) \
             SELECT u.w, u.e, 'pending', $3, $3 \
             FROM unnest($1::BIGINT[], $2::BIGINT[]) WITH ORDINALITY AS u(w, e, n) ORDER BY u.n \
             ON CONFLICT DO NOTHING",
            &[&endpoint_seqs, &event_seqs, &now.micros()],
        )
        .await?;
    }
    if let Some((txid, e)) = covered.checked_sub(1).map(|i| &events[i]) {
        db.execute(
            "UPDATE webhook_fanout SET last_txid = $1, last_event_seq = $2 WHERE id = 1",
            &[txid, &e.seq],
        )
        .await?;
    }
    Ok(())
}

/// Fans out, then leases up to `limit` due deliveries, oldest due first,
/// at most [`MAX_LEASED_PER_ENDPOINT`] in flight per endpoint
/// (`pick_claims`). Claims take turns on the fan-out cursor's lock, so the
/// in-flight counts read here are not changing underneath.
pub async fn claim(
    db: &Db<'_>,
    now: Instant,
    limit: u32,
    lease: i64,
) -> Result<Vec<DeliveryJob>, StoreError> {
    fan_out(db, now).await?;
    let leased: HashMap<i64, u32> = db
        .query(
            "SELECT endpoint_seq, COUNT(*) FROM webhook_deliveries \
             WHERE lease_until > $1 AND status = 'pending' GROUP BY endpoint_seq",
            &[&now.micros()],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)? as u32)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .db()?;
    let full: Vec<i64> = leased
        .iter()
        .filter(|(_, n)| **n >= MAX_LEASED_PER_ENDPOINT)
        .map(|(e, _)| *e)
        .collect();
    // Rows another transaction is recording an attempt for are skipped,
    // not waited for.
    let candidates: Vec<(i64, i64)> = db
        .query(
            "SELECT d.seq, d.endpoint_seq FROM webhook_deliveries d JOIN webhook_endpoints w ON w.seq = d.endpoint_seq \
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
             AND (d.lease_until IS NULL OR d.lease_until <= $1) AND w.deleted_at IS NULL \
             AND d.endpoint_seq <> ALL($3::BIGINT[]) \
             ORDER BY d.next_attempt_at, d.seq LIMIT $2 \
             FOR UPDATE OF d SKIP LOCKED",
            &[
                &now.micros(),
                &(i64::from(limit) * i64::from(MAX_LEASED_PER_ENDPOINT)),
                &full,
            ],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .db()?;
    let chosen = pick_claims(&candidates, &leased, limit as usize);
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let rows = db
        .query(
            "UPDATE webhook_deliveries d SET lease_until = $2 \
             FROM events e, webhook_endpoints w \
             WHERE d.seq = ANY($1::BIGINT[]) AND e.seq = d.event_seq AND w.seq = d.endpoint_seq \
             RETURNING d.seq, e.id, e.created_at, e.type, e.data, w.url, w.secret, d.attempts, d.next_attempt_at",
            &[&chosen, &(now.micros() + lease)],
        )
        .await?;
    let mut jobs = rows
        .iter()
        .map(|r| {
            let (id, created, kind, data): (String, i64, String, String) =
                (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?);
            let data: serde_json::Value =
                serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
            let payload = serde_json::json!({
                "id": id, "type": kind, "created_at": Instant::from_micros(created), "data": data,
            });
            Ok((
                r.try_get::<_, i64>(8)?,
                DeliveryJob {
                    delivery_seq: r.try_get(0)?,
                    event_id: id,
                    event_created_at: Instant::from_micros(created),
                    payload: payload.to_string(),
                    url: r.try_get(5)?,
                    secret: r.try_get(6)?,
                    attempts: attempts(r.try_get(7)?),
                },
            ))
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .db()?;
    // RETURNING has no order: the same order as SQLite's claim.
    jobs.sort_by_key(|(next, j)| (*next, j.delivery_seq));
    Ok(jobs.into_iter().map(|(_, j)| j).collect())
}

pub async fn record_attempt(
    db: &Db<'_>,
    seq: i64,
    o: AttemptOutcome,
    now: Instant,
) -> Result<(), StoreError> {
    let (status, next, delivered_at) = match (o.delivered, o.next_retry_at) {
        (true, _) => ("delivered", None, Some(now.micros())),
        (false, Some(next)) => ("pending", Some(next.micros()), None),
        (false, None) => ("failed", None, None),
    };
    db.execute(
        "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status_code = $2, last_error = $3, \
         last_attempt_at = $4, next_attempt_at = $5, delivered_at = $6, lease_until = NULL WHERE seq = $7",
        &[
            &status,
            &o.status_code.map(i64::from),
            &o.error,
            &now.micros(),
            &next,
            &delivered_at,
            &seq,
        ],
    )
    .await?;
    Ok(())
}
