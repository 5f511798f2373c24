//! Job acknowledgements and claims in shared transactions: the job queue's group commit.
//!
//! Every worker of a busy queue sends a stream of small requests: complete, fail, heartbeat,
//! and claims that carry the completions of the worker's finished jobs. Run one transaction
//! each, they cost PostgreSQL a `BEGIN`/`COMMIT` and a WAL flush per request. Here they are
//! gathered by the executor counters use ([`crate::db::group`]: natural batching, no timer,
//! a group of one under light load) and each group is ONE transaction of at most three
//! statements per queue, sent in one pipeline with its `COMMIT`:
//!
//! 1. every acknowledgement of the group in one `UPDATE … FROM unnest(…)` ([`ACK`](super::sql::ACK)), each
//!    guarded by its job's current token and `running` state, so each is checked on its own
//!    exactly as `POST /jobs/{id}/complete` checks it;
//! 2. per queue with claims: the expired leases rescued, and one claim statement for every
//!    claim of the group ([`super::sql::CLAIM`]), its slots dealt out to the claims in
//!    arrival order (each with its own token, lease, `limit` and byte budget).
//!
//! Each request is answered only after that `COMMIT`, with its own per-job results. A job's id
//! is in at most one group at a time, so one group never acknowledges a job twice. Requests
//! with an `Idempotency-Key` or a `Fencing-Token`, `lock=nowait|skip_locked`, another isolation
//! or `group=off` run as transactions of their own.

mod run;

use serde_json::value::RawValue;
use serde_json::Value;

use super::claim::{ClaimSpec, ClaimedJob};
use super::transition::refusal;
use super::{not_found, ItemResult, Transition};
use crate::db::group::{Grouped, Kind, Lane, Member};
use crate::db::{Db, Reply};
use crate::error::ApiError;

/// One acknowledgement of a job by the worker holding its token.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The job acknowledged.
    pub id: i64,
    /// The token of the worker's claim; stale unless the job is still running under it.
    pub token: String,
    /// What the acknowledgement does to the job.
    pub action: Action,
}

/// What an acknowledgement does.
#[derive(Debug, Clone)]
pub enum Action {
    /// The job becomes `completed`.
    Complete,
    /// The attempt failed: the job is queued again after a backoff, or `dead` after its last
    /// allowed attempt.
    Fail {
        /// What went wrong, kept with the job's recent errors.
        error: Value,
    },
    /// The job's lease is extended.
    Heartbeat {
        /// The new lease, in seconds from now.
        lease_secs: f64,
    },
}

impl Ack {
    /// The acknowledgement a worker's transition is, if it is one (retry, delete and cancel
    /// are an operator's and run alone).
    pub fn of(id: i64, transition: &Transition) -> Option<Self> {
        let (token, action) = match transition {
            Transition::Complete { token } => (token, Action::Complete),
            Transition::Fail { token, error } => (
                token,
                Action::Fail {
                    error: error.clone(),
                },
            ),
            Transition::Heartbeat { token, lease_secs } => (
                token,
                Action::Heartbeat {
                    lease_secs: *lease_secs,
                },
            ),
            _ => return None,
        };
        Some(Self {
            id,
            token: token.clone(),
            action,
        })
    }

    /// The transition this acknowledgement is (to explain a refusal as the single route does).
    fn transition(&self) -> Transition {
        let token = self.token.clone();
        match &self.action {
            Action::Complete => Transition::Complete { token },
            Action::Fail { error } => Transition::Fail {
                token,
                error: error.clone(),
            },
            Action::Heartbeat { lease_secs } => Transition::Heartbeat {
                token,
                lease_secs: *lease_secs,
            },
        }
    }
}

/// What one request asks of a job group.
#[derive(Debug)]
pub struct JobWork {
    /// The queue the acknowledged jobs must be in (`None`: any, for `POST /jobs/{id}/…`).
    pub queue: Option<String>,
    /// The acknowledgements, applied in order before the claim.
    pub acks: Vec<Ack>,
    /// A claim of `queue`'s jobs, after the acknowledgements.
    pub claim: Option<ClaimSpec>,
}

/// The rows of job requests are the acknowledged jobs' ids: a job is acknowledged by at most one
/// request of a group.
impl Grouped for JobWork {
    type Row = i64;
    const EXCLUSIVE_ROWS: bool = true;

    fn rows(&self) -> Vec<&i64> {
        self.acks.iter().map(|a| &a.id).collect()
    }

    fn ops(&self) -> usize {
        self.acks.len() + self.claim.as_ref().map_or(0, |c| c.limit as usize)
    }

    fn describe(&self) -> String {
        match self.acks.as_slice() {
            [] => "the claim".to_owned(),
            [one] => format!("job {}", one.id),
            more => format!("{} jobs", more.len()),
        }
    }
}

/// How one acknowledgement went.
#[derive(Debug)]
pub enum AckOutcome {
    /// Applied: the job's new state, as the single routes answer it.
    Done(Box<RawValue>),
    /// Refused: the job's state now (`None`: no such job, or not in the request's queue).
    Refused(Option<String>),
}

/// A job group's answer to one request.
#[derive(Debug, Default)]
pub struct JobAnswer {
    /// One outcome per acknowledgement, in order.
    pub acks: Vec<AckOutcome>,
    /// The jobs claimed for the request (none when nothing was claimable).
    pub jobs: Vec<ClaimedJob>,
}

impl JobAnswer {
    /// The answer of a single acknowledgement route: the job's new state, or why not.
    pub fn single(self, ack: &Ack) -> Result<Reply, ApiError> {
        match self.acks.into_iter().next() {
            Some(AckOutcome::Done(json)) => Reply::json(200, &json),
            Some(AckOutcome::Refused(state)) => Err(refusal(ack.id, &ack.transition(), state)),
            None => Err(not_found(ack.id)),
        }
    }

    /// The per-item results of a batch of jobs `ids` (200, 404 or 409 `stale_token` each).
    pub fn items(&self, ids: &[i64]) -> Vec<ItemResult> {
        ids.iter()
            .zip(&self.acks)
            .map(|(&id, outcome)| {
                let (status, code) = match outcome {
                    AckOutcome::Done(_) => (200, None),
                    AckOutcome::Refused(None) => (404, Some("not_found")),
                    AckOutcome::Refused(Some(_)) => (409, Some("stale_token")),
                };
                ItemResult { id, status, code }
            })
            .collect()
    }
}

/// Job requests, as a [`Kind`] of grouped work: the rows are the acknowledged jobs' ids, and a
/// job is acknowledged by at most one request of a group.
pub struct Jobs {
    /// Runs the groups' transactions (a handle without executors of its own).
    pub db: Db,
}

impl Kind for Jobs {
    type Work = JobWork;
    type Answer = JobAnswer;
    /// Workers answered by one group come back together: without this, the first few of them
    /// would each take a free slot as a group of one and pay a transaction each (64 workers at
    /// `limit=1`: half the groups were of one request, PostgreSQL spent 200 µs per job; with
    /// groups of 16, 150 µs and +25 % jobs/s; 8 and 32 measured the same within noise).
    const COMPANY: usize = 16;

    fn start(lane: Lane<Self>, members: Vec<Member<Self>>) {
        // `Db::transact` runs on the server's local task set, so the group does too.
        // Detached: the group answers each member itself, and its lane frees the slot on drop.
        drop(actix_web::rt::spawn(run::run(lane, members)));
    }

    fn queued(&self, n: usize) {
        self.db.metrics.job_group_queued(n);
    }
}
