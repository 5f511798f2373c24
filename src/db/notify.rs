//! Wake-ups for waiting claims: the process's one listening connection ([`super::listener`])
//! hands every notification on [`CHANNEL`] (its payload is a queue name) to [`Wakeups`], which
//! fans it out to the claims of this process that wait on that queue.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast;

use super::listener::Subscriber;

/// The channel every job-related `pg_notify` uses (the statements spell it out literally).
pub const CHANNEL: &str = "rowlock_jobs";
/// Sent locally to wake every waiter, whatever its queue (no queue has an empty name).
const EVERY_QUEUE: &str = "";

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
}

impl Subscriber for Wakeups {
    fn notified(&self, queue: &str) {
        self.wake(queue);
    }

    fn wake_all(&self) {
        self.wake(EVERY_QUEUE);
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
