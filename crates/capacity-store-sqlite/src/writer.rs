//! The single writer. SQLite allows one writer at a time, so every write goes
//! to one thread that owns the write connection. It takes whatever writes are
//! queued (up to [`MAX_BATCH`]), runs each in its own savepoint inside one
//! transaction, commits once, and answers each caller only once that commit
//! is flushed to disk (below). A failed write rolls back its savepoint alone; a
//! failed commit fails every write of the batch. This is group commit: under
//! load one disk flush serves many requests, and each request still sees the
//! effects of the ones before it, exactly as if they ran one by one.
//!
//! The flush is not the writer's: in WAL mode the connection commits with
//! `synchronous = NORMAL` (frames written, not flushed) and hands the
//! batch to a syncing thread, which flushes the WAL file (`fdatasync`) and
//! only then answers the batch's callers; meanwhile the writer runs the
//! next batch. One flush covers every batch committed before it began, and
//! a batch built on an earlier one is answered after it (the WAL is
//! replayed in order: a lost batch takes every later one with it). What a
//! committed batch wrote is visible to readers before its flush ends (for
//! about a millisecond); only a crash of the machine itself (not of the
//! process: the written frames are in the kernel's cache) could then
//! erase something a reader saw, and never something a caller was told
//! was done. Webhooks are not sent for it either: deliveries are claimed
//! by a later write, answered after a later flush. If a flush fails, the
//! batches it covered are answered 503 and the writer refuses every later
//! write: after a failed `fsync` the kernel may have dropped the pages, and
//! a later success would not say otherwise.
//!
//! Checkpoints are not the writer's either: its connection never checkpoints
//! (its WAL hook replaces the automatic checkpoint) and, once the WAL holds
//! [`CHECKPOINT_PAGES`], wakes a checkpointing thread with a connection of
//! its own, which runs a PASSIVE checkpoint (copying WAL pages into the
//! database file and flushing it) while the writer goes on appending to
//! the WAL. Inside the writer's commit, a checkpoint of the large dataset
//! (thousands of random pages of a 2 GiB file, then `fsync`) held up the
//! group that triggered it and every group queued behind it (create p99
//! 65 ms). A passive checkpoint never waits for a lock, never blocks the
//! writer or a reader; the WAL restarts from its start at the first write
//! after a checkpoint that copied everything. Under a steady stream of
//! writes that never happens, so past [`RESTART_PAGES`] the writer runs a
//! RESTART checkpoint itself between two groups, which bounds the WAL.
//!
//! A savepoint is not free: SQLite copies every page a savepoint changes
//! into a sub-journal first, which for a write touching a thousand index
//! pages (a usage batch) is most of its cost. So a write that can be run
//! again from the start ([`Writer::write_repeatable`]) runs first in its
//! batch, with no savepoint. Should one of them fail, the batch so far (only
//! such writes) is rolled back and every write of the batch runs again in
//! its own savepoint, as above. Running these first is one of the orders
//! the batch's writes could have arrived in: none of them has been answered.

use crate::sql::{DbResult, MintedInBatch};
use capacity_store::{Result, StoreError};
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

pub const MAX_BATCH: usize = 64;

/// WAL pages (~40 MiB) that wake the checkpointer. Not the default 1,000:
/// a group commit of usage batches writes thousands of pages, most of them
/// the same index pages again, and each checkpoint copies and syncs them.
pub const CHECKPOINT_PAGES: i32 = 10_000;

/// WAL pages (~400 MiB) past which the writer restarts the WAL itself. Under
/// a steady stream of writes (usage ingestion) a passive checkpoint never
/// finds the WAL fully copied when the writer begins a transaction, so the
/// WAL is never restarted and grows without bound (measured: 13 GiB in a
/// minute of usage batches); a RESTART checkpoint between two groups copies
/// what the passive passes left and starts it over. Rare, and on the
/// writer's path: the price of a bounded WAL.
pub const RESTART_PAGES: i32 = 100_000;

/// A queued write: `run` executes it inside the batch's transaction, `finish`
/// answers its caller once the batch's fate is known.
trait Job: Send {
    fn run(&mut self, conn: &Connection) -> bool;
    /// May `run` be called again after its writes were rolled back?
    fn repeatable(&self) -> bool {
        false
    }
    fn finish(self: Box<Self>, commit_error: Option<&str>);
}

/// Runs `f`, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(StoreError::Internal("a write panicked".into())))
}

fn answer<T>(
    reply: oneshot::Sender<Result<T>>,
    result: Option<Result<T>>,
    commit_error: Option<&str>,
) {
    let answer = match (commit_error, result) {
        (Some(e), _) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
        (None, Some(result)) => result,
        (None, None) => Err(StoreError::Internal("write was not run".into())),
    };
    let _ = reply.send(answer);
}

struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else { return false };
        let result = guarded(|| f(conn));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit_error: Option<&str>) {
        answer(self.reply, self.result, commit_error);
    }
}

/// A write that may run more than once: each run starts from the same state
/// (its earlier run's writes rolled back) and only its last run counts.
struct RepeatableJob<T, F> {
    f: F,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for RepeatableJob<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = guarded(|| (self.f)(conn));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn repeatable(&self) -> bool {
        true
    }

    fn finish(self: Box<Self>, commit_error: Option<&str>) {
        answer(self.reply, self.result, commit_error);
    }
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer on `conn`; with `checkpoints`, a connection to
    /// the same database, checkpoints run on a thread of their own. Fails
    /// (the store does not open) when a thread cannot be started or the
    /// connection refuses its settings.
    pub fn start(mut conn: Connection, checkpoints: Option<Connection>) -> Result<Writer> {
        let thread = |what: &str, e: std::io::Error| {
            StoreError::Unavailable(format!("cannot start the SQLite {what} thread: {e}"))
        };
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(4096);
        let wal = wal_file(&conn);
        // The WAL's size after the last commit, when a checkpointer runs.
        let wal_pages = Arc::new(std::sync::atomic::AtomicI32::new(0));
        if let (Some(_), Some(checkpoints)) = (&wal, checkpoints) {
            let (wake, woken) = std::sync::mpsc::channel::<i32>();
            // Called after each commit with the WAL's size in pages.
            let seen = wal_pages.clone();
            let hooked = conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages| {
                seen.store(pages, Ordering::Relaxed);
                if pages >= CHECKPOINT_PAGES {
                    let _ = wake.send(pages);
                }
                Ok(())
            }));
            match hooked {
                Ok(()) => {
                    std::thread::Builder::new()
                        .name("sqlite-checkpoint".into())
                        .spawn(move || checkpoint(checkpoints, woken))
                        .map_err(|e| thread("checkpoint", e))?;
                }
                Err(e) => tracing::error!(error = %e, "WAL hook not set: the writer checkpoints"),
            }
        }
        if wal.is_some() {
            // The syncing thread flushes instead (see the module's notes).
            conn.execute_batch("PRAGMA synchronous = NORMAL").db()?;
        }
        let broken = Arc::new(AtomicBool::new(false));
        let (synced_tx, synced_rx) = std::sync::mpsc::channel::<Vec<Box<dyn Job>>>();
        {
            let broken = broken.clone();
            std::thread::Builder::new()
                .name("sqlite-sync".into())
                .spawn(move || sync(wal, synced_rx, &broken))
                .map_err(|e| thread("sync", e))?;
        }
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, synced_tx, &broken, &wal_pages))
            .map_err(|e| thread("writer", e))?;
        Ok(Writer { jobs: tx })
    }

    /// Runs `f` in the writer's transaction and answers once it is durable.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job = Box::new(TypedJob {
            f: Some(f),
            result: None,
            reply: tx,
        });
        self.send(job, rx).await
    }

    /// As [`Writer::write`], for a write that can be run again from the
    /// start after its writes were rolled back (its closure is `Fn`, and
    /// does nothing but read and write through the connection). It runs
    /// without a savepoint of its own, which spares copying each page it
    /// changes.
    pub async fn write_repeatable<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job = Box::new(RepeatableJob {
            f,
            result: None,
            reply: tx,
        });
        self.send(job, rx).await
    }

    async fn send<T>(&self, job: Box<dyn Job>, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }
}

/// The WAL file of a connection in WAL mode on a file, whose flushes the
/// syncing thread takes over; `None` (the connection flushes its own
/// commits) otherwise.
fn wal_file(conn: &Connection) -> Option<PathBuf> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .ok()?;
    let path = conn.path().filter(|p| !p.is_empty())?;
    mode.eq_ignore_ascii_case("wal")
        .then(|| PathBuf::from(format!("{path}-wal")))
}

fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    synced: std::sync::mpsc::Sender<Vec<Box<dyn Job>>>,
    broken: &AtomicBool,
    wal_pages: &std::sync::atomic::AtomicI32,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if broken.load(Ordering::Acquire) {
            for job in batch.drain(..) {
                job.finish(Some(UNSYNCED));
            }
            continue;
        }
        // Repeatable writes first (a stable sort: each kind keeps its order).
        batch.sort_by_key(|job| !job.repeatable());
        let result = run_batch(&conn, &mut batch);
        MintedInBatch::stop();
        let commit_error = match result {
            Err(e) => {
                tracing::error!(error = %e, "group transaction failed");
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Some(e.to_string())
            }
            Ok(()) => match exec(&conn, "COMMIT") {
                Ok(()) => {
                    if wal_pages.load(Ordering::Relaxed) >= RESTART_PAGES {
                        wal_pages.store(0, Ordering::Relaxed);
                        if let Err(e) =
                            conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                        {
                            tracing::warn!(error = %e, "restarting the WAL failed");
                        }
                    }
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "group commit failed");
                    let _ = conn.execute_batch("ROLLBACK");
                    Some(e.to_string())
                }
            },
        };
        let done = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        match commit_error {
            // Answered once flushed.
            None => {
                if let Err(unsent) = synced.send(done) {
                    for job in unsent.0 {
                        job.finish(Some("the sync thread has stopped"));
                    }
                }
            }
            Some(e) => {
                for job in done {
                    job.finish(Some(&e));
                }
            }
        }
    }
}

/// The checkpointing thread: a PASSIVE checkpoint each time the writer says
/// the WAL has grown past [`CHECKPOINT_PAGES`] (wake-ups that arrive during
/// one are served by the next). It ends with the writer's connection, which
/// owns the sending end.
fn checkpoint(conn: Connection, woken: std::sync::mpsc::Receiver<i32>) {
    while let Ok(mut pages) = woken.recv() {
        while let Ok(p) = woken.try_recv() {
            pages = p;
        }
        // Only PASSIVE on this thread: a RESTART here made the writer wait in
        // its busy handler's coarse sleeps (create p99 80 ms small, 1 s large).
        tracing::trace!(pages, "checkpoint wanted");
        let mode = "PASSIVE";
        let done = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match done {
            Ok((busy, wal, copied)) => tracing::debug!(mode, busy, wal, copied, "checkpoint"),
            Err(e) => tracing::warn!(error = %e, mode, "checkpoint failed"),
        }
    }
}

/// Why writes fail once a flush has failed.
const UNSYNCED: &str = "the database file could not be flushed to disk; restart the service";

/// The syncing thread: flushes the WAL file once for all the batches
/// committed so far, then answers them.
fn sync(
    wal: Option<PathBuf>,
    batches: std::sync::mpsc::Receiver<Vec<Box<dyn Job>>>,
    broken: &AtomicBool,
) {
    let mut file: Option<std::fs::File> = None;
    let mut done: Vec<Vec<Box<dyn Job>>> = Vec::new();
    while let Ok(first) = batches.recv() {
        done.push(first);
        done.extend(batches.try_iter());
        let flushed = match &wal {
            None => Ok(()),
            Some(path) => {
                if file.is_none() {
                    file = std::fs::OpenOptions::new().write(true).open(path).ok();
                }
                match &file {
                    Some(f) => f.sync_data(),
                    None => Err(std::io::Error::other(format!(
                        "cannot open {}",
                        path.display()
                    ))),
                }
            }
        };
        let error = flushed.err().map(|e| {
            tracing::error!(error = %e, "flushing the WAL failed; refusing further writes");
            broken.store(true, Ordering::Release);
            UNSYNCED
        });
        for job in done.drain(..).flatten() {
            job.finish(error);
        }
    }
}

/// Runs the batch's writes in one transaction, left open for the commit.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    exec(conn, "BEGIN IMMEDIATE")?;
    MintedInBatch::start();
    let bare = batch.iter().take_while(|job| job.repeatable()).count();
    // A write that failed before changing anything needs no undoing.
    let clean = |job: &mut Box<dyn Job>| {
        let before = conn.total_changes();
        let ok = job.run(conn);
        if !ok {
            MintedInBatch::forget();
        }
        ok || conn.total_changes() == before
    };
    if batch[..bare].iter_mut().all(clean) {
        for job in batch[bare..].iter_mut() {
            run_in_savepoint(conn, job.as_mut());
        }
        return Ok(());
    }
    // A write that ran bare failed after changing something, and may have
    // left part of its writes:
    // undo the batch so far (repeatable writes only) and run each write of
    // the batch in its own savepoint. SQLite may already have rolled back
    // the transaction itself (after an I/O error, say).
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")?;
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    MintedInBatch::start();
    for job in batch.iter_mut() {
        run_in_savepoint(conn, job.as_mut());
    }
    Ok(())
}

fn run_in_savepoint(conn: &Connection, job: &mut dyn Job) {
    if let Err(e) = exec(conn, "SAVEPOINT job") {
        tracing::error!(error = %e, "savepoint failed");
        return;
    }
    let ok = job.run(conn);
    let end = if ok {
        exec(conn, "RELEASE job")
    } else {
        MintedInBatch::forget();
        exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
    };
    if let Err(e) = end {
        tracing::error!(error = %e, "savepoint end failed");
    }
}

/// One statement, prepared once per connection.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (Writer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v TEXT NOT NULL UNIQUE)")
            .unwrap();
        (Writer::start(conn, None).unwrap(), dir)
    }

    fn insert(c: &Connection, v: &str) -> Result<()> {
        c.execute("INSERT INTO t (v) VALUES (?1)", [v])
            .map(|_| ())
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    fn rows(dir: &tempfile::TempDir) -> Vec<String> {
        let c = Connection::open(dir.path().join("w.db")).unwrap();
        let mut s = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Holds the writer in a first batch until `release` is sent, so the
    /// writes queued meanwhile form the next batch together.
    async fn hold(w: &Writer) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel::<()>();
        let w2 = w.clone();
        let held = tokio::spawn(async move {
            w2.write(move |_| {
                let _ = started.send(());
                wait.recv().map_err(|e| StoreError::Internal(e.to_string()))
            })
            .await
            .unwrap();
        });
        running.await.unwrap();
        (release, held)
    }

    async fn queued(w: &Writer, n: usize) {
        while w.jobs.max_capacity() - w.jobs.capacity() < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_checkpointer_copies_a_grown_wal_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE b (v BLOB NOT NULL)")
            .unwrap();
        let w = Writer::start(conn, Some(Connection::open(&path).unwrap())).unwrap();
        let pages = i64::from(CHECKPOINT_PAGES) + 100;
        w.write(move |c| {
            c.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
                 INSERT INTO b SELECT randomblob(3900) FROM n",
                [pages],
            )
            .map(|_| ())
            .map_err(|e| StoreError::Internal(e.to_string()))
        })
        .await
        .unwrap();
        // The writer's connection does not checkpoint (its WAL hook replaced
        // the automatic one): the database file grows only by the
        // checkpointer's hand. Look a bounded number of times.
        let mut size = 0;
        for _ in 0..600 {
            size = std::fs::metadata(&path).unwrap().len();
            if size > 4096 * pages as u64 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            size > 4096 * pages as u64,
            "the database file holds {size} bytes"
        );
    }

    #[tokio::test]
    async fn a_failed_repeatable_write_is_undone_alone_and_the_others_commit_once() {
        let (w, dir) = writer();
        let (release, held) = hold(&w).await;
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        let good = tokio::spawn({
            let w = w.clone();
            async move {
                w.write_repeatable(move |c| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    insert(c, "b")
                })
                .await
            }
        });
        queued(&w, 1).await;
        let fails = tokio::spawn({
            let w = w.clone();
            async move {
                w.write_repeatable(|c| {
                    insert(c, "a")?;
                    Err::<(), _>(StoreError::Internal("refused after a write".into()))
                })
                .await
            }
        });
        queued(&w, 2).await;
        let plain = tokio::spawn({
            let w = w.clone();
            async move { w.write(|c| insert(c, "c")).await }
        });
        queued(&w, 3).await;
        release.send(()).unwrap();
        held.await.unwrap();
        assert!(fails.await.unwrap().is_err());
        assert!(good.await.unwrap().is_ok());
        assert!(plain.await.unwrap().is_ok());
        assert_eq!(rows(&dir), ["b", "c"]);
        // The write queued before the failed one ran bare, then again in its
        // own savepoint after the rollback; its row is there once.
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn repeatable_writes_share_the_batch_with_the_others() {
        let (w, dir) = writer();
        let (release, held) = hold(&w).await;
        let plain = tokio::spawn({
            let w = w.clone();
            async move { w.write(|c| insert(c, "p")).await }
        });
        queued(&w, 1).await;
        let repeat = tokio::spawn({
            let w = w.clone();
            async move { w.write_repeatable(|c| insert(c, "r")).await }
        });
        queued(&w, 2).await;
        // A plain write that fails still loses only its own writes.
        let bad = tokio::spawn({
            let w = w.clone();
            async move {
                w.write(|c| {
                    insert(c, "x")?;
                    insert(c, "p")
                })
                .await
            }
        });
        queued(&w, 3).await;
        release.send(()).unwrap();
        held.await.unwrap();
        assert!(plain.await.unwrap().is_ok());
        assert!(repeat.await.unwrap().is_ok());
        assert!(bad.await.unwrap().is_err());
        assert_eq!(rows(&dir), ["p", "r"]);
    }
    #[tokio::test]
    async fn ids_minted_in_one_batch_follow_on_and_skip_none_a_failed_write_took() {
        use capacity_domain::ids::MintedPrefix;
        let (w, dir) = writer();
        w.write(|c| {
            c.execute_batch(
                "CREATE TABLE sequences (prefix TEXT PRIMARY KEY, next INTEGER NOT NULL); \
                 CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE); \
                 INSERT INTO events VALUES (7, 'EVT-26-000007')",
            )
            .map_err(|e| StoreError::Internal(e.to_string()))
        })
        .await
        .unwrap();
        let now = capacity_domain::Instant::parse("2026-04-15T06:00:00Z").unwrap();
        let mint = move |c: &Connection, fail: bool| {
            let (seq, id) = crate::sql::mint_id(c, MintedPrefix::Event, now)?;
            c.execute(
                "INSERT INTO events VALUES (?1, ?2)",
                rusqlite::params![seq, id],
            )
            .map_err(|e| StoreError::Internal(e.to_string()))?;
            if fail {
                return Err(StoreError::Internal("refused after minting".into()));
            }
            Ok(id)
        };
        let (release, held) = hold(&w).await;
        // One batch: plain and repeatable writes, some failing after they
        // minted (the repeatable failure sends the whole batch round again).
        let mut writes = Vec::new();
        for (i, fail) in [false, true, false, false, true, false]
            .into_iter()
            .enumerate()
        {
            let w2 = w.clone();
            writes.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    w2.write(move |c| mint(c, fail)).await
                } else {
                    w2.write_repeatable(move |c| mint(c, fail)).await
                }
            }));
            queued(&w, i + 1).await;
        }
        release.send(()).unwrap();
        held.await.unwrap();
        let mut ids = Vec::new();
        for write in writes {
            if let Ok(id) = write.await.unwrap() {
                ids.push(id);
            }
        }
        ids.sort();
        assert_eq!(
            ids,
            [
                "EVT-26-000008",
                "EVT-26-000009",
                "EVT-26-000010",
                "EVT-26-000011"
            ]
        );
        // And the next batch reads on from what was committed.
        let next = w.write(move |c| mint(c, false)).await.unwrap();
        assert_eq!(next, "EVT-26-000012");
        let c = Connection::open(dir.path().join("w.db")).unwrap();
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 6);
    }
}
