//! The transactional outbox: events are inserted by the same transaction
//! that makes the change they announce.

use crate::sql::{Db, DbResult, Query, id_head, minted_sql};
use capacity_domain::ids::MintedPrefix;
use capacity_domain::model::Event;
use capacity_domain::{Instant, OrgId, WorkspaceId};
use capacity_store::{EventFilter, Page, PageRequest, Scope, StoreError};
use std::sync::LazyLock;
use tokio_postgres::Row;

/// Inserts an event, numbered in the same statement; answers its id. Call
/// it once the write's rules have passed (a number taken is not given back).
/// The row records its transaction's id (`txid`, a column default): the
/// outbox is fanned out in (txid, seq) order, see `webhooks::fan_out`.
pub async fn insert_event(
    db: &Db<'_>,
    kind: &str,
    org: &OrgId,
    workspace: &WorkspaceId,
    object: impl serde::Serialize,
    now: Instant,
) -> Result<String, StoreError> {
    let data = event_data(object);
    db.query_one(
        &INSERT,
        &[
            &id_head(MintedPrefix::Event, now),
            &org.as_str(),
            &workspace.as_str(),
            &kind,
            &data,
            &now.micros(),
        ],
    )
    .await?
    .try_get(0)
    .db()
}

/// An event's `data`: the object it announces.
pub fn event_data(object: impl serde::Serialize) -> String {
    serde_json::json!({ "object": object }).to_string()
}

/// `$1` the id's head (`EVT-26-`), then organization, workspace, type, data,
/// created_at. Answers the id.
static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO events (seq, id, organization_id, workspace_id, type, data, created_at) \
         SELECT n, {}, $2, $3, $4, $5, $6 FROM (SELECT nextval('ids_evt') AS n) s RETURNING id",
        minted_sql("$1", "n")
    )
});

const SELECT: &str = "SELECT seq, id, type, created_at, data FROM events";

fn row(r: &Row) -> Result<(i64, Event), tokio_postgres::Error> {
    let data: String = r.try_get(4)?;
    Ok((
        r.try_get(0)?,
        Event {
            id: r.try_get(1)?,
            kind: r.try_get(2)?,
            created_at: Instant::from_micros(r.try_get(3)?),
            data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        },
    ))
}

pub async fn list(
    db: &Db<'_>,
    scope: &Scope,
    filter: &EventFilter,
    page: PageRequest,
) -> Result<Page<Event>, StoreError> {
    let mut q = Query::new(SELECT);
    q.scoped(scope, "organization_id", "workspace_id");
    if let Some(kind) = &filter.kind {
        q.and("type = {}", kind.clone());
    }
    if let Some(after) = filter.created_after {
        q.and("created_at > {}", after.micros());
    }
    q.page("seq", page.after, page.limit);
    let rows = db
        .query_built(&q)
        .await?
        .iter()
        .map(row)
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Page::from_rows(rows, page.limit))
}

pub async fn get(db: &Db<'_>, scope: &Scope, id: &str) -> Result<Event, StoreError> {
    let mut q = Query::new(SELECT);
    q.and("id = {}", id.to_owned());
    q.scoped(scope, "organization_id", "workspace_id");
    db.query_opt_built(&q)
        .await?
        .as_ref()
        .map(row)
        .transpose()
        .db()?
        .map(|r| r.1)
        .ok_or(StoreError::NotFound)
}
