//! The one place that decides how a job request runs, as [`crate::db::plan`] does for counters.
//!
//! - **In a job group** ([`super::group`]): a worker's acknowledgements (`POST /jobs/{id}/`
//!   `complete|fail|heartbeat` with `lock=wait|none`, `POST /queues/{queue}/complete`) and
//!   claims, with or without piggy-backed completions, read committed, without an
//!   `Idempotency-Key` or a `Fencing-Token`, unless the request said `group=off` or the server
//!   runs with `--group-commit off`.
//! - **Alone, as a transaction of its own** ([`Db::transact`]): everything else — the operator's
//!   transitions (retry, delete, cancel), `lock=nowait|skip_locked`, and every request with an
//!   `Idempotency-Key` (its stored answer is written in its own transaction) or a fencing token.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::group::{Ack, Action, JobWork, Jobs};
use super::Transition;
use crate::db::group::{GroupCommit, Request};
use crate::db::locking::{Isolation, RowLock, WaitPolicy};
use crate::db::{Db, Reply, TxOptions};
use crate::error::ApiError;

impl Db {
    /// A transition of job `id` (`POST /jobs/{id}/…`, `DELETE /jobs/{id}`): 200 with the job's
    /// new state (204 for delete).
    pub async fn job_transition(
        &self,
        id: i64,
        transition: Transition,
        lock: Option<RowLock>,
        opts: TxOptions,
    ) -> Result<Reply, ApiError> {
        let waits = lock.is_none_or(|l| l.wait == WaitPolicy::Wait);
        let group = self.job_group_for(&opts).filter(|_| waits);
        if let Some((group, ack)) = group.zip(Ack::of(id, &transition)) {
            let work = JobWork {
                queue: None,
                acks: vec![ack.clone()],
                claim: None,
            };
            return group.submit(job_request(work, &opts)).await?.single(&ack);
        }
        self.transact(opts, move |tx| {
            let transition = transition.clone();
            Box::pin(async move {
                let done = super::transition(tx, id, &transition, lock).await?;
                match transition {
                    Transition::Delete => Ok(Reply::empty(204)),
                    _ => Reply::json(200, &done),
                }
            })
        })
        .await
    }

    /// `POST /queues/{queue}/complete`: each item's result, in order.
    pub async fn complete_jobs(
        &self,
        queue: String,
        items: Vec<(i64, String)>,
        opts: TxOptions,
    ) -> Result<Reply, ApiError> {
        if let Some(group) = self.job_group_for(&opts) {
            let ids: Vec<i64> = items.iter().map(|(id, _)| *id).collect();
            let work = JobWork {
                queue: Some(queue),
                acks: completions(items),
                claim: None,
            };
            let answer = group.submit(job_request(work, &opts)).await?;
            let results = answer.items(&ids);
            return Reply::json(200, &serde_json::json!({ "results": results }));
        }
        let items = Rc::new(items);
        self.transact(opts, move |tx| {
            let (items, queue) = (items.clone(), queue.clone());
            Box::pin(async move {
                let results = super::complete_batch(tx, &queue, &items, true).await?;
                Reply::json(200, &serde_json::json!({ "results": results }))
            })
        })
        .await
    }

    /// The job group executor, when a request with `opts` may share a group.
    pub(crate) fn job_group_for(&self, opts: &TxOptions) -> Option<&Arc<GroupCommit<Jobs>>> {
        let alone = !opts.group
            || opts.isolation != Isolation::ReadCommitted
            || !opts.fences.is_empty()
            || opts.idempotency.is_some();
        self.jobs.as_ref().filter(|_| !alone)
    }
}

/// `(id, token)` pairs as completions.
pub(crate) fn completions(items: Vec<(i64, String)>) -> Vec<Ack> {
    items
        .into_iter()
        .map(|(id, token)| Ack {
            id,
            token,
            action: Action::Complete,
        })
        .collect()
}

/// `work` as a request of a job group, with the request's lock timeout and id.
pub(crate) fn job_request(work: JobWork, opts: &TxOptions) -> Request<Jobs> {
    Request {
        work,
        lock_timeout: opts
            .lock_timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
        request_id: opts.request_id.clone(),
    }
}
