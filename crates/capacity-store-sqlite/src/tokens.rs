//! API tokens, stored only as SHA-256 hashes of their secrets.

use crate::sql::{DbResult, mint_id};
use capacity_domain::Instant;
use capacity_domain::ids::MintedPrefix;
use capacity_store::{NewToken, Principal, StoreError, TokenRecord, token_from_stored};
use rusqlite::{Connection, OptionalExtension, Row, params};

const SELECT: &str =
    "SELECT id, kind, organization_id, workspaces, access, created_at, revoked_at FROM tokens";

/// A token row, decoded by the contract's one reading (which fails closed).
fn row(r: &Row<'_>) -> rusqlite::Result<Result<TokenRecord, StoreError>> {
    let (kind, workspaces, access): (String, String, String) = (r.get(1)?, r.get(3)?, r.get(4)?);
    Ok(token_from_stored(
        r.get(0)?,
        &kind,
        r.get(2)?,
        &workspaces,
        &access,
        Instant::from_micros(r.get(5)?),
        r.get::<_, Option<i64>>(6)?.map(Instant::from_micros),
    ))
}

pub fn create(conn: &Connection, new: NewToken, now: Instant) -> Result<TokenRecord, StoreError> {
    let (seq, id) = mint_id(conn, MintedPrefix::Token, now)?;
    let workspaces: Vec<&str> = new.workspaces.iter().map(|w| w.as_str()).collect();
    conn.execute(
        "INSERT INTO tokens (seq, id, hash, kind, organization_id, workspaces, access, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            seq,
            id,
            &new.hash[..],
            new.kind.as_str(),
            new.organization_id.as_ref().map(|o| o.as_str()),
            serde_json::json!(workspaces).to_string(),
            new.access.as_str(),
            now.micros()
        ],
    )
    .db()?;
    Ok(TokenRecord {
        id,
        kind: new.kind,
        organization_id: new.organization_id,
        workspaces: new.workspaces,
        access: new.access,
        created_at: now,
        revoked_at: None,
    })
}

pub fn list(conn: &Connection) -> Result<Vec<TokenRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY seq")).db()?;
    let rows = stmt
        .query_map([], row)
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    rows.into_iter().collect()
}

pub fn revoke(conn: &Connection, id: &str, now: Instant) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
            params![now.micros(), id],
        )
        .db()?;
    Ok(n == 1)
}

pub fn authenticate(conn: &Connection, hash: [u8; 32]) -> Result<Option<Principal>, StoreError> {
    conn.prepare_cached(&format!("{SELECT} WHERE hash = ?1 AND revoked_at IS NULL"))
        .db()?
        .query_row([&hash[..]], row)
        .optional()
        .db()?
        .transpose()
        .map(|t| t.map(TokenRecord::principal))
}
