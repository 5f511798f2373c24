//! Wake-ups for waiting claims: one dedicated, long-lived PostgreSQL connection `LISTEN`s on
//! [`CHANNEL`] and fans each notification (its payload is a queue name) out to the claims of this
//! process that wait on that queue.
//!
//! One connection per process, not one per waiting request: a waiting claim holds no database
//! connection at all, only a subscription here. If the listening connection drops, it is made
//! again with backoff, and every waiter is woken once it is back, because notifications sent in
//! between were lost and a waiter must look for itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel every job-related `pg_notify` uses (the statements spell it out literally).
pub const CHANNEL: &str = "rowlock_jobs";
/// Sent locally to wake every waiter, whatever its queue (no queue has an empty name).
const EVERY_QUEUE: &str = "";
/// How often the listening connection proves it is alive: a silently dead one would otherwise
/// leave waiters sleeping until their deadline.
const PING_INTERVAL: Duration = Duration::from_secs(15);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// The fan-out point between the listening connection and the waiting claims.
#[derive(Clone)]
pub struct Wakeups {
    sender: broadcast::Sender<Arc<str>>,
}

impl Default for Wakeups {
    fn default() -> Self {
        // A waiter that falls this far behind is simply woken (see `Waiter::until`).
        let (sender, _) = broadcast::channel(1024);
        Self { sender }
    }
}

impl Wakeups {
    /// Subscribes to wake-ups for `queue`. Subscribe *before* looking for work, so that a
    /// notification arriving while looking is not missed.
    pub fn subscribe(&self, queue: &str) -> Waiter {
        Waiter {
            receiver: self.sender.subscribe(),
            queue: queue.to_owned(),
        }
    }

    /// Wakes the waiters of `queue` in this process.
    pub fn wake(&self, queue: &str) {
        // An error only means nobody is waiting.
        let _ = self.sender.send(Arc::from(queue));
    }

    /// Listens on `database_url` forever, reconnecting when the connection drops.
    pub async fn listen(self, database_url: String) {
        let mut delay = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let error = self.listen_once(&database_url).await;
            tracing::warn!(error = %error, "job notification listener lost its connection");
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
        config.application_name("rowlock_listener");
        config.connect_timeout(MAX_RECONNECT_DELAY);
        let (client, mut connection) = match config.connect(NoTls).await {
            Ok(pair) => pair,
            Err(e) => return e.into(),
        };
        let wakeups = self.clone();
        // Polling the connection delivers the notifications (and drives the client's queries).
        let mut driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => wakeups.wake(n.payload()),
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
}

impl Wakeups {
    /// `LISTEN`s, then pings until the connection fails; returns the failure.
    async fn keep_listening(&self, client: &tokio_postgres::Client) -> tokio_postgres::Error {
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            return e;
        }
        tracing::debug!("listening for job notifications");
        // Anything sent while no connection listened was lost: every waiter looks again.
        self.wake(EVERY_QUEUE);
        loop {
            tokio::time::sleep(PING_INTERVAL).await;
            if let Err(e) = client.batch_execute("SELECT 1").await {
                return e;
            }
        }
    }
}

/// A waiting claim's subscription.
pub struct Waiter {
    receiver: broadcast::Receiver<Arc<str>>,
    queue: String,
}

impl Waiter {
    /// Sleeps until a wake-up for this queue or `deadline`, whichever comes first.
    pub async fn until(&mut self, deadline: Instant) {
        let woken = async {
            loop {
                match self.receiver.recv().await {
                    Ok(queue) if *queue == *self.queue || &*queue == EVERY_QUEUE => return,
                    Ok(_) => {}
                    // Fell behind: one of the missed ones may have been ours.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    // Cannot happen while `Wakeups` lives; the deadline still ends the wait.
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline.into(), woken).await;
    }
}
