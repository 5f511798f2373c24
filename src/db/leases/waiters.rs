//! Waiting for a lease without holding a database connection: one `LISTEN` connection per
//! rowlock process, and per key a first-come, first-served queue of the acquisitions waiting in
//! this process.
//!
//! - **Wake-ups.** A release sends `pg_notify('rowlock_locks', key)`; the one listening
//!   connection turns it into a wake-up of that key's queue. Expiry sends nothing, so a waiter
//!   also sets a timer to the holder's `expires_at` (a duration measured by the database clock).
//!   If the listening connection drops it is made again with backoff, and every queue is woken
//!   once it is back, because notifications sent in between were lost.
//! - **Fairness.** Only the first acquisition in a key's queue talks to the database; the others
//!   sleep until they are first. So within one process, waiters are granted the lock in the
//!   order they arrived. Across processes there is no shared queue: each process's first waiter
//!   competes for the row lock, and PostgreSQL grants it to whichever asks first.
//!
//! Kept apart from the jobs' listener (`db::notify`) for now: it needs per-key queues, not a
//! broadcast; the two could share one connection later.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel releases notify on (the release statement spells it out literally).
pub const CHANNEL: &str = "rowlock_locks";
/// How often the listening connection proves it is alive: a silently dead one would otherwise
/// leave waiters sleeping until their deadline.
const PING_INTERVAL: Duration = Duration::from_secs(15);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// What the lease routes share: the wait queues, the listener feeding them, and the TTL limit.
#[derive(Clone)]
pub struct Leases {
    /// Longest `ttl_ms` a lease may be granted or renewed for.
    pub max_ttl_ms: u64,
    queues: Queues,
    _listener: Arc<Listener>,
}

impl Leases {
    /// Starts listening on `database_url` (on the current tokio runtime). The listener stops
    /// when the last clone is dropped.
    pub fn start(database_url: String, max_ttl_ms: u64) -> Self {
        let queues = Queues::default();
        let task = tokio::spawn(queues.clone().listen(database_url));
        Self {
            max_ttl_ms,
            queues,
            _listener: Arc::new(Listener(task)),
        }
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

/// Aborts the listening task with the last [`Leases`].
struct Listener(JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
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

    /// Listens forever, reconnecting when the connection drops.
    async fn listen(self, database_url: String) {
        let mut delay = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let error = self.listen_once(&database_url).await;
            tracing::warn!(error = %error, "lock notification listener lost its connection");
            if started.elapsed() > MAX_RECONNECT_DELAY * 2 {
                delay = Duration::from_millis(100);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
    }

    /// One connection's life; returns why it ended.
    async fn listen_once(&self, database_url: &str) -> anyhow::Error {
        let mut config: tokio_postgres::Config = match database_url.parse() {
            Ok(config) => config,
            Err(e) => return e.into(),
        };
        // Its own name, so it is never mistaken for a pooled request connection.
        config.application_name("rowlock_lock_listener");
        config.connect_timeout(MAX_RECONNECT_DELAY);
        let (client, mut connection) = match config.connect(NoTls).await {
            Ok(pair) => pair,
            Err(e) => return e.into(),
        };
        let queues = self.clone();
        // Polling the connection delivers the notifications (and drives the client's queries).
        let mut driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) if !n.payload().is_empty() => {
                        queues.wake(n.payload())
                    }
                    Ok(_) => {}
                    Err(e) => return anyhow::Error::from(e),
                }
            }
            anyhow::anyhow!("the connection closed")
        });
        let error = tokio::select! {
            ended = &mut driver => ended.unwrap_or_else(|e| anyhow::anyhow!("listener task: {e}")),
            failed = self.keep_listening(&client) => failed.into(),
        };
        driver.abort();
        error
    }

    /// `LISTEN`s, then pings until the connection fails; returns the failure.
    async fn keep_listening(&self, client: &tokio_postgres::Client) -> tokio_postgres::Error {
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            return e;
        }
        tracing::debug!("listening for lock releases");
        // Anything sent while no connection listened was lost: every waiter looks again.
        self.wake("");
        loop {
            tokio::time::sleep(PING_INTERVAL).await;
            if let Err(e) = client.batch_execute("SELECT 1").await {
                return e;
            }
        }
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
        self.changed.borrow_and_update();
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
            map.remove(&self.key);
        } else if was_first {
            // The next one is first now and must look for itself.
            queue.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}
