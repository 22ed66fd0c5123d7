//! `--copy-to-postgres`: copies a dataset that `capacity-datagen` (and
//! `capacity demo`) wrote into a SQLite file into a PostgreSQL database that
//! `capacity migrate` has migrated, so both backends serve the same rows.
//!
//! The rows are generated once, by the SQLite path, and copied table by
//! table, column by column, as they are: the two backends have the same
//! tables and columns (a test checks it), so a column added to both — say a
//! pool's stored running commitment — is carried over with no change here.
//! The copy is generic: every table of PostgreSQL's `public` schema but
//! `schema_migrations` is emptied and filled from SQLite's table of the same
//! name with `COPY … FROM STDIN` (text format), in one transaction; then
//! identity columns are moved past the copied rows, the id sequences set
//! to the numbers SQLite would mint next, the outbox cursor
//! put in the copy's transaction (columns only PostgreSQL has take their
//! defaults), and the database is vacuumed and analysed (statistics for the
//! planner, the visibility map for index-only scans).
//!
//! Speed: `COPY … FREEZE` (the tables are truncated in the same transaction,
//! so the rows need no later freezing), and foreign-key triggers off for the
//! load (`session_replication_role = replica`; the rows come from a store
//! that checked them).

use crate::Res;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant as Clock;
use tokio_postgres::NoTls;

/// Send to the server in pieces of about this many bytes.
const CHUNK: usize = 1 << 20;

/// Copies every table; returns the rows copied.
pub fn copy(sqlite: &Path, url: &str) -> Res<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(copy_async(sqlite, url))
}

async fn copy_async(sqlite: &Path, url: &str) -> Res<u64> {
    let started = Clock::now();
    let src = Connection::open_with_flags(sqlite, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let driver = tokio::spawn(connection);

    // Both at the same migration, or the columns may not match.
    let src_version: i64 = src.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let dst_version: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await
        .map_err(|e| {
            format!("{e}: is the database migrated (`capacity migrate --database-url …`)?")
        })?
        .get(0);
    if src_version != dst_version {
        return Err(format!(
            "the SQLite file is at migration {src_version}, PostgreSQL at {dst_version}"
        )
        .into());
    }

    let tables: Vec<String> = client
        .query(
            "SELECT table_name::TEXT FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
             AND table_name <> 'schema_migrations' ORDER BY table_name",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL session_replication_role = replica")
        .await?;
    tx.batch_execute(&format!("TRUNCATE {}", tables.join(", ")))
        .await?;
    let mut total = 0;
    for table in &tables {
        let t0 = Clock::now();
        let columns: Vec<(String, String)> = tx
            .query(
                "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                &[table],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // Columns only PostgreSQL has (migration 0009: `events.txid`,
        // `webhook_fanout.last_txid`) take their defaults; see `outbox`.
        let in_sqlite: Vec<String> = src
            .prepare("SELECT name FROM pragma_table_info(?1)")?
            .query_map([table], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let columns: Vec<(String, String)> = columns
            .into_iter()
            .filter(|c| in_sqlite.contains(&c.0))
            .collect();
        let names: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
        let list = names.join(", ");
        let mut stmt = src
            .prepare(&format!("SELECT {list} FROM {table}"))
            .map_err(|e| format!("SQLite table {table}: {e}"))?;
        let bytea: Vec<bool> = columns.iter().map(|c| c.1 == "bytea").collect();
        let boolean: Vec<bool> = columns.iter().map(|c| c.1 == "boolean").collect();
        let sink = tx
            .copy_in::<_, Bytes>(&format!("COPY {table} ({list}) FROM STDIN WITH (FREEZE)"))
            .await?;
        let mut sink = std::pin::pin!(sink);
        let mut buf = BytesMut::with_capacity(CHUNK + 4096);
        let mut rows = stmt.query([])?;
        let mut n: u64 = 0;
        while let Some(row) = rows.next()? {
            for i in 0..names.len() {
                if i > 0 {
                    buf.put_u8(b'\t');
                }
                put_value(&mut buf, row.get_ref(i)?, bytea[i], boolean[i]);
            }
            buf.put_u8(b'\n');
            n += 1;
            if buf.len() >= CHUNK {
                sink.send(buf.split().freeze()).await?;
            }
        }
        if !buf.is_empty() {
            sink.send(buf.split().freeze()).await?;
        }
        let copied = sink.as_mut().finish().await?;
        if copied != n {
            return Err(format!("{table}: sent {n} rows, PostgreSQL copied {copied}").into());
        }
        eprintln!(
            "capacity-datagen: {table}: {n} rows in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        total += n;
    }
    reset_identities(&tx, &tables).await?;
    set_sequences(&src, &tx).await?;
    outbox(&tx).await?;
    tx.commit().await?;
    let loaded = started.elapsed().as_secs_f64();
    let t0 = Clock::now();
    client.batch_execute("VACUUM (ANALYZE)").await?;
    eprintln!(
        "capacity-datagen: {total} rows copied in {loaded:.1} s, VACUUM (ANALYZE) in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    drop(client);
    driver.await??;
    Ok(total)
}

/// Identity columns continue after the largest copied value.
async fn reset_identities(client: &tokio_postgres::Transaction<'_>, tables: &[String]) -> Res<()> {
    let identities = client
        .query(
            "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns \
             WHERE table_schema = 'public' AND is_identity = 'YES'",
            &[],
        )
        .await?;
    for r in identities {
        let (table, column): (String, String) = (r.get(0), r.get(1));
        if !tables.contains(&table) {
            continue;
        }
        client
            .execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                     COALESCE(MAX({column}), 0) + 1, false) FROM {table}"
                ),
                &[],
            )
            .await?;
    }
    Ok(())
}

/// SQLite mints the next number of a prefix one past its table's highest
/// (floored by its `sequences` row); PostgreSQL from one SEQUENCE per prefix
/// (`ids_cap`, `ids_alloc`, …; migration 0009): each is set to the next
/// number SQLite would have minted. (Not SQLite's `sequences` alone: it is
/// only the floor, and copying it made the first event written on the copy
/// collide with a copied one.)
async fn set_sequences(src: &Connection, client: &tokio_postgres::Transaction<'_>) -> Res<()> {
    use capacity_domain::ids::MintedPrefix::*;
    for prefix in [
        Pool,
        Allocation,
        Request,
        Event,
        WebhookEndpoint,
        Token,
        Adjustment,
    ] {
        let next: i64 = src.query_row(capacity_store_sqlite::next_seq_sql(prefix), [], |r| {
            r.get(0)
        })?;
        let sequence = format!("ids_{}", prefix.as_str().to_lowercase());
        client
            .execute(
                "SELECT setval($1::TEXT::REGCLASS, $2, false)",
                &[&sequence, &next],
            )
            .await
            .map_err(|e| format!("sequence {sequence}: {e}"))?;
    }
    Ok(())
}

/// Every copied event took this transaction's id as its `txid` (the
/// column's default); the fan-out cursor, copied as a `seq`, is put in that
/// transaction too, so what SQLite had fanned out stays done and the rest
/// stays to do, in `seq` order.
async fn outbox(client: &tokio_postgres::Transaction<'_>) -> Res<()> {
    client
        .execute(
            "UPDATE webhook_fanout SET last_txid = pg_current_xact_id()::TEXT::BIGINT",
            &[],
        )
        .await?;
    Ok(())
}

/// One value in COPY's text format.
fn put_value(buf: &mut BytesMut, v: ValueRef<'_>, bytea: bool, boolean: bool) {
    match v {
        ValueRef::Null => buf.put_slice(b"\\N"),
        ValueRef::Integer(i) if boolean => buf.put_u8(if i != 0 { b't' } else { b'f' }),
        // Writing into a BytesMut cannot fail.
        ValueRef::Integer(i) => {
            let _ = write!(buf, "{i}");
        }
        ValueRef::Real(f) => {
            let _ = write!(buf, "{f}");
        }
        ValueRef::Text(t) if bytea => put_hex(buf, t),
        ValueRef::Text(t) => put_escaped(buf, t),
        ValueRef::Blob(b) if bytea => put_hex(buf, b),
        ValueRef::Blob(b) => put_escaped(buf, b),
    }
}

/// bytea's hex input (`\x…`), its backslash escaped for COPY.
fn put_hex(buf: &mut BytesMut, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.put_slice(b"\\\\x");
    for &b in bytes {
        buf.put_u8(HEX[usize::from(b >> 4)]);
        buf.put_u8(HEX[usize::from(b & 15)]);
    }
}

/// Text with COPY's escapes (backslash, and the delimiters).
fn put_escaped(buf: &mut BytesMut, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'\\' => buf.put_slice(b"\\\\"),
            b'\t' => buf.put_slice(b"\\t"),
            b'\n' => buf.put_slice(b"\\n"),
            b'\r' => buf.put_slice(b"\\r"),
            _ => buf.put_u8(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: ValueRef<'_>, bytea: bool, boolean: bool) -> String {
        let mut b = BytesMut::new();
        put_value(&mut b, v, bytea, boolean);
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn values_in_copy_text_format() {
        assert_eq!(text(ValueRef::Null, false, false), "\\N");
        assert_eq!(text(ValueRef::Integer(-42), false, false), "-42");
        assert_eq!(text(ValueRef::Integer(1), false, true), "t");
        assert_eq!(
            text(ValueRef::Text(b"a\tb\\c\nd"), false, false),
            "a\\tb\\\\c\\nd"
        );
        assert_eq!(text(ValueRef::Blob(&[0, 0xab]), true, false), "\\\\x00ab");
    }
}
