//! The one `LISTEN` connection of a rowlock process.
//!
//! Requests that wait — a claim long-polling for jobs, an acquisition waiting for a lease — hold
//! no database connection while they wait, only a subscription in this process. One dedicated,
//! long-lived connection `LISTEN`s on every channel rowlock notifies on and hands each
//! notification's payload (a queue name, a lock key) to that channel's [`Subscriber`]. If the
//! connection drops it is made again with backoff, and every subscriber is told to wake all of
//! its waiters once it is back, because notifications sent in between were lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

/// How often the listening connection proves it is alive: a silently dead one would otherwise
/// leave waiters sleeping until their deadline.
const PING_INTERVAL: Duration = Duration::from_secs(15);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);
/// How the connection shows in `pg_stat_activity`: never mistaken for a request's.
pub const APPLICATION_NAME: &str = "rowlock_listener";

/// What a channel's notifications are handed to.
pub trait Subscriber: Send + Sync {
    /// A notification with `payload` arrived.
    fn notified(&self, payload: &str);
    /// Notifications may have been lost: every waiter must look for itself.
    fn wake_all(&self);
}

/// `(channel, subscriber)` pairs; the channel names are rowlock's own constants.
pub type Channels = Vec<(&'static str, Arc<dyn Subscriber>)>;

/// Without a connection that can `LISTEN` (behind a transaction pooler): how often every waiter
/// looks again by itself.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Wakes every waiter every [`POLL_INTERVAL`], forever: the fallback when no connection can
/// `LISTEN`.
pub async fn poll(channels: Channels) {
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let _ = ticks.tick().await;
        for (_, subscriber) in &channels {
            subscriber.wake_all();
        }
    }
}

/// Listens on `database_url` forever, reconnecting when the connection drops.
pub async fn run(database_url: String, channels: Channels) {
    let mut delay = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let error = listen_once(&database_url, &channels).await;
        tracing::warn!(error = %error, "notification listener lost its connection");
        if started.elapsed() > MAX_RECONNECT_DELAY * 2 {
            delay = Duration::from_millis(100);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

/// One connection's life; returns why it ended.
async fn listen_once(database_url: &str, channels: &Channels) -> anyhow::Error {
    let mut config: tokio_postgres::Config = match database_url.parse() {
        Ok(config) => config,
        Err(e) => return e.into(),
    };
    let _ = config.application_name(APPLICATION_NAME);
    let _ = config.connect_timeout(MAX_RECONNECT_DELAY);
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(e) => return e.into(),
    };
    let routes = channels.clone();
    // Polling the connection delivers the notifications (and drives the client's queries).
    let mut driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    for (channel, subscriber) in &routes {
                        if n.channel() == *channel {
                            subscriber.notified(n.payload());
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => return anyhow::Error::from(e),
            }
        }
        anyhow::anyhow!("the connection closed")
    });
    let error = tokio::select! {
        ended = &mut driver => ended.unwrap_or_else(|e| anyhow::anyhow!("listener task: {e}")),
        failed = keep_listening(&client, channels) => failed.into(),
    };
    driver.abort();
    error
}

/// `LISTEN`s on every channel, then pings until the connection fails; returns the failure.
async fn keep_listening(
    client: &tokio_postgres::Client,
    channels: &Channels,
) -> tokio_postgres::Error {
    for (channel, _) in channels {
        // Our own constant identifiers: LISTEN takes no parameters.
        if let Err(e) = client.batch_execute(&format!("LISTEN {channel}")).await {
            return e;
        }
    }
    tracing::debug!("listening for notifications");
    // Anything sent while no connection listened was lost: every waiter looks again.
    for (_, subscriber) in channels {
        subscriber.wake_all();
    }
    loop {
        tokio::time::sleep(PING_INTERVAL).await;
        if let Err(e) = client.batch_execute("SELECT 1").await {
            return e;
        }
    }
}
