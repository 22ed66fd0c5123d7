//! Webhook endpoints, the fan-out of the events outbox into deliveries, and
//! claiming due deliveries with a lease (the single writer makes claims
//! exclusive on SQLite).

use crate::sql::{DbResult, Query, mint_id};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::{Instant, OrgId};
use capacity_store::{
    AttemptOutcome, Delivery, DeliveryJob, FanOutEndpoint, FanOutEvent, MAX_LEASED_PER_ENDPOINT,
    NewWebhookEndpoint, Page, PageRequest, Scope, StoreError, Tenant, WebhookEndpoint,
    admit_webhook_endpoint, decode_event_types, pick_claims, plan_fan_out,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::HashMap;

const SELECT: &str = "SELECT seq, id, organization_id, url, event_types, description, secret, created_at FROM webhook_endpoints";

fn row(r: &Row<'_>) -> rusqlite::Result<(i64, WebhookEndpoint)> {
    let types: String = r.get(4)?;
    // A list that does not decode is not shown as "all events".
    let event_types = decode_event_types(&types).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            4,
            rusqlite::types::Type::Text,
            "webhook endpoint event_types does not decode".into(),
        )
    })?;
    Ok((
        r.get(0)?,
        WebhookEndpoint {
            id: r.get(1)?,
            organization_id: r.get::<_, Option<String>>(2)?.map(OrgId::from_trusted),
            url: r.get(3)?,
            event_types,
            description: r.get(5)?,
            secret: r.get(6)?,
            created_at: Instant::from_micros(r.get(7)?),
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

pub fn create(
    conn: &Connection,
    scope: &Scope,
    new: NewWebhookEndpoint,
    now: Instant,
) -> Result<WebhookEndpoint, StoreError> {
    let active: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM webhook_endpoints WHERE deleted_at IS NULL AND organization_id IS ?1",
            [scope.organization().map(|o| o.as_str())],
            |r| r.get(0),
        )
        .db()?;
    admit_webhook_endpoint(active as u64)?;
    let (seq, id) = mint_id(conn, MintedPrefix::WebhookEndpoint, now)?;
    let from: i64 = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
        .db()?;
    conn.execute(
        "INSERT INTO webhook_endpoints (seq, id, organization_id, url, event_types, description, secret, from_event_seq, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            seq,
            id,
            scope.organization().map(|o| o.as_str()),
            new.url,
            serde_json::json!(new.event_types).to_string(),
            new.description,
            new.secret,
            from,
            now.micros()
        ],
    )
    .db()?;
    get(conn, scope, &id).map(|e| e.1)
}

pub fn get(
    conn: &Connection,
    scope: &Scope,
    id: &str,
) -> Result<(i64, WebhookEndpoint), StoreError> {
    let mut q = Query::new(SELECT);
    q.and("id = {}", id.to_owned());
    scoped(&mut q, scope);
    conn.prepare_cached(&q.sql)
        .db()?
        .query_row(rusqlite::params_from_iter(q.params.iter()), row)
        .optional()
        .db()?
        .ok_or(StoreError::NotFound)
}

pub fn list(
    conn: &Connection,
    scope: &Scope,
    page: PageRequest,
) -> Result<Page<WebhookEndpoint>, StoreError> {
    let mut q = Query::new(SELECT);
    scoped(&mut q, scope);
    q.page("seq", page.after, page.limit);
    let mut stmt = conn.prepare_cached(&q.sql).db()?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(q.params.iter()), row)
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}

pub fn delete(conn: &Connection, scope: &Scope, id: &str) -> Result<(), StoreError> {
    let (seq, _) = get(conn, scope, id)?;
    conn.execute(
        "UPDATE webhook_endpoints SET deleted_at = unixepoch() * 1000000 WHERE seq = ?1",
        [seq],
    )
    .db()?;
    conn.execute(
        "DELETE FROM webhook_deliveries WHERE endpoint_seq = ?1 AND status = 'pending'",
        [seq],
    )
    .db()?;
    Ok(())
}

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<(i64, Delivery)> {
    let seq: i64 = r.get(0)?;
    let opt = |i: usize| -> rusqlite::Result<Option<Instant>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(Instant::from_micros))
    };
    let status: String = r.get(4)?;
    Ok((
        seq,
        Delivery {
            id: format!("DLV-{seq:06}"),
            event_id: r.get(1)?,
            event_type: r.get(2)?,
            webhook_endpoint_id: r.get(3)?,
            next_retry_at: if status == "pending" { opt(9)? } else { None },
            status,
            attempts: r.get(5)?,
            last_status_code: r.get::<_, Option<i64>>(6)?.map(|c| c as u16),
            last_error: r.get(7)?,
            last_attempt_at: opt(8)?,
            delivered_at: opt(10)?,
            created_at: Instant::from_micros(r.get(11)?),
        },
    ))
}

pub fn deliveries(
    conn: &Connection,
    scope: &Scope,
    endpoint_id: &str,
    page: PageRequest,
) -> Result<Page<Delivery>, StoreError> {
    let (endpoint_seq, _) = get(conn, scope, endpoint_id)?;
    let mut q = Query::new(
        "SELECT d.seq, e.id, e.type, w.id, d.status, d.attempts, d.last_status_code, d.last_error, d.last_attempt_at, \
         d.next_attempt_at, d.delivered_at, d.created_at \
         FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq JOIN webhook_endpoints w ON w.seq = d.endpoint_seq",
    );
    q.and("d.endpoint_seq = {}", endpoint_seq);
    q.page("d.seq", page.after, page.limit);
    let mut stmt = conn.prepare_cached(&q.sql).db()?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(q.params.iter()), delivery_row)
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// Turns events not yet fanned out into delivery rows: up to 1000 events,
/// stopping once about [`FAN_OUT_ROWS`](capacity_store::FAN_OUT_ROWS) rows
/// are written (`plan_fan_out`), so this write stays short on the single
/// writer; the next claim carries on from the cursor.
fn fan_out(conn: &Connection, now: Instant) -> Result<(), StoreError> {
    let cursor: i64 = conn
        .query_row(
            "SELECT last_event_seq FROM webhook_fanout WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .db()?;
    let mut stmt = conn
        .prepare_cached("SELECT seq, organization_id, event_types, from_event_seq FROM webhook_endpoints WHERE deleted_at IS NULL")
        .db()?;
    let endpoints: Vec<FanOutEndpoint> = stmt
        .query_map([], |r| {
            let types: String = r.get(2)?;
            Ok(FanOutEndpoint {
                seq: r.get(0)?,
                organization_id: r.get(1)?,
                event_types: decode_event_types(&types),
                from_event_seq: r.get(3)?,
            })
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    if endpoints.is_empty() {
        conn.execute("UPDATE webhook_fanout SET last_event_seq = (SELECT COALESCE(MAX(seq), 0) FROM events) WHERE id = 1", [])
            .db()?;
        return Ok(());
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, organization_id, type FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1000",
        )
        .db()?;
    let events: Vec<FanOutEvent> = stmt
        .query_map([cursor], |r| {
            Ok(FanOutEvent {
                seq: r.get(0)?,
                organization_id: r.get(1)?,
                kind: r.get(2)?,
            })
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
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
    let (rows, covered) = plan_fan_out(&events, &endpoints);
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO webhook_deliveries (endpoint_seq, event_seq, status, next_attempt_at, created_at) \
             VALUES (?1, ?2, 'pending', ?3, ?3) ON CONFLICT DO NOTHING",
        )
        .db()?;
    for (endpoint, event) in rows {
        insert
            .execute(params![endpoint, event, now.micros()])
            .db()?;
    }
    if let Some(last) = covered.checked_sub(1).map(|i| events[i].seq) {
        conn.execute(
            "UPDATE webhook_fanout SET last_event_seq = ?1 WHERE id = 1",
            [last],
        )
        .db()?;
    }
    Ok(())
}

/// Fans out, then leases up to `limit` due deliveries, oldest due first,
/// at most [`MAX_LEASED_PER_ENDPOINT`] in flight per endpoint
/// (`pick_claims`): endpoints already at the cap are skipped in SQL, so a
/// tar-pit's backlog does not fill the candidates.
pub fn claim(
    conn: &Connection,
    now: Instant,
    limit: u32,
    lease: i64,
) -> Result<Vec<DeliveryJob>, StoreError> {
    fan_out(conn, now)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT endpoint_seq, COUNT(*) FROM webhook_deliveries \
             WHERE lease_until > ?1 AND status = 'pending' GROUP BY endpoint_seq",
        )
        .db()?;
    let leased: HashMap<i64, u32> = stmt
        .query_map([now.micros()], |r| Ok((r.get(0)?, r.get(1)?)))
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT d.seq, d.endpoint_seq FROM webhook_deliveries d JOIN webhook_endpoints w ON w.seq = d.endpoint_seq \
             WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND (d.lease_until IS NULL OR d.lease_until <= ?1) \
             AND w.deleted_at IS NULL AND d.endpoint_seq NOT IN ( \
                 SELECT endpoint_seq FROM webhook_deliveries WHERE lease_until > ?1 AND status = 'pending' \
                 GROUP BY endpoint_seq HAVING COUNT(*) >= ?3) \
             ORDER BY d.next_attempt_at, d.seq LIMIT ?2",
        )
        .db()?;
    let candidates: Vec<(i64, i64)> = stmt
        .query_map(
            params![
                now.micros(),
                i64::from(limit) * i64::from(MAX_LEASED_PER_ENDPOINT),
                MAX_LEASED_PER_ENDPOINT
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    let chosen = pick_claims(&candidates, &leased, limit as usize);
    let mut stmt = conn
        .prepare_cached(
            "SELECT d.seq, e.id, e.created_at, e.type, e.data, w.url, w.secret, d.attempts \
             FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq JOIN webhook_endpoints w ON w.seq = d.endpoint_seq \
             WHERE d.seq = ?1",
        )
        .db()?;
    let mut jobs = Vec::with_capacity(chosen.len());
    for seq in &chosen {
        jobs.push(
            stmt.query_row([seq], |r| {
                let (id, created, kind, data): (String, i64, String, String) =
                    (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
                let data: serde_json::Value =
                    serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                let payload = serde_json::json!({
                    "id": id, "type": kind, "created_at": Instant::from_micros(created), "data": data,
                });
                Ok(DeliveryJob {
                    delivery_seq: r.get(0)?,
                    event_id: id,
                    event_created_at: Instant::from_micros(created),
                    payload: payload.to_string(),
                    url: r.get(5)?,
                    secret: r.get(6)?,
                    attempts: r.get(7)?,
                })
            })
            .db()?,
        );
    }
    let mut lease_stmt = conn
        .prepare_cached("UPDATE webhook_deliveries SET lease_until = ?1 WHERE seq = ?2")
        .db()?;
    for j in &jobs {
        lease_stmt
            .execute(params![now.micros() + lease, j.delivery_seq])
            .db()?;
    }
    Ok(jobs)
}

pub fn record_attempt(
    conn: &Connection,
    seq: i64,
    o: AttemptOutcome,
    now: Instant,
) -> Result<(), StoreError> {
    let (status, next, delivered_at) = match (o.delivered, o.next_retry_at) {
        (true, _) => ("delivered", None, Some(now.micros())),
        (false, Some(next)) => ("pending", Some(next.micros()), None),
        (false, None) => ("failed", None, None),
    };
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET status = ?1, attempts = attempts + 1, last_status_code = ?2, last_error = ?3, \
         last_attempt_at = ?4, next_attempt_at = ?5, delivered_at = ?6, lease_until = NULL WHERE seq = ?7",
    )
    .db()?
    .execute(params![status, o.status_code.map(i64::from), o.error, now.micros(), next, delivered_at, seq])
    .db()?;
    Ok(())
}
