//! Wake-ups for waiting claims: the process's one listening connection ([`super::listener`])
//! hands every notification on [`CHANNEL`] (its payload is a queue name) to [`Wakeups`], which
//! wakes the claims of this process that wait on that queue, and only those.
//!
//! Also the bound on waiting itself ([`WaitBudget`]): long-polling claims and lease acquisitions
//! with `wait_ms` hold no connection, but each is a request kept open; at most
//! `--max-waiters` of them wait at once, and the next one is answered 503 at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use super::listener::Subscriber;
use crate::error::ApiError;

/// The channel every job-related `pg_notify` uses, as a literal for the statements
/// ([`crate::db::jobs::sql::notify_claims!`]).
macro_rules! channel {
    () => {
        "rowlock_jobs"
    };
}
pub(crate) use channel;

/// The channel every job-related `pg_notify` uses.
pub const CHANNEL: &str = channel!();

/// The fan-out point between the listening connection and the waiting claims: per queue with
/// waiters, one signal that every waiter of that queue watches.
#[derive(Clone, Default)]
pub struct Wakeups {
    queues: Arc<Mutex<HashMap<String, QueueSignal>>>,
}

struct QueueSignal {
    /// Bumped on every wake-up of the queue.
    changed: watch::Sender<u64>,
    /// Live [`Waiter`]s of the queue; the entry goes with the last one.
    waiters: usize,
}

impl Wakeups {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, QueueSignal>> {
        // Never held across an await; every update leaves the map consistent.
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to wake-ups for `queue`. Subscribe *before* looking for work, so that a
    /// notification arriving while looking is not missed.
    pub fn subscribe(&self, queue: &str) -> Waiter {
        let mut queues = self.lock();
        let signal = queues
            .entry(queue.to_owned())
            .or_insert_with(|| QueueSignal {
                changed: watch::Sender::new(0),
                waiters: 0,
            });
        signal.waiters += 1;
        Waiter {
            receiver: signal.changed.subscribe(),
            queue: queue.to_owned(),
            wakeups: self.clone(),
        }
    }

    /// Wakes the waiters of `queue` in this process.
    pub fn wake(&self, queue: &str) {
        if let Some(signal) = self.lock().get(queue) {
            signal.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// How many queues have waiters in this process.
    pub fn queues_waited_on(&self) -> usize {
        self.lock().len()
    }
}

impl Subscriber for Wakeups {
    fn notified(&self, queue: &str) {
        self.wake(queue);
    }

    fn wake_all(&self) {
        for signal in self.lock().values() {
            signal.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// A waiting claim's subscription.
pub struct Waiter {
    receiver: watch::Receiver<u64>,
    queue: String,
    wakeups: Wakeups,
}

impl Waiter {
    /// Sleeps until a wake-up for this queue since the last one seen, or `deadline`, whichever
    /// comes first.
    pub async fn until(&mut self, deadline: Instant) {
        let _ = tokio::time::timeout_at(deadline.into(), self.receiver.changed()).await;
    }

    /// Whether a wake-up arrived that [`Waiter::until`] has not returned for yet.
    pub fn is_woken(&self) -> bool {
        self.receiver.has_changed().unwrap_or(true)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut queues = self.wakeups.lock();
        if let Some(signal) = queues.get_mut(&self.queue) {
            signal.waiters -= 1;
            if signal.waiters == 0 {
                let _ = queues.remove(&self.queue);
            }
        }
    }
}

/// At most `limit` requests of this process wait at once (`--max-waiters`).
#[derive(Clone)]
pub struct WaitBudget {
    limit: usize,
    waiting: Arc<AtomicUsize>,
}

impl WaitBudget {
    /// A budget of `limit` waiting requests, none waiting yet.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            waiting: Arc::default(),
        }
    }

    /// A place among the waiting requests, or 503 when all are taken.
    pub fn enter(&self) -> Result<WaitSlot, ApiError> {
        let taken = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(WaitSlot(self.waiting.clone())),
            Err(_) => Err(ApiError::Unavailable(format!(
                "{} requests already wait in this rowlock (--max-waiters); nothing was applied, \
                 retry later",
                self.limit
            ))),
        }
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

/// A waiting request's place in the [`WaitBudget`]; freed on drop.
pub struct WaitSlot(Arc<AtomicUsize>);

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let _ = self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_up_reaches_the_waiters_of_its_queue_only() {
        let wakeups = Wakeups::default();
        let (mail, mail_too, video) = (
            wakeups.subscribe("mail"),
            wakeups.subscribe("mail"),
            wakeups.subscribe("video"),
        );
        wakeups.wake("mail");
        assert!(mail.is_woken() && mail_too.is_woken());
        assert!(!video.is_woken(), "a wake-up of 'mail' reached 'video'");
        wakeups.wake_all();
        assert!(video.is_woken());
        // Nobody waits on a queue any more: nothing is kept for it.
        drop((mail, mail_too));
        assert_eq!(wakeups.queues_waited_on(), 1);
        drop(video);
        assert_eq!(wakeups.queues_waited_on(), 0);
    }

    #[tokio::test]
    async fn a_waiter_sleeps_until_its_queue_is_woken() {
        let wakeups = Wakeups::default();
        let mut waiter = wakeups.subscribe("mail");
        wakeups.wake("mail");
        // Returns at once for the wake-up it has not seen, then sleeps to the deadline.
        let far = Instant::now() + std::time::Duration::from_secs(60);
        waiter.until(far).await;
        let soon = Instant::now() + std::time::Duration::from_millis(20);
        waiter.until(soon).await;
        assert!(Instant::now() >= soon);
    }

    #[test]
    fn at_most_limit_requests_wait_and_a_slot_comes_back_when_its_request_ends() {
        let budget = WaitBudget::new(2);
        let (a, b) = (budget.enter(), budget.enter());
        assert!(a.is_ok() && b.is_ok());
        assert!(matches!(budget.enter(), Err(ApiError::Unavailable(_))));
        drop(a);
        assert_eq!(budget.waiting(), 1);
        assert!(budget.enter().is_ok());
    }
}
