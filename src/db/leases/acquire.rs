//! `POST /locks/{key}`: try to be granted the lease, and with `wait_ms` keep trying until the
//! deadline — each try a short transaction of its own, the waits in between outside any
//! transaction and without a pooled connection.
//!
//! A try that finds the lock held sleeps until the holder's expiry (by the database clock), a
//! release notification for the key, or the deadline, whichever is first; then, if it is first
//! in the key's queue in this process, it tries again.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::waiters::Leases;
use super::Held;
use crate::db::{Db, Reply, TxOptions};
use crate::error::ApiError;

/// Longest `wait_ms` an acquisition may ask for (as for job claims).
pub const MAX_WAIT_MS: u64 = 30_000;

/// One `POST /locks/{key}`, validated.
#[derive(Debug, Clone)]
pub struct Acquisition {
    /// The lock's key.
    pub key: String,
    /// Who asks: the owner the lease is granted to.
    pub owner: String,
    /// How long the lease lasts unless renewed, in milliseconds.
    pub ttl_ms: u64,
    /// How long to wait while someone else holds the lease, in milliseconds (at most
    /// [`MAX_WAIT_MS`]); 0 answers 423 at once.
    pub wait_ms: u64,
}

enum Try {
    Granted(Reply),
    Held(Held),
}

/// Grants the lease (201), or answers 423 once `wait_ms` has run out with the lock still held.
pub async fn acquire(
    db: &Db,
    leases: &Leases,
    opts: TxOptions,
    request: Acquisition,
) -> Result<Reply, ApiError> {
    let deadline = Instant::now() + Duration::from_millis(request.wait_ms);
    let mut place = leases.join(&request.key);
    let mut last_holder = None;
    // Taken before the first sleep: a request that never waits does not count.
    let mut waiting = None;
    loop {
        place.mark_seen();
        let ahead = place.ahead();
        let wake_at = if ahead == 0 {
            match try_once(db, &opts, &request, deadline).await? {
                Try::Granted(reply) => return Ok(reply),
                Try::Held(held) => {
                    // Just past the expiry: at the expiry itself the lease still counts as live.
                    let at = Instant::now() + Duration::from_millis(held.remaining_ms as u64 + 1);
                    last_holder = Some(held);
                    at
                }
            }
        } else {
            deadline
        };
        if Instant::now() >= deadline {
            return Err(not_available(&request.key, last_holder.as_ref(), ahead));
        }
        if waiting.is_none() {
            waiting = Some(leases.budget.enter()?);
        }
        place.sleep(wake_at.min(deadline)).await;
    }
}

/// One transaction: grant, or learn who holds the lock until when.
async fn try_once(
    db: &Db,
    opts: &TxOptions,
    request: &Acquisition,
    deadline: Instant,
) -> Result<Try, ApiError> {
    let mut opts = opts.clone();
    let wait = request.wait_ms > 0;
    if wait {
        // The row itself is only ever locked for a transaction's length (another grant, a
        // renewal, a fenced write); waiting for it must still end by the deadline.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        opts.lock_timeout_ms = Some(left.clamp(1, u128::from(MAX_WAIT_MS)) as u32);
    }
    // The body reports "held" through here: as an error it rolls the transaction back (and
    // stores no idempotent reply), but the caller needs its details to know how long to sleep.
    let held: Rc<RefCell<Option<Held>>> = Rc::default();
    let seen = held.clone();
    let request = request.clone();
    let result = db
        .transact(opts, move |tx| {
            let (request, seen) = (request.clone(), seen.clone());
            Box::pin(async move {
                let outcome =
                    super::acquire(tx, &request.key, &request.owner, request.ttl_ms, wait).await?;
                match outcome {
                    Ok(lease) => Ok(Reply::json(201, &lease)?
                        .header("location", format!("/locks/{}", request.key))),
                    Err(holder) => {
                        let error = not_available(&request.key, Some(&holder), 0);
                        *seen.borrow_mut() = Some(holder);
                        Err(error)
                    }
                }
            })
        })
        .await;
    match result {
        Ok(reply) => Ok(Try::Granted(reply)),
        Err(e) => match held.borrow_mut().take() {
            Some(holder) if matches!(e, ApiError::LockNotAvailable(_)) => Ok(Try::Held(holder)),
            _ => Err(e),
        },
    }
}

fn not_available(key: &str, holder: Option<&Held>, ahead: usize) -> ApiError {
    ApiError::LockNotAvailable(match holder {
        Some(h) => format!(
            "lock '{key}' is held by '{}' until {}",
            h.owner, h.expires_at
        ),
        None => format!("lock '{key}' has {ahead} earlier acquisitions waiting for it"),
    })
}
