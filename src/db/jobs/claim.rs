//! Claiming jobs: the one short statement that locks with `FOR UPDATE SKIP LOCKED` and marks the
//! rows running (River's `JobGetAvailable`), and the long poll around it.
//!
//! No lock outlives the claim's transaction: a claimed job is protected by its state, its lease
//! and its token, not by a row lock held while the work runs. Many claimers scan the same index
//! head at once; `SKIP LOCKED` makes each pass over the rows another claimer is taking instead of
//! queueing behind it, so no two claims ever return the same job and none waits for another.
//!
//! A claim that waits (`wait_ms` > 0) holds no connection while it waits: each attempt is its own
//! short transaction, and between attempts the request sleeps until a `NOTIFY` for its queue
//! (enqueue, fail, retry, resume) or until the next moment the database says a job becomes
//! claimable (a `run_at` or a lease expiry), whichever comes first.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

mod attempt;

use super::group::{JobWork, Jobs};
use super::sql::NEXT_DUE;
use super::ItemResult;
use crate::db::group::GroupCommit;
use crate::db::notify::{WaitBudget, Wakeups};
use crate::db::statements::Conn;
use crate::db::{Db, Reply, TxOptions};
use crate::error::ApiError;
use attempt::attempt;
pub(crate) use attempt::Slots;

/// The most payload bytes (as JSON text) one claim answers with, unless its first job alone is
/// larger: a claim of 1,000 jobs of 256 KiB each takes 32 of them, not 256 MiB of memory.
pub const MAX_CLAIM_BYTES: i64 = 8 * 1024 * 1024;

/// Longest `wait_ms`.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// When claimable jobs exist but other claims hold them, look again this soon: those claims
/// are about to take them, or to let them go.
const BUSY_RECHECK: Duration = Duration::from_millis(50);

/// What to claim.
#[derive(Debug, Clone)]
pub struct ClaimSpec {
    /// The queue to claim from.
    pub queue: String,
    /// At most this many jobs (fewer when [`MAX_CLAIM_BYTES`] is reached first).
    pub limit: i64,
    /// The lease of each claimed job, in seconds: a job neither heartbeated nor acknowledged by
    /// then goes back to `queued` (or `dead` after its last attempt).
    pub lease_secs: f64,
    /// How long to wait for a job when none is claimable (at most [`MAX_WAIT`]).
    pub wait: Duration,
}

/// One claimed job, as the claim route returns it.
#[derive(Debug, Serialize)]
pub struct ClaimedJob {
    /// The job's id.
    pub id: i64,
    /// The payload as PostgreSQL rendered it: passed through as JSON text, never parsed here.
    pub payload: Box<RawValue>,
    /// Which attempt this claim is, counting from 1.
    pub attempt: i32,
    /// The claim's token: the worker's acknowledgements must carry it.
    pub token: String,
    /// When the lease runs out, as PostgreSQL's JSON rendering of a `timestamptz`.
    pub lease_expires_at: Value,
}

impl ClaimedJob {
    /// A row of [`CLAIM`](super::sql::CLAIM).
    pub(crate) fn of(row: &tokio_postgres::Row) -> Result<Self, ApiError> {
        Ok(Self {
            id: row.get("id"),
            payload: raw_json(row.get("payload"))?,
            attempt: row.get("attempt"),
            token: row.get("token"),
            lease_expires_at: row.get("lease_expires_at"),
        })
    }
}

/// Claims up to `spec.limit` jobs of `spec.queue`: 200 with the jobs, or 204 once `spec.wait`
/// has passed with nothing to claim.
pub async fn claim(
    db: &Db,
    wakeups: &Wakeups,
    budget: &WaitBudget,
    spec: ClaimSpec,
    opts: TxOptions,
) -> Result<Reply, ApiError> {
    let acked = Rc::new(RefCell::new(None));
    claim_with(db, wakeups, budget, spec, opts, None, acked).await
}

/// Completes `items` (a worker's finished jobs) and claims, in the first claim transaction: one
/// statement more in its pipeline, one `COMMIT` for both, and the acknowledgements are committed
/// even when nothing is there to claim. Not for a request with an `Idempotency-Key`, whose first
/// attempt may be rolled back (see [`attempt`]).
pub async fn complete_and_claim(
    db: &Db,
    wakeups: &Wakeups,
    budget: &WaitBudget,
    spec: ClaimSpec,
    opts: TxOptions,
    items: Vec<(i64, String)>,
) -> Result<(Reply, Vec<ItemResult>), ApiError> {
    let acked = Rc::new(RefCell::new(None));
    let items = (!items.is_empty()).then(|| Rc::new(items));
    let reply = claim_with(db, wakeups, budget, spec, opts, items, acked.clone()).await?;
    let results = acked.borrow_mut().take().unwrap_or_default();
    Ok((reply, results))
}

async fn claim_with(
    db: &Db,
    wakeups: &Wakeups,
    budget: &WaitBudget,
    spec: ClaimSpec,
    opts: TxOptions,
    mut items: Option<Rc<Vec<(i64, String)>>>,
    acked: Rc<RefCell<Option<Vec<ItemResult>>>>,
) -> Result<Reply, ApiError> {
    let deadline = Instant::now() + spec.wait;
    // Subscribed before the first attempt: a NOTIFY that arrives during an attempt is not lost.
    let mut wake = wakeups.subscribe(&spec.queue);
    // Taken before the first sleep: a claim that never waits does not count.
    let mut waiting = None;
    loop {
        let last = Instant::now() >= deadline;
        // Set by an attempt that found nothing: how long until something may be claimable.
        let idle: Rc<Cell<Option<Option<Duration>>>> = Rc::new(Cell::new(None));
        let (spec_, idle_) = (spec.clone(), idle.clone());
        let (items_, acked_) = (items.take(), acked.clone());
        let result = db
            .transact(opts.clone(), move |tx| {
                let (spec, idle) = (spec_.clone(), idle_.clone());
                let (items, acked) = (items_.clone(), acked_.clone());
                Box::pin(async move {
                    attempt(
                        tx,
                        &spec,
                        last,
                        &idle,
                        items.as_deref().map(|v| &v[..]),
                        &acked,
                    )
                    .await
                })
            })
            .await;
        let next_due = match (result, idle.get()) {
            // The rollback sentinel of an empty attempt that will wait (see `attempt`).
            (Err(ApiError::RowSkipped(_)), Some(next_due)) => next_due,
            (other, _) => return other,
        };
        let until = next_due.map_or(deadline, |d| deadline.min(Instant::now() + d));
        if waiting.is_none() {
            waiting = Some(budget.enter()?);
        }
        wake.until(until).await;
    }
}

/// Completes `completions` (a worker's finished jobs) and claims in job groups
/// ([`super::group`]): the first attempt carries the completions, so they are committed even
/// when nothing is there to claim; a claim that finds nothing waits as [`claim`] does, holding
/// neither a connection nor a place in a group, and tries again in a later group.
pub async fn claim_in_groups(
    db: &Db,
    group: &Arc<GroupCommit<Jobs>>,
    wakeups: &Wakeups,
    budget: &WaitBudget,
    spec: ClaimSpec,
    completions: Vec<(i64, String)>,
    opts: &TxOptions,
) -> Result<(Reply, Vec<ItemResult>), ApiError> {
    let deadline = Instant::now() + spec.wait;
    // Subscribed before the first attempt: a NOTIFY that arrives during an attempt is not lost.
    let mut wake = wakeups.subscribe(&spec.queue);
    let mut waiting = None;
    let ids: Vec<i64> = completions.iter().map(|(id, _)| *id).collect();
    let mut acks = Some(super::plan::completions(completions));
    let mut completed = Vec::new();
    loop {
        let last = Instant::now() >= deadline;
        let work = JobWork {
            queue: Some(spec.queue.clone()),
            acks: acks.take().unwrap_or_default(),
            claim: Some(spec.clone()),
        };
        let answer = group.submit(super::plan::job_request(work, opts)).await?;
        if !ids.is_empty() && completed.is_empty() {
            completed = answer.items(&ids);
        }
        if !answer.jobs.is_empty() {
            return Ok((Reply::json(200, &answer.jobs)?, completed));
        }
        if last {
            return Ok((Reply::empty(204), completed));
        }
        let pooled = db.pool.get().await?;
        let client = Conn::outside(&pooled);
        let next = client.prepare(NEXT_DUE).await?;
        let secs: Option<f64> = client.query_one(&next, &[&spec.queue]).await?.get("secs");
        drop(pooled);
        let until = idle_for(secs).map_or(deadline, |d| deadline.min(Instant::now() + d));
        if waiting.is_none() {
            waiting = Some(budget.enter()?);
        }
        wake.until(until).await;
    }
}

/// How long an empty claim sleeps, given the seconds until a job may become claimable (`None`:
/// until a NOTIFY).
fn idle_for(secs: Option<f64>) -> Option<Duration> {
    secs.map(|s| {
        if s > 0.0 {
            Duration::from_secs_f64(s.min(MAX_WAIT.as_secs_f64()))
        } else {
            BUSY_RECHECK
        }
    })
}

/// JSON text from `jsonb::text`, handed on as it is.
pub(crate) fn raw_json(text: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(text)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("a job payload is not JSON: {e}")))
}
