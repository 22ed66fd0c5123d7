//! Where log lines go: a shared buffer that a logging thread writes to
//! standard error every [`INTERVAL`], or sooner once [`SOON`] bytes wait.
//!
//! `tracing-appender`'s non-blocking writer hands each line to its thread
//! through a channel, which wakes that thread for every line and, since it
//! then finds the channel empty, flushes every line with its own `write`:
//! under load, one wake-up and one system call per request (measured at
//! 40k reads/s: that thread alone used 14 % of a core). Here a request's thread only
//! appends its line to the buffer; the thread is woken at most once per
//! [`SOON`] bytes, and one `write` carries a whole interval's lines.
//!
//! Nothing is dropped: a thread that finds [`MOST`] bytes already waiting
//! (standard error blocked, say) writes them out itself before it goes on.
//! Lines still buffered when the process is killed are lost, as with any
//! buffered log; [`Guard`] writes out what is left when the process ends
//! normally.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait in the buffer.
const INTERVAL: Duration = Duration::from_millis(20);
/// Waiting bytes that wake the logging thread before its interval is up.
const SOON: usize = 256 * 1024;
/// Waiting bytes past which a request's thread writes them out itself.
const MOST: usize = 8 * 1024 * 1024;

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Held while taken lines are written, and taken while `state` is held:
    /// buffers are written in the order they were taken.
    emitting: Mutex<()>,
    /// Where lines go: standard error, or a test's capture.
    out: fn(&[u8]),
}

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    stopping: bool,
}

impl Shared {
    fn new(out: fn(&[u8])) -> Shared {
        Shared {
            state: Mutex::default(),
            wake: Condvar::new(),
            emitting: Mutex::new(()),
            out,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left whole lines
        // (appends are single `extend` calls): the buffer is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the waiting lines (with `state` held) and writes them out.
    fn take_and_emit(&self, mut state: MutexGuard<'_, State>, into: &mut Vec<u8>) {
        std::mem::swap(into, &mut state.lines);
        let turn = self.emitting.lock().unwrap_or_else(|e| e.into_inner());
        drop(state);
        if !into.is_empty() {
            (self.out)(into);
        }
        drop(turn);
        into.clear();
    }
}

/// Writes `lines` to standard error, ignoring failure: there is nowhere
/// left to report it.
fn to_stderr(lines: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(lines);
    let _ = err.flush();
}

/// The `MakeWriter` given to `tracing-subscriber`.
#[derive(Clone)]
pub struct LogSink(Arc<Shared>);

/// Stops the logging thread and writes out what is buffered, when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the logging thread, writing to standard error.
pub fn start() -> (LogSink, Guard) {
    start_with(to_stderr)
}

fn start_with(out: fn(&[u8])) -> (LogSink, Guard) {
    let shared = Arc::new(Shared::new(out));
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("capacity-log".into())
            .spawn(move || run(&shared))
            .ok()
    };
    // Without its thread (it could not be spawned), every line is written
    // out by whoever logs it once MOST bytes wait, and by the guard.
    (LogSink(shared.clone()), Guard { shared, thread })
}

fn run(shared: &Shared) {
    let mut out = Vec::new();
    loop {
        let mut state = shared.lock();
        if state.lines.len() < SOON && !state.stopping {
            state = shared
                .wake
                .wait_timeout(state, INTERVAL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let stopping = state.stopping;
        shared.take_and_emit(state, &mut out);
        if stopping {
            return;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let state = self.shared.lock();
        self.shared.take_and_emit(state, &mut Vec::new());
    }
}

impl Write for LogSink {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.0.lock();
        let before = state.lines.len();
        state.lines.extend_from_slice(line);
        if state.lines.len() >= MOST {
            self.0.take_and_emit(state, &mut Vec::new());
        } else if before < SOON && state.lines.len() >= SOON {
            drop(state);
            self.0.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;

    fn make_writer(&'a self) -> LogSink {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tests' sinks wrote, in order.
    static WRITTEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    fn capture(lines: &[u8]) {
        WRITTEN.lock().unwrap().extend_from_slice(lines);
    }

    /// One test, so that nothing else writes to WRITTEN meanwhile.
    #[test]
    fn every_line_is_written_once_in_order() {
        // Without its thread: the writer alone takes the buffer out once
        // it reaches the limit.
        let sink = LogSink(Arc::new(Shared::new(capture)));
        let mut w = sink.clone();
        let line = |i: usize| format!("{{\"n\":{i:07}}}\n{}\n", "x".repeat(1000));
        let per_line = line(0).len();
        let n = MOST / per_line + 10;
        for i in 0..n {
            w.write_all(line(i).as_bytes()).unwrap();
        }
        let expected: String = (0..n).map(line).collect();
        let mut all = WRITTEN.lock().unwrap().clone();
        assert!(all.len() >= MOST, "the limit took the buffer out");
        all.extend_from_slice(&sink.0.lock().lines);
        assert_eq!(String::from_utf8(all).unwrap(), expected);

        // With its thread: the guard writes out what is left.
        WRITTEN.lock().unwrap().clear();
        let (sink, guard) = start_with(capture);
        let mut w = sink.clone();
        for i in 0..1000 {
            w.write_all(line(i).as_bytes()).unwrap();
        }
        drop(guard);
        assert!(sink.0.lock().lines.is_empty());
        let expected: String = (0..1000).map(line).collect();
        assert_eq!(
            String::from_utf8(WRITTEN.lock().unwrap().clone()).unwrap(),
            expected
        );
    }
}
