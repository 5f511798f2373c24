//! One job group's transaction: the acknowledgements and claims of its members in one pipeline
//! with the `COMMIT`, and the answers dealt out to them (see [`super`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::{AckOutcome, Action, JobAnswer, Jobs};
use crate::db::group::{expire, remaining_lock_timeout, Lane, Member};
use crate::db::jobs::claim::{raw_json, ClaimedJob, Slots, MAX_CLAIM_BYTES};
use crate::db::jobs::sql::{ACK, CLAIM, RESCUE};
use crate::db::{Db, Reply, Tx, TxOptions};
use crate::error::ApiError;

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
pub(super) async fn run(lane: Lane<Jobs>, mut members: Vec<Member<Jobs>>) {
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
    let _ = db
        .transact(opts, move |tx| {
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
            let _ = rescued?;
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
