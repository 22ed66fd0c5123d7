//! API tokens, stored only as SHA-256 hashes of their secrets.

use crate::sql::{Db, DbResult, mint_id};
use capacity_domain::Instant;
use capacity_domain::ids::MintedPrefix;
use capacity_store::{NewToken, Principal, StoreError, TokenRecord, token_from_stored};
use tokio_postgres::Row;

const SELECT: &str =
    "SELECT id, kind, organization_id, workspaces, access, created_at, revoked_at FROM tokens";

/// A token row, decoded by the contract's one reading (which fails closed).
fn row(r: &Row) -> Result<Result<TokenRecord, StoreError>, tokio_postgres::Error> {
    let (kind, workspaces, access): (String, String, String) =
        (r.try_get(1)?, r.try_get(3)?, r.try_get(4)?);
    Ok(token_from_stored(
        r.try_get(0)?,
        &kind,
        r.try_get(2)?,
        &workspaces,
        &access,
        Instant::from_micros(r.try_get(5)?),
        r.try_get::<_, Option<i64>>(6)?.map(Instant::from_micros),
    ))
}

pub async fn create(db: &Db<'_>, new: NewToken, now: Instant) -> Result<TokenRecord, StoreError> {
    let (seq, id) = mint_id(db, MintedPrefix::Token, now).await?;
    let workspaces: Vec<&str> = new.workspaces.iter().map(|w| w.as_str()).collect();
    db.execute(
        "INSERT INTO tokens (seq, id, hash, kind, organization_id, workspaces, access, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &seq,
            &id,
            &&new.hash[..],
            &new.kind.as_str(),
            &new.organization_id.as_ref().map(|o| o.as_str()),
            &serde_json::json!(workspaces).to_string(),
            &new.access.as_str(),
            &now.micros(),
        ],
    )
    .await?;
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

pub async fn list(db: &Db<'_>) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = db.query(&format!("{SELECT} ORDER BY seq"), &[]).await?;
    let rows = rows.iter().map(row).collect::<Result<Vec<_>, _>>().db()?;
    rows.into_iter().collect()
}

pub async fn revoke(db: &Db<'_>, id: &str, now: Instant) -> Result<bool, StoreError> {
    let n = db
        .execute(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            &[&now.micros(), &id],
        )
        .await?;
    Ok(n == 1)
}

pub async fn authenticate(db: &Db<'_>, hash: [u8; 32]) -> Result<Option<Principal>, StoreError> {
    db.query_opt(
        &format!("{SELECT} WHERE hash = $1 AND revoked_at IS NULL"),
        &[&&hash[..]],
    )
    .await?
    .as_ref()
    .map(row)
    .transpose()
    .db()?
    .transpose()
    .map(|t| t.map(TokenRecord::principal))
}
