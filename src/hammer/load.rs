//! What every workload's load shares: when it stops issuing requests ([`Stop`], [`Tickets`]),
//! the counters the progress bar reads ([`Progress`]), and its virtual clients — one tokio task
//! each, all on the one HTTP client, awaited to the last so that every request's outcome is
//! known ([`run_clients`]).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use hdrhistogram::Histogram;

use super::args::{HammerArgs, DEFAULT_REQUESTS};

/// When the run stops issuing new requests.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    /// After this many requests have been issued.
    Requests(u64),
    /// At this instant; requests in flight are still awaited.
    Deadline(Instant),
}

impl Stop {
    /// `--duration` when given, else `--requests` (10,000 when neither is), from now.
    pub(crate) fn of(args: &HammerArgs) -> Self {
        match (args.requests, args.duration) {
            (_, Some(d)) => Self::Deadline(Instant::now() + d),
            (Some(n), None) => Self::Requests(n),
            (None, None) => Self::Requests(DEFAULT_REQUESTS),
        }
    }
}

/// The run's budget, shared by its virtual clients.
pub(crate) struct Tickets {
    stop: Stop,
    issued: AtomicU64,
}

impl Tickets {
    pub(crate) fn new(stop: Stop) -> Self {
        Self {
            stop,
            issued: AtomicU64::new(0),
        }
    }

    /// Takes the next ticket: false once the budget is spent or the deadline has passed.
    pub(crate) fn next(&self) -> bool {
        match self.stop {
            Stop::Requests(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
            Stop::Deadline(at) => Instant::now() < at,
        }
    }

    /// Whether the deadline (if any) has passed: retries stop there.
    pub(crate) fn past_deadline(&self) -> bool {
        matches!(self.stop, Stop::Deadline(at) if Instant::now() >= at)
    }
}

/// What a load is given: when it stops issuing requests, and where it counts what it did.
pub(crate) struct Budget {
    /// When the load stops issuing new requests.
    pub(crate) stop: Stop,
    /// Where each request done is counted, for the progress bar.
    pub(crate) progress: Arc<Progress>,
}

/// Counters the progress bar reads while the run goes on.
#[derive(Default)]
pub(crate) struct Progress {
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

impl Progress {
    /// One more request done; `ok` when it was acknowledged.
    pub(crate) fn record(&self, ok: bool) {
        let _ = self.done.fetch_add(1, Ordering::Relaxed);
        if !ok {
            let _ = self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs `count` virtual clients, client `i` as the task `client(i)`, and returns what each one
/// produced once all have finished.
pub(crate) async fn run_clients<T, Fut>(
    count: usize,
    client: impl Fn(usize) -> Fut,
) -> Result<Vec<T>>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let tasks: Vec<_> = (0..count).map(|i| tokio::spawn(client(i))).collect();
    let mut outs = Vec::with_capacity(count);
    for task in tasks {
        outs.push(task.await??);
    }
    Ok(outs)
}

/// An auto-resizing histogram of microseconds with `sigfig` significant figures (2 or 3).
pub(crate) fn histogram(sigfig: u8) -> Histogram<u64> {
    // `new` only fails for sigfig > 5.
    Histogram::new(sigfig).expect("sigfig is 2 or 3")
}
