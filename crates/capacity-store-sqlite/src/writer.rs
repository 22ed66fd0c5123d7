//! The single writer. SQLite allows one writer at a time, so every write goes
//! to one thread that owns the write connection. It takes whatever writes are
//! queued (up to [`MAX_BATCH`]), runs each in its own savepoint inside one
//! transaction, commits once (durably: `synchronous=FULL`), and only then
//! answers each caller. A failed write rolls back its savepoint alone; a
//! failed commit fails every write of the batch. This is group commit: under
//! load one disk flush serves many requests, and each request still sees the
//! effects of the ones before it, exactly as if they ran one by one.

use capacity_store::{Result, StoreError};
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use tokio::sync::{mpsc, oneshot};

pub const MAX_BATCH: usize = 64;

/// A queued write: `run` executes it inside the batch's transaction, `finish`
/// answers its caller once the batch's fate is known.
trait Job: Send {
    fn run(&mut self, conn: &Connection) -> bool;
    fn finish(self: Box<Self>, commit_error: Option<&str>);
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
        let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(StoreError::Internal("a write panicked".into())));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit_error: Option<&str>) {
        let answer = match (commit_error, self.result) {
            (Some(e), _) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
            (None, Some(result)) => result,
            (None, None) => Err(StoreError::Internal("write was not run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    pub fn start(conn: Connection) -> Writer {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(4096);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawn the SQLite writer thread");
        Writer { jobs: tx }
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
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit_error = match exec(&conn, "BEGIN IMMEDIATE") {
            Err(e) => Some(e.to_string()),
            Ok(()) => {
                for job in batch.iter_mut() {
                    run_in_savepoint(&conn, job.as_mut());
                }
                match exec(&conn, "COMMIT") {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "group commit failed");
                        let _ = conn.execute_batch("ROLLBACK");
                        Some(e.to_string())
                    }
                }
            }
        };
        for job in batch.drain(..) {
            job.finish(commit_error.as_deref());
        }
    }
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
