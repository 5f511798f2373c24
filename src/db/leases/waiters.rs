//! Waiting for a lease without holding a database connection: per key a first-come, first-served
//! queue of the acquisitions waiting in this process, woken through the process's one listening
//! connection ([`crate::db::listener`]).
//!
//! - **Wake-ups.** A release sends `pg_notify('rowlock_locks', key)`; the listening connection
//!   turns it into a wake-up of that key's queue. Expiry sends nothing, so a waiter also sets a
//!   timer to the holder's `expires_at` (a duration measured by the database clock). After the
//!   listening connection was lost and made again, every queue is woken, because notifications
//!   sent in between were lost.
//! - **Fairness.** Only the first acquisition in a key's queue talks to the database; the others
//!   sleep until they are first. So within one process, waiters are granted the lock in the
//!   order they arrived. Across processes there is no shared queue: each process's first waiter
//!   competes for the row lock, and PostgreSQL grants it to whichever asks first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use crate::db::listener::Subscriber;
use crate::db::notify::WaitBudget;

/// The channel releases notify on.
pub const CHANNEL: &str = super::sql::channel!();

/// What the lease routes share: the wait queues and the TTL limit.
#[derive(Clone)]
pub struct Leases {
    /// Longest `ttl_ms` a lease may be granted or renewed for.
    pub max_ttl_ms: u64,
    /// Shared with long-polling claims: how many requests may wait at once.
    pub budget: WaitBudget,
    queues: Queues,
}

impl Leases {
    /// No acquisition waiting yet; leases up to `max_ttl_ms`, waits counted in `budget`.
    pub fn new(max_ttl_ms: u64, budget: WaitBudget) -> Self {
        Self {
            max_ttl_ms,
            budget,
            queues: Queues::default(),
        }
    }

    /// What the listening connection wakes: the wait queues.
    pub fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::new(self.queues.clone())
    }

    /// Takes a place at the end of `key`'s queue.
    pub fn join(&self, key: &str) -> Place {
        self.queues.join(key)
    }

    /// How many acquisitions of `key` wait in this process.
    pub fn waiting(&self, key: &str) -> usize {
        self.queues.lock().get(key).map_or(0, |q| q.order.len())
    }
}

#[derive(Clone, Default)]
struct Queues(Arc<Mutex<HashMap<String, KeyQueue>>>);

/// The acquisitions of one key waiting in this process, in arrival order.
struct KeyQueue {
    order: VecDeque<u64>,
    next_ticket: u64,
    /// Bumped on every event worth a look: a release, a new first place, a reconnect.
    changed: watch::Sender<u64>,
}

impl Queues {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, KeyQueue>> {
        // Never held across an await, and every update leaves the map consistent: a panic
        // elsewhere while holding it cannot have broken it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn join(&self, key: &str) -> Place {
        let mut map = self.lock();
        let queue = map.entry(key.to_owned()).or_insert_with(|| KeyQueue {
            order: VecDeque::new(),
            next_ticket: 0,
            changed: watch::Sender::new(0),
        });
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.order.push_back(ticket);
        Place {
            queues: self.clone(),
            key: key.to_owned(),
            ticket,
            changed: queue.changed.subscribe(),
        }
    }

    /// Wakes the waiters of `key` (the empty key: of every key).
    fn wake(&self, key: &str) {
        let map = self.lock();
        let bump = |q: &KeyQueue| q.changed.send_modify(|n| *n = n.wrapping_add(1));
        if key.is_empty() {
            map.values().for_each(bump);
        } else if let Some(queue) = map.get(key) {
            bump(queue);
        }
    }
}

impl Subscriber for Queues {
    fn notified(&self, key: &str) {
        if !key.is_empty() {
            self.wake(key);
        }
    }

    fn wake_all(&self) {
        self.wake("");
    }
}

/// An acquisition's place in its key's queue; leaving it (drop) lets the next one go first.
pub struct Place {
    queues: Queues,
    key: String,
    ticket: u64,
    changed: watch::Receiver<u64>,
}

impl Place {
    /// How many acquisitions of the key arrived earlier and are still waiting.
    pub fn ahead(&self) -> usize {
        let map = self.queues.lock();
        map.get(&self.key)
            .and_then(|q| q.order.iter().position(|t| *t == self.ticket))
            .unwrap_or(0)
    }

    /// Forgets the wake-ups so far. Call it *before* looking at the lock, so that a wake-up
    /// arriving while looking is not missed by the [`Place::sleep`] that follows.
    pub fn mark_seen(&mut self) {
        let _ = self.changed.borrow_and_update();
    }

    /// Sleeps until a wake-up since [`Place::mark_seen`] or `until`, whichever comes first.
    pub async fn sleep(&mut self, until: Instant) {
        let _ = tokio::time::timeout_at(until.into(), self.changed.changed()).await;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut map = self.queues.lock();
        let Some(queue) = map.get_mut(&self.key) else {
            return;
        };
        let was_first = queue.order.front() == Some(&self.ticket);
        queue.order.retain(|t| *t != self.ticket);
        if queue.order.is_empty() {
            let _ = map.remove(&self.key);
        } else if was_first {
            // The next one is first now and must look for itself.
            queue.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}
