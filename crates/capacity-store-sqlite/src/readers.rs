//! The read connections, each on a thread of its own, fed by a queue.
//!
//! A read used to run inline on the tokio worker that awaited it: a cost
//! report over 100,000 allocations held that worker for a second, so every
//! other request queued on it (another tenant's point reads, `/healthz`)
//! waited too, and the request timeout could not fire, since the task never
//! yielded. Now a read is a job handed to a reader thread; the task awaits
//! its answer like any other I/O.
//!
//! Two lanes, each with its own queue and threads: *point* reads (a few
//! indexed rows: gets, pages, forecasts) and *heavy* reads (whatever can
//! scan a tenant: the cost report, a filter that reads every allocation of a
//! scope). Heavy reads never take a point reader, so however many of them a
//! tenant sends, point reads always have a thread; the heavy lane has one
//! thread, so heavy work takes at most one core of the machine.
//!
//! A read whose caller stops waiting (the request timed out, or its client
//! went away: the future is dropped) is abandoned: still queued, it is
//! skipped; running, its statement is interrupted by the connection's
//! progress handler (SQLite calls it every [`PROGRESS_OPS`] virtual-machine
//! instructions and stops the statement with `SQLITE_INTERRUPT` when it
//! answers true), so the reader is free for the next job. A flag per job
//! rather than `sqlite3_interrupt`: an interrupt that arrives between two
//! statements of a read is forgotten by SQLite (it clears it when the next
//! statement starts on an idle connection), and one that arrives late could
//! stop the next job's statement instead.

use capacity_store::{Result, StoreError};
use rusqlite::Connection;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::oneshot;

/// Instructions between two looks at the running job's flag: a look is an
/// uncontended lock and a load, a point read runs a few hundred instructions.
const PROGRESS_OPS: std::os::raw::c_int = 1000;

/// Which readers a read goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A few indexed rows.
    Point,
    /// Reads that may scan a tenant's allocations.
    Heavy,
}

/// A queued read: `run` answers its caller.
struct Job {
    abandoned: Arc<AtomicBool>,
    run: Box<dyn FnOnce(&Connection) + Send>,
}

#[derive(Default)]
struct Queue {
    jobs: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Readers asleep on `ready`: a job is only signalled when one is (a
    /// futex wake is a system call, and under load every reader is busy).
    idle: usize,
}

impl Queue {
    fn push(&self, job: Job) -> bool {
        let Ok(mut q) = self.jobs.lock() else {
            return false;
        };
        if q.closed {
            return false;
        }
        q.jobs.push_back(job);
        let wake = q.idle > 0;
        drop(q);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    /// The next job, or `None` once the queue is closed.
    fn pop(&self) -> Option<Job> {
        let mut q = self.jobs.lock().ok()?;
        loop {
            if q.closed {
                return None;
            }
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            q.idle += 1;
            q = self.ready.wait(q).ok()?;
            q.idle -= 1;
        }
    }

    fn close(&self) {
        if let Ok(mut q) = self.jobs.lock() {
            q.closed = true;
            q.jobs.clear();
        }
        self.ready.notify_all();
    }
}

/// Counts for `/metrics` and the tests.
#[derive(Default)]
pub struct ReaderStats {
    pub busy: AtomicUsize,
    pub threads: AtomicUsize,
    /// Reads stopped mid-statement because their caller stopped waiting.
    pub interrupted: AtomicU64,
}

pub struct Readers {
    point: Arc<Queue>,
    heavy: Arc<Queue>,
    pub stats: Arc<ReaderStats>,
}

impl Readers {
    /// Starts a thread per connection: `point` of them for point reads,
    /// the rest for heavy reads (at least one of each).
    pub fn start(point: Vec<Connection>, heavy: Vec<Connection>) -> Result<Readers> {
        let readers = Readers {
            point: Arc::default(),
            heavy: Arc::default(),
            stats: Arc::default(),
        };
        for (lane, conns) in [(&readers.point, point), (&readers.heavy, heavy)] {
            for (i, conn) in conns.into_iter().enumerate() {
                let queue = lane.clone();
                let stats = readers.stats.clone();
                let name = if Arc::ptr_eq(lane, &readers.point) {
                    format!("sqlite-read-{i}")
                } else {
                    format!("sqlite-heavy-{i}")
                };
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || serve(conn, &queue, &stats))
                    .map_err(|e| StoreError::Internal(format!("spawn a reader: {e}")))?;
                readers.stats.threads.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(readers)
    }

    /// Runs `f` on a reader of `lane` and answers what it returns. Dropping
    /// the returned future abandons the read (see the module's notes).
    pub async fn read<T, F>(&self, lane: Lane, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let abandoned = Arc::new(AtomicBool::new(false));
        let job = Job {
            abandoned: abandoned.clone(),
            run: Box::new(move |conn| {
                let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
                    .unwrap_or_else(|_| Err(StoreError::Internal("a read panicked".into())));
                let _ = tx.send(result);
            }),
        };
        let queue = match lane {
            Lane::Point => &self.point,
            Lane::Heavy => &self.heavy,
        };
        if !queue.push(job) {
            return Err(StoreError::Unavailable("the readers have stopped".into()));
        }
        // Set when this future ends, answered or not: once answered, the
        // job has finished its statements and the flag is never read again.
        let _abandon = Abandon(abandoned);
        rx.await
            .map_err(|_| StoreError::Unavailable("the reader has stopped".into()))?
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.point.close();
        self.heavy.close();
    }
}

struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A reader thread: runs jobs until the queue closes.
fn serve(mut conn: Connection, queue: &Queue, stats: &ReaderStats) {
    // The flag of the job running now, for the progress handler, and how
    // many times the handler stopped a statement.
    let current: Arc<Mutex<Option<Arc<AtomicBool>>>> = Arc::default();
    let stops = Arc::new(AtomicU64::new(0));
    {
        let (current, stops) = (current.clone(), stops.clone());
        let installed = conn.progress_handler(
            PROGRESS_OPS,
            Some(move || {
                let stop = current
                    .lock()
                    .ok()
                    .and_then(|c| c.as_ref().map(|a| a.load(Ordering::Acquire)))
                    .unwrap_or(false);
                if stop {
                    stops.fetch_add(1, Ordering::Relaxed);
                }
                stop
            }),
        );
        if let Err(e) = installed {
            tracing::error!(error = %e, "installing a reader's progress handler failed");
        }
    }
    let set = |job: Option<Arc<AtomicBool>>| {
        if let Ok(mut c) = current.lock() {
            *c = job;
        }
    };
    while let Some(job) = queue.pop() {
        if job.abandoned.load(Ordering::Acquire) {
            continue;
        }
        set(Some(job.abandoned.clone()));
        let stopped_before = stops.load(Ordering::Relaxed);
        stats.busy.fetch_add(1, Ordering::Relaxed);
        (job.run)(&conn);
        stats.busy.fetch_sub(1, Ordering::Relaxed);
        set(None);
        if stops.load(Ordering::Relaxed) != stopped_before {
            stats.interrupted.fetch_add(1, Ordering::Relaxed);
        }
        // A read stopped inside its transaction (or one that forgot to end
        // it) would pin an old snapshot for the next job.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}
