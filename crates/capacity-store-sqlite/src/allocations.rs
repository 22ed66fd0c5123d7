//! Allocations: reads assemble the record from its row, its terms and its
//! usage; writes check the no-overcommit rule inside the writer's transaction.

use crate::events::{insert_event, insert_event_json};
use crate::pools;
use crate::sql::{DbResult, Query, mint_id, text_or_internal};
use capacity_domain::ids::{MintedPrefix, parse_minted};
use capacity_domain::model::{
    Allocation, AllocationStatus, HistoryEntry, Terms, UtilisationWeek, below_actual,
};
use capacity_domain::time::MICROS_PER_WEEK;
use capacity_domain::timeline::{Timeline, check_change};
use capacity_domain::{
    AllocationId, Instant, OrgId, Period, PoolId, Quantity, ResourceType, ServiceLineId,
    WorkspaceId,
};
use capacity_store::{
    AllocationFilter, AllocationPatch, NewAllocation, Page, PageRequest, PatchPlan, Scope,
    StoreError, UsageTarget, unit_name,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;

const SELECT: &str = "SELECT a.seq, a.id, p.id, a.workspace_id, a.organization_id, a.service_line_id, \
    a.resource_type, p.period, a.status, a.starts_at, a.ends_at, a.closed_at, a.created_at, a.updated_at, \
    a.version, (a.status <> 'closed' AND l.status = 'closed'), \
    COALESCE((SELECT u.quantity FROM usage_weeks u WHERE u.allocation_seq = a.seq AND u.week_start = ?1), 0), \
    a.pool_seq, p.overcommit_ratio \
    FROM allocations a JOIN pools p ON p.seq = a.pool_seq JOIN service_lines l ON l.id = a.service_line_id";

/// The allocation query as of `now`: `?1` is bound to the start of the
/// last complete ISO week, whose usage the record reports.
fn select(now: Instant) -> Query {
    let mut q = Query::new(SELECT);
    q.bind(last_week(now).0.micros());
    q
}

/// The last complete ISO week before `now`: (start, end).
fn last_week(now: Instant) -> (Instant, Instant) {
    let end = now.week_start();
    (end.plus_micros(-MICROS_PER_WEEK), end)
}

/// An allocation's row numbers, and what a change to it is judged by.
#[derive(Clone, Copy)]
struct Head {
    seq: i64,
    pool_seq: i64,
    overcommit_ratio: i64,
}

/// An allocation row before its terms are attached.
struct RowData {
    head: Head,
    alloc: Option<Allocation>,
}

fn row(r: &Row<'_>) -> rusqlite::Result<RowData> {
    let head = Head {
        seq: r.get(0)?,
        pool_seq: r.get(17)?,
        overcommit_ratio: r.get(18)?,
    };
    let rt: String = r.get(6)?;
    let period: String = r.get(7)?;
    let status: String = r.get(8)?;
    let parsed = (
        ResourceType::parse(&rt),
        Period::parse(&period),
        AllocationStatus::parse(&status),
    );
    let (Some(resource_type), Some(period), Some(status)) = parsed else {
        return Ok(RowData { head, alloc: None });
    };
    Ok(RowData {
        head,
        alloc: Some(Allocation {
            id: AllocationId::from_trusted(r.get(1)?),
            capacity_pool_id: PoolId::from_trusted(r.get(2)?),
            workspace_id: WorkspaceId::from_trusted(r.get(3)?),
            organization_id: OrgId::from_trusted(r.get(4)?),
            service_line_id: ServiceLineId::from_trusted(r.get(5)?),
            resource_type,
            period,
            status,
            starts_at: Instant::from_micros(r.get(9)?),
            ends_at: r.get::<_, Option<i64>>(10)?.map(Instant::from_micros),
            closed_at: r.get::<_, Option<i64>>(11)?.map(Instant::from_micros),
            terms: Vec::new(),
            actual_last_week: Quantity::from_thousandths(r.get(16)?),
            committed_last_week: Quantity::ZERO,
            orphaned: r.get(15)?,
            created_at: Instant::from_micros(r.get(12)?),
            updated_at: Instant::from_micros(r.get(13)?),
            version: r.get(14)?,
        }),
    })
}

/// Attaches terms and the commitment in force last week.
fn complete(
    conn: &Connection,
    data: RowData,
    now: Instant,
) -> Result<(Head, Allocation), StoreError> {
    let mut a = text_or_internal(data.alloc, "allocation")?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT effective_at, committed, resources, reason FROM allocation_terms \
             WHERE allocation_seq = ?1 ORDER BY effective_at",
        )
        .db()?;
    let rows = stmt
        .query_map([data.head.seq], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get(3)?,
            ))
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    a.terms = rows
        .into_iter()
        .map(|(at, committed, resources, reason)| {
            Ok(Terms {
                effective_at: Instant::from_micros(at),
                committed: Quantity::from_thousandths(committed),
                resources: capacity_store::decode_resources(&resources)?,
                reason,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    if a.terms.is_empty() {
        return Err(StoreError::Internal(format!(
            "allocation {} has no terms",
            a.id
        )));
    }
    let (week_start, week_end) = last_week(now);
    a.committed_last_week =
        Quantity::from_thousandths(a.commitment_timeline().peak(week_start, week_end));
    Ok((data.head, a))
}

/// A visible allocation and its sequence number.
pub fn load(
    conn: &Connection,
    scope: &Scope,
    id: &AllocationId,
    now: Instant,
) -> Result<(i64, Allocation), StoreError> {
    find(conn, scope, id, now).map(|(head, a)| (head.seq, a))
}

/// As [`load`], with the row numbers and the pool's overcommit ratio.
fn find(
    conn: &Connection,
    scope: &Scope,
    id: &AllocationId,
    now: Instant,
) -> Result<(Head, Allocation), StoreError> {
    // A minted id's number is its row's `seq`: the row is found by rowid,
    // without a walk down the `id` index (one random page fewer per read of
    // a large table). Ids whose number is not their `seq` (none are minted
    // so; rows loaded from elsewhere might be) are then looked up by `id`.
    let seq = parse_minted(MintedPrefix::Allocation, id.as_str());
    let by = |seq: Option<i64>| {
        let mut q = select(now);
        if let Some(seq) = seq {
            q.and("a.seq = {}", seq);
        }
        q.and("a.id = {}", id.as_str().to_owned());
        q.scoped(scope, "a.organization_id", "a.workspace_id");
        conn.prepare_cached(&q.sql)
            .db()?
            .query_row(rusqlite::params_from_iter(q.params.iter()), row)
            .optional()
            .db()
    };
    let data = match by(seq)? {
        Some(data) => data,
        None if seq.is_some() => by(None)?.ok_or(StoreError::NotFound)?,
        None => return Err(StoreError::NotFound),
    };
    complete(conn, data, now)
}

pub fn list(
    conn: &Connection,
    scope: &Scope,
    f: &AllocationFilter,
    page: PageRequest,
    now: Instant,
) -> Result<Page<Allocation>, StoreError> {
    let mut q = select(now);
    q.scoped(scope, "a.organization_id", "a.workspace_id");
    if let Some(ws) = &f.workspace_id {
        q.and("a.workspace_id = {}", ws.as_str().to_owned());
    }
    if let Some(s) = f.status {
        q.and("a.status = {}", s.as_str().to_owned());
    }
    if let Some(l) = &f.service_line_id {
        q.and("a.service_line_id = {}", l.as_str().to_owned());
    }
    if let Some(rt) = f.resource_type {
        q.and("a.resource_type = {}", rt.as_str().to_owned());
    }
    if let Some(p) = &f.capacity_pool_id {
        // By sequence, so the (pool_seq, seq) index pages without a join.
        q.and(
            "a.pool_seq = (SELECT seq FROM pools WHERE id = {})",
            p.as_str().to_owned(),
        );
    }
    match f.orphaned {
        Some(true) => q.and_raw("(a.status <> 'closed' AND l.status = 'closed')"),
        Some(false) => q.and_raw("NOT (a.status <> 'closed' AND l.status = 'closed')"),
        None => {}
    }
    let Some(below) = f.utilisation_below_tenths else {
        q.page("a.seq", page.after, page.limit);
        let mut stmt = conn.prepare_cached(&q.sql).db()?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(q.params.iter()), row)
            .db()?
            .collect::<Result<Vec<_>, _>>()
            .db()?;
        let rows = rows
            .into_iter()
            .map(|d| complete(conn, d, now).map(|(head, a)| (head.seq, a)))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Page::from_rows(rows, page.limit));
    };
    // Utilisation is computed, not stored: walk the rows in order and keep
    // those below the threshold until the page is full.
    if let Some(after) = page.after {
        q.and("a.seq > {}", after);
    }
    q.sql.push_str(" ORDER BY a.seq");
    let mut stmt = conn.prepare(&q.sql).db()?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(q.params.iter()))
        .db()?;
    let mut kept = Vec::new();
    let most = page.limit as usize * capacity_store::UTILISATION_SCAN_PER_ITEM;
    let mut looked = 0;
    while let Some(r) = rows.next().db()? {
        let (head, a) = complete(conn, row(r).db()?, now)?;
        if a.utilisation_percent().is_some_and(|p| p.tenths() < below) {
            kept.push((head.seq, a));
            if kept.len() > page.limit as usize {
                break;
            }
        }
        looked += 1;
        if looked == most && kept.len() <= page.limit as usize {
            // Looked at enough: what was found, and go on after this one.
            return Ok(Page {
                items: kept.into_iter().map(|r| r.1).collect(),
                next: Some(head.seq),
            });
        }
    }
    Ok(Page::from_rows(kept, page.limit))
}

/// Writes an allocation's materialised commitment steps (replacing its
/// earlier ones when `replacing`) and records the change on its pool
/// (`pools::touch`), keeping the pool's stored running commitment exact.
pub fn write_steps(
    conn: &Connection,
    pool_seq: i64,
    alloc_seq: i64,
    replacing: bool,
    timeline: &Timeline,
    now: Instant,
) -> Result<(), StoreError> {
    let through = pools::folded_through(conn, pool_seq)?;
    let mut folded_before = 0;
    // Each instant's step before and after (none before for a new
    // allocation). Only what changed is written: a PATCH usually adds or
    // moves one step and keeps the rest (deleting and inserting every step
    // cost a PATCH ~40,000 instructions).
    let mut steps: BTreeMap<i64, (Option<i64>, Option<i64>)> = BTreeMap::new();
    if replacing {
        let mut sel = conn
            .prepare_cached("SELECT at, delta FROM commitment_steps WHERE allocation_seq = ?1")
            .db()?;
        let mut rows = sel.query([alloc_seq]).db()?;
        while let Some(r) = rows.next().db()? {
            let (at, delta): (i64, i64) = (r.get(0).db()?, r.get(1).db()?);
            steps.entry(at).or_default().0 = Some(delta);
            if at <= through.micros() {
                folded_before += delta;
            }
        }
    }
    for &(at, delta) in timeline.steps() {
        steps.entry(at.micros()).or_default().1 = Some(delta);
    }
    for (at, change) in steps {
        let sql = match change {
            (Some(before), Some(after)) if before == after => continue,
            (Some(_), Some(_)) => {
                "UPDATE commitment_steps SET delta = ?4 WHERE pool_seq = ?1 AND at = ?2 AND allocation_seq = ?3"
            }
            (None, Some(_)) => {
                "INSERT INTO commitment_steps (pool_seq, at, allocation_seq, delta) VALUES (?1, ?2, ?3, ?4)"
            }
            (Some(_), None) => {
                "DELETE FROM commitment_steps WHERE pool_seq = ?1 AND at = ?2 AND allocation_seq = ?3"
            }
            (None, None) => continue,
        };
        let mut stmt = conn.prepare_cached(sql).db()?;
        match change.1 {
            Some(after) => stmt.execute(params![pool_seq, at, alloc_seq, after]),
            None => stmt.execute(params![pool_seq, at, alloc_seq]),
        }
        .db()?;
    }
    pools::touch(
        conn,
        pool_seq,
        through,
        timeline.value_at(through) - folded_before,
        now,
    )
}

pub fn create(
    conn: &Connection,
    scope: &Scope,
    new: NewAllocation,
    now: Instant,
) -> Result<Allocation, StoreError> {
    let pools::Judged {
        seq: pool_seq,
        pool,
        supply,
        committed: before,
    } = pools::load_for_write(conn, scope, &new.capacity_pool_id, now)?;
    let line = crate::service_lines::registration(conn, &new.service_line_id)?;
    let capacity_store::CreatePlan {
        starts_at,
        committed,
        change,
        registers_line: line_is_new,
    } = new.plan(scope, &pool, &supply, &before, line.as_ref(), now)?;

    // Judged: from here on it only writes.
    if line_is_new {
        conn.prepare_cached(
            "INSERT INTO service_lines (id, workspace_id, organization_id, status, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'active', ?4, ?4)",
        )
        .db()?
        .execute(params![
            new.service_line_id.as_str(),
            pool.workspace_id.as_str(),
            pool.organization_id.as_str(),
            now.micros()
        ])
        .db()?;
    }
    let (seq, id) = mint_id(conn, MintedPrefix::Allocation, now)?;
    let alloc = new.record(
        AllocationId::from_trusted(id),
        &pool,
        starts_at,
        committed,
        now,
    );
    conn.prepare_cached(
        "INSERT INTO allocations (seq, id, pool_seq, workspace_id, organization_id, service_line_id, resource_type, \
         status, starts_at, ends_at, closed_at, created_at, updated_at, version) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8, ?9, NULL, ?10, ?10, 1)",
    )
    .db()?
    .execute(params![
        seq,
        alloc.id.as_str(),
        pool_seq,
        alloc.workspace_id.as_str(),
        alloc.organization_id.as_str(),
        alloc.service_line_id.as_str(),
        alloc.resource_type.as_str(),
        starts_at.micros(),
        alloc.ends_at.map(|e| e.micros()),
        now.micros(),
    ])
    .db()?;
    let resources = serde_json::to_string(&alloc.terms[0].resources)
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO allocation_terms (allocation_seq, effective_at, committed, resources, reason) VALUES (?1, ?2, ?3, ?4, NULL)",
    )
    .db()?
    .execute(params![seq, starts_at.micros(), committed.thousandths(), resources])
    .db()?;
    write_steps(conn, pool_seq, seq, false, &change, now)?;
    // Serialized once, for the history and the event.
    let created =
        serde_json::to_string(&alloc.view(now)).map_err(|e| StoreError::Internal(e.to_string()))?;
    write_history_json(
        conn,
        seq,
        "created",
        &scope.token_id,
        None,
        "null",
        &created,
        starts_at,
        now,
    )?;
    insert_event_json(
        conn,
        "capacity.allocation.created",
        &alloc.organization_id,
        &alloc.workspace_id,
        &created,
        now,
    )?;
    Ok(alloc)
}

/// Appends one entry to an allocation's history.
#[allow(clippy::too_many_arguments)]
pub fn write_history(
    conn: &Connection,
    alloc_seq: i64,
    action: &str,
    actor: &str,
    reason: Option<&str>,
    before: &serde_json::Value,
    after: &serde_json::Value,
    effective_at: Instant,
    now: Instant,
) -> Result<(), StoreError> {
    write_history_json(
        conn,
        alloc_seq,
        action,
        actor,
        reason,
        &before.to_string(),
        &after.to_string(),
        effective_at,
        now,
    )
}

/// As [`write_history`], for `before` and `after` already serialized.
#[allow(clippy::too_many_arguments)]
fn write_history_json(
    conn: &Connection,
    alloc_seq: i64,
    action: &str,
    actor: &str,
    reason: Option<&str>,
    before: &str,
    after: &str,
    effective_at: Instant,
    now: Instant,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO allocation_history (allocation_seq, action, actor, reason, before, after, effective_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .db()?
    .execute(params![
        alloc_seq,
        action,
        actor,
        reason,
        before,
        after,
        effective_at.micros(),
        now.micros()
    ])
    .db()?;
    Ok(())
}

/// Replaces an allocation's terms `old` by `new`, writing only the terms
/// that changed (a PATCH usually adds or replaces one; deleting and
/// inserting them all was ~8 % of its instructions).
fn replace_terms(
    conn: &Connection,
    alloc_seq: i64,
    old: &[Terms],
    new: &[Terms],
) -> Result<(), StoreError> {
    for o in old {
        if !new.iter().any(|n| n.effective_at == o.effective_at) {
            conn.prepare_cached(
                "DELETE FROM allocation_terms WHERE allocation_seq = ?1 AND effective_at = ?2",
            )
            .db()?
            .execute(params![alloc_seq, o.effective_at.micros()])
            .db()?;
        }
    }
    for t in new {
        if old.contains(t) {
            continue;
        }
        let resources =
            serde_json::to_string(&t.resources).map_err(|e| StoreError::Internal(e.to_string()))?;
        conn.prepare_cached(
            "INSERT INTO allocation_terms (allocation_seq, effective_at, committed, resources, reason) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (allocation_seq, effective_at) DO UPDATE SET \
             committed = excluded.committed, resources = excluded.resources, reason = excluded.reason",
        )
        .db()?
        .execute(params![
            alloc_seq,
            t.effective_at.micros(),
            t.committed.thousandths(),
            resources,
            t.reason
        ])
        .db()?;
    }
    Ok(())
}

pub fn patch(
    conn: &Connection,
    scope: &Scope,
    id: &AllocationId,
    patch: AllocationPatch,
    now: Instant,
) -> Result<Allocation, StoreError> {
    let (
        Head {
            seq,
            pool_seq,
            overcommit_ratio,
        },
        old,
    ) = find(conn, scope, id, now)?;
    let Some(PatchPlan {
        new,
        change,
        terms_at,
        history,
    }) = patch.plan(&old, now)?
    else {
        return Ok(old);
    };
    let terms_changed = new.terms != old.terms;

    // The no-overcommit rule judges whatever the patch raises, now or later.
    let delta = new.commitment_timeline().minus(&old.commitment_timeline());
    if delta.steps().iter().any(|s| s.1 > 0) {
        let supply = pools::supply_timeline(conn, pool_seq)?;
        let before = pools::commitment_timeline(conn, pool_seq, now)?;
        check_change(&supply, overcommit_ratio, &before, &delta, now).map_err(|overcommit| {
            StoreError::InsufficientCapacity {
                overcommit,
                unit: unit_name(old.resource_type),
            }
        })?;
    }

    conn.prepare_cached(
        "UPDATE allocations SET status = ?1, ends_at = ?2, closed_at = ?3, updated_at = ?4, version = version + 1 \
         WHERE seq = ?5",
    )
    .db()?
    .execute(params![new.status.as_str(), new.ends_at.map(|e| e.micros()), new.closed_at.map(|c| c.micros()), now.micros(), seq])
    .db()?;
    if terms_changed {
        replace_terms(conn, seq, &old.terms, &new.terms)?;
    }
    write_steps(conn, pool_seq, seq, true, &new.commitment_timeline(), now)?;

    for h in &history {
        write_history(
            conn,
            seq,
            h.action,
            &scope.token_id,
            h.reason.as_deref(),
            &h.before,
            &h.after,
            h.effective_at,
            now,
        )?;
    }

    let updated = new;
    let (org, ws) = (&updated.organization_id, &updated.workspace_id);
    insert_event(
        conn,
        "capacity.allocation.updated",
        org,
        ws,
        updated.view(now),
        now,
    )?;
    if updated.status == AllocationStatus::Closed {
        insert_event(
            conn,
            "capacity.allocation.closed",
            org,
            ws,
            updated.view(now),
            now,
        )?;
    }
    if let Some(c) = change.committed
        && c < old.current_terms(now).committed
        && below_actual(c, old.period, old.actual_last_week)
    {
        insert_event(
            conn,
            "capacity.utilisation_warning",
            org,
            ws,
            serde_json::json!({
                "allocation": updated.view(now),
                "committed_per_week": old.period.to_per_week(c),
                "actual_last_week": old.actual_last_week,
                "effective_at": terms_at,
            }),
            now,
        )?;
    }
    Ok(updated)
}

pub fn history(
    conn: &Connection,
    scope: &Scope,
    id: &AllocationId,
    page: PageRequest,
) -> Result<Page<HistoryEntry>, StoreError> {
    let (seq, a) = load(conn, scope, id, Instant::END_OF_TIME)?;
    let mut q = Query::new(
        "SELECT seq, action, actor, reason, before, after, effective_at, created_at FROM allocation_history",
    );
    q.and("allocation_seq = {}", seq);
    q.page("seq", page.after, page.limit);
    let mut stmt = conn.prepare_cached(&q.sql).db()?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(q.params.iter()), |r| {
            let before: Option<String> = r.get(4)?;
            let after: String = r.get(5)?;
            Ok((
                r.get::<_, i64>(0)?,
                HistoryEntry {
                    allocation_id: a.id.clone(),
                    action: r.get(1)?,
                    actor: r.get(2)?,
                    reason: r.get(3)?,
                    before: before
                        .and_then(|b| serde_json::from_str(&b).ok())
                        .unwrap_or(serde_json::Value::Null),
                    after: serde_json::from_str(&after).unwrap_or(serde_json::Value::Null),
                    effective_at: Instant::from_micros(r.get(6)?),
                    created_at: Instant::from_micros(r.get(7)?),
                },
            ))
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}

/// Usage of an allocation in the ISO week starting at `week_start`.
pub fn week_usage(
    conn: &Connection,
    alloc_seq: i64,
    week_start: Instant,
) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT quantity FROM usage_weeks WHERE allocation_seq = ?1 AND week_start = ?2",
        )
        .db()?
        .query_row(params![alloc_seq, week_start.micros()], |r| {
            r.get::<_, i64>(0)
        })
        .optional()
        .db()?
        .unwrap_or(0))
}

/// The allocation usage is recorded against, if visible to `scope`.
pub fn usage_target(
    conn: &Connection,
    scope: &Scope,
    id: &AllocationId,
) -> Result<Option<UsageTarget>, StoreError> {
    let mut q = Query::new("SELECT seq, pool_seq, organization_id, status FROM allocations");
    q.and("id = {}", id.as_str().to_owned());
    q.scoped(scope, "organization_id", "workspace_id");
    conn.prepare_cached(&q.sql)
        .db()?
        .query_row(rusqlite::params_from_iter(q.params.iter()), |r| {
            Ok(UsageTarget {
                seq: r.get(0)?,
                pool_seq: r.get(1)?,
                organization_id: r.get(2)?,
                closed: r.get::<_, String>(3)? == "closed",
            })
        })
        .optional()
        .db()
}

/// The weekly series of the last `weeks` complete ISO weeks, oldest first.
pub fn utilisation_series(
    conn: &Connection,
    scope: &Scope,
    id: &AllocationId,
    weeks: u32,
    now: Instant,
) -> Result<Vec<UtilisationWeek>, StoreError> {
    let (seq, a) = load(conn, scope, id, now)?;
    let timeline = a.commitment_timeline();
    let this_week = now.week_start();
    let mut out = Vec::with_capacity(weeks as usize);
    for i in (1..=weeks as i64).rev() {
        let start = this_week.plus_micros(-i * MICROS_PER_WEEK);
        let end = start.plus_micros(MICROS_PER_WEEK);
        let committed = Quantity::from_thousandths(timeline.peak(start, end));
        let actual = Quantity::from_thousandths(week_usage(conn, seq, start)?);
        out.push(UtilisationWeek {
            week_start: start,
            committed,
            committed_per_week: a.period.to_per_week(committed),
            actual,
            utilisation_percent: capacity_domain::utilisation::weekly_utilisation(
                actual, committed, a.period,
            ),
        });
    }
    Ok(out)
}

/// See `Store::evaluate_low_utilisation`.
pub fn evaluate_low_utilisation(
    conn: &Connection,
    week_start: Instant,
    threshold_tenths: i64,
    now: Instant,
) -> Result<Option<usize>, StoreError> {
    let fresh = conn
        .prepare_cached(
            "INSERT INTO evaluations (kind, period_start, evaluated_at) VALUES ('utilisation_low', ?1, ?2) \
             ON CONFLICT DO NOTHING",
        )
        .db()?
        .execute(params![week_start.micros(), now.micros()])
        .db()?;
    if fresh == 0 {
        return Ok(None);
    }
    let mut q = select(week_start);
    q.and_raw("a.status = 'active'");
    q.sql.push_str(" ORDER BY a.seq");
    let mut stmt = conn.prepare(&q.sql).db()?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(q.params.iter()))
        .db()?;
    let mut recorded = 0;
    while let Some(r) = rows.next().db()? {
        let (_, a) = complete(conn, row(r).db()?, week_start)?;
        if let Some(p) = a.utilisation_percent()
            && p.tenths() < threshold_tenths
        {
            let data = serde_json::json!({
                "allocation": a.view(now),
                "week_start": week_start.plus_micros(-MICROS_PER_WEEK),
                "utilisation_percent": p,
                "threshold_percent": capacity_domain::utilisation::Percent::from_tenths(threshold_tenths),
            });
            insert_event(
                conn,
                "capacity.utilisation_low",
                &a.organization_id,
                &a.workspace_id,
                data,
                now,
            )?;
            recorded += 1;
        }
    }
    Ok(Some(recorded))
}
