//! Job acknowledgements and claims in shared transactions: the job queue's group commit.
//!
//! Every worker of a busy queue sends a stream of small requests: complete, fail, heartbeat,
//! and claims that carry the completions of the worker's finished jobs. Run one transaction
//! each, they cost PostgreSQL a `BEGIN`/`COMMIT` and a WAL flush per request. Here they are
//! gathered by the executor counters use ([`crate::db::group`]: natural batching, no timer,
//! a group of one under light load) and each group is ONE transaction of at most three
//! statements per queue, sent in one pipeline with its `COMMIT`:
//!
//! 1. every acknowledgement of the group in one `UPDATE … FROM unnest(…)` ([`ACK`]), each
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

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::value::RawValue;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::claim::{raw_json, ClaimSpec, ClaimedJob, Slots, MAX_CLAIM_BYTES};
use super::sql::{ACK, CLAIM, RESCUE};
use super::{not_found, refusal, ItemResult, Transition};
use crate::db::group::{expire, remaining_lock_timeout, Kind, Lane, Member};
use crate::db::{Db, Reply, Tx, TxOptions};
use crate::error::ApiError;

/// One acknowledgement of a job by the worker holding its token.
#[derive(Debug, Clone)]
pub struct Ack {
    pub id: i64,
    pub token: String,
    pub action: Action,
}

/// What an acknowledgement does.
#[derive(Debug, Clone)]
pub enum Action {
    Complete,
    Fail { error: Value },
    Heartbeat { lease_secs: f64 },
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
    pub acks: Vec<Ack>,
    /// A claim of `queue`'s jobs, after the acknowledgements.
    pub claim: Option<ClaimSpec>,
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
    type Row = i64;
    type Answer = JobAnswer;
    const EXCLUSIVE_ROWS: bool = true;
    /// Workers answered by one group come back together: without this, the first few of them
    /// would each take a free slot as a group of one and pay a transaction each (64 workers at
    /// `limit=1`: half the groups were of one request, PostgreSQL spent 200 µs per job; with
    /// groups of 16, 150 µs and +25 % jobs/s; 8 and 32 measured the same within noise).
    const COMPANY: usize = 16;

    fn rows(work: &JobWork) -> Vec<&i64> {
        work.acks.iter().map(|a| &a.id).collect()
    }

    fn ops(work: &JobWork) -> usize {
        work.acks.len() + work.claim.as_ref().map_or(0, |c| c.limit as usize)
    }

    fn describe(work: &JobWork) -> String {
        match work.acks.as_slice() {
            [] => "the claim".to_owned(),
            [one] => format!("job {}", one.id),
            more => format!("{} jobs", more.len()),
        }
    }

    fn start(lane: Lane<Self>, members: Vec<Member<Self>>) {
        // `Db::transact` runs on the server's local task set, so the group does too.
        actix_web::rt::spawn(run(lane, members));
    }

    fn queued(&self, n: usize) {
        self.db.metrics.job_group_queued(n);
    }
}

/// The inputs of one group's statements, built from its members in order.
#[derive(Default)]
struct Inputs {
    ids: Vec<i64>,
    tokens: Vec<String>,
    queues: Vec<Option<String>>,
    actions: Vec<&'static str>,
    errors: Vec<Option<Value>>,
    lease_secs: Vec<Option<f64>>,
    /// Claim slots by queue: each claim's token, lease and member index, `limit` times.
    claims: BTreeMap<String, Slots>,
}

impl Inputs {
    fn of(members: &[Member<Jobs>]) -> Self {
        let mut inputs = Self::default();
        for (index, member) in members.iter().enumerate() {
            let work = &member.work;
            for ack in &work.acks {
                inputs.ids.push(ack.id);
                inputs.tokens.push(ack.token.clone());
                inputs.queues.push(work.queue.clone());
                let (action, error, lease) = match &ack.action {
                    Action::Complete => ("complete", None, None),
                    Action::Fail { error } => ("fail", Some(error.clone()), None),
                    Action::Heartbeat { lease_secs } => ("heartbeat", None, Some(*lease_secs)),
                };
                inputs.actions.push(action);
                inputs.errors.push(error);
                inputs.lease_secs.push(lease);
            }
            if let Some(spec) = &work.claim {
                let owner = i32::try_from(index).unwrap_or(i32::MAX);
                inputs
                    .claims
                    .entry(spec.queue.clone())
                    .or_default()
                    .add(spec, owner);
            }
        }
        inputs
    }
}

/// Runs one group to its end and answers every member; dropping `lane` lets the next start.
async fn run(lane: Lane<Jobs>, mut members: Vec<Member<Jobs>>) {
    let db = &lane.executor().kind.db;
    let mut timeouts = 0;
    loop {
        members = expire(members);
        if members.is_empty() {
            break;
        }
        match attempt(db, lane.id(), &members).await {
            Ok(outcome) => {
                outcome.answer(members);
                break;
            }
            // The lock timeout was the shortest member's remaining budget: that member has
            // expired now, the others try again (the bound only guards against a lock timeout
            // that came from elsewhere).
            Err(ApiError::LockNotAvailable(_)) if timeouts < members.len() + 2 => timeouts += 1,
            Err(error) => {
                for member in members {
                    member.answer(Err(error.duplicate()));
                }
                break;
            }
        }
    }
    drop(lane);
}

/// One transaction for `members`: what its statements answered, once committed.
async fn attempt(db: &Db, group: u64, members: &[Member<Jobs>]) -> Result<Outcome, ApiError> {
    let inputs = Rc::new(Inputs::of(members));
    db.metrics.job_group(members.len(), inputs.ids.len());
    let remaining = remaining_lock_timeout(members);
    let opts = TxOptions {
        request_id: Some(format!("job-group-{group}")),
        lock_timeout_ms: Some(u32::try_from(remaining.as_millis().max(1)).unwrap_or(u32::MAX)),
        ..TxOptions::default()
    };
    let outcome: Rc<RefCell<Option<Outcome>>> = Rc::default();
    let (inputs_, outcome_) = (inputs.clone(), outcome.clone());
    db.transact(opts, move |tx| {
        let (inputs, outcome) = (inputs_.clone(), outcome_.clone());
        Box::pin(async move {
            *outcome.borrow_mut() = Some(statements(tx, &inputs).await?);
            Ok(Reply::empty(200))
        })
    })
    .await?;
    let outcome = outcome.borrow_mut().take();
    outcome
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a job group ended without an answer")))
}

/// What a group's statements answered, before it is dealt out to the members.
struct Outcome {
    /// One per acknowledgement, in the order of [`Inputs`].
    acks: Vec<AckOutcome>,
    /// Claimed jobs with the index of the member they are for.
    jobs: Vec<(usize, ClaimedJob)>,
}

impl Outcome {
    fn answer(self, members: Vec<Member<Jobs>>) {
        let mut answers: Vec<JobAnswer> = members.iter().map(|_| JobAnswer::default()).collect();
        let mut acks = self.acks.into_iter();
        for (member, answer) in members.iter().zip(answers.iter_mut()) {
            answer.acks = acks.by_ref().take(member.work.acks.len()).collect();
        }
        for (owner, job) in self.jobs {
            if let Some(answer) = answers.get_mut(owner) {
                answer.jobs.push(job);
            }
        }
        for (member, answer) in members.into_iter().zip(answers) {
            member.answer(Ok(answer));
        }
    }
}

/// The group's statements, sent in one pipeline with the `COMMIT`.
async fn statements(tx: &Tx, inputs: &Inputs) -> Result<Outcome, ApiError> {
    // Prepared before anything is sent, so the pipeline goes out in order.
    let ack = match inputs.ids.is_empty() {
        true => None,
        false => Some(tx.prepare(ACK).await?),
    };
    let (rescue, claim) = match inputs.claims.is_empty() {
        true => (None, None),
        false => (
            Some(tx.prepare(RESCUE).await?),
            Some(tx.prepare(CLAIM).await?),
        ),
    };
    let client = tx.client();
    let ack_params: [&(dyn ToSql + Sync); 6] = [
        &inputs.ids,
        &inputs.tokens,
        &inputs.queues,
        &inputs.actions,
        &inputs.errors,
        &inputs.lease_secs,
    ];
    let acking = async {
        match &ack {
            Some(stmt) => client.query(stmt, &ack_params).await,
            None => Ok(Vec::new()),
        }
    };
    let claim_params: Vec<_> = inputs
        .claims
        .iter()
        .map(|(queue, slots)| (queue, slots.limit(), slots))
        .collect();
    let claiming = claim_params.iter().map(|(queue, limit, slots)| {
        let (rescue, claim) = (rescue.as_ref(), claim.as_ref());
        async move {
            let (Some(rescue), Some(claim)) = (rescue, claim) else {
                return Ok(Vec::new());
            };
            let rescue_params: [&(dyn ToSql + Sync); 2] = [queue, limit];
            let claim_params: [&(dyn ToSql + Sync); 6] = [
                queue,
                limit,
                &slots.tokens,
                &slots.lease_secs,
                &MAX_CLAIM_BYTES,
                &slots.owners,
            ];
            let (rescued, claimed) = futures_util::join!(
                client.execute(rescue, &rescue_params),
                client.query(claim, &claim_params),
            );
            rescued?;
            claimed
        }
    });
    let (acked, claimed) = futures_util::join!(
        acking,
        tx.commit_with(futures_util::future::try_join_all(claiming)),
    );
    // The first statement's error is the cause; the later ones would only say "aborted".
    let acks = acked?
        .iter()
        .map(|row| match row.get::<_, Option<String>>("done") {
            Some(json) => raw_json(json).map(AckOutcome::Done),
            None => Ok(AckOutcome::Refused(row.get("state"))),
        })
        .collect::<Result<_, ApiError>>()?;
    let mut jobs = Vec::new();
    for row in claimed?.iter().flatten() {
        let owner: i32 = row.get("owner");
        jobs.push((
            usize::try_from(owner).unwrap_or(usize::MAX),
            ClaimedJob::of(row)?,
        ));
    }
    Ok(Outcome { acks, jobs })
}
