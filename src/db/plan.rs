//! The one place that decides how a counter mutation runs. Routes extract, call one of these,
//! and respond; nothing below recomputes the decision.
//!
//! - **In a group** ([`super::group`]): `lock=wait` and `lock=none` increments and atomic
//!   transactions, read committed, without a `Fencing-Token`, unless the request said
//!   `group=off` or the server runs with `--group-commit off`.
//! - **Alone, as a transaction of its own** ([`Db::transact`]): everything else (`nowait`,
//!   `skip_locked`, `If-Match`, `isolation=repeatable_read|serializable`, fencing tokens,
//!   `"atomic": false`, `group=off`) and would-be groups of one. Requests that would wait for a
//!   counter's row lock wait their turn in rowlock first ([`super::admission`]).
//!
//! Every transaction reads its id before it sends `COMMIT` (see [`super::tx`]); none runs as an
//! implicit one-statement transaction, whose commit tokio-postgres would not wait for.

use std::sync::Arc;
use std::time::Duration;

use super::counters::{self, Concurrency};
use super::group::{Alone, Change, Counters, GroupCommit, Request, Work};
use super::locking::{Isolation, RowLock, Strength, WaitPolicy};
use super::transactions::{self, Op};
use super::{Db, Reply, TxOptions};
use crate::error::ApiError;

impl Db {
    /// `POST /counters/{name}/increment`.
    pub async fn increment(
        &self,
        name: String,
        by: i64,
        mode: Concurrency,
        strength: Strength,
        mut opts: TxOptions,
    ) -> Result<Reply, ApiError> {
        let grouped_mode = match mode {
            Concurrency::Locked(lock) if lock.wait == WaitPolicy::Wait => Some("wait"),
            Concurrency::Atomic => Some("none"),
            _ => None,
        };
        let mut alone = None;
        if let Some((group, lock_mode)) = self.group_for(&opts).zip(grouped_mode) {
            let work = Work::Increment {
                name: name.clone(),
                by,
            };
            alone = group.try_alone(work.rows());
            if alone.is_none() {
                return group.submit(grouped(work, strength, lock_mode, opts)).await;
            }
        } else if !matches!(mode, Concurrency::Locked(lock) if lock.wait != WaitPolicy::Wait) {
            // Requests that would wait for the row lock wait for their turn in rowlock first.
            opts.admit = Some(format!("counter '{name}'"));
        }
        self.transact_holding(alone, opts, move |tx| {
            let name = name.clone();
            Box::pin(async move { counters::increment(tx, &name, by, mode).await?.reply() })
        })
        .await
    }

    /// `POST /transactions`. `lock` is the row lock asked for (`None` for `lock=none`, which
    /// still locks the rows: several rows changed together must hold still until `COMMIT`).
    pub async fn transaction(
        &self,
        mut ops: Vec<Op>,
        atomic: bool,
        lock: Option<RowLock>,
        strength: Strength,
        opts: TxOptions,
    ) -> Result<Reply, ApiError> {
        let waits = lock.is_none_or(|l| l.wait == WaitPolicy::Wait);
        let mut alone = None;
        if let Some(group) = self.group_for(&opts).filter(|_| atomic && waits) {
            let work = Work::Transaction { ops };
            alone = group.try_alone(work.rows());
            if alone.is_none() {
                let mode = if lock.is_some() { "wait" } else { "none" };
                return group.submit(grouped(work, strength, mode, opts)).await;
            }
            ops = work.into_ops();
        }
        let lock = lock.unwrap_or(RowLock {
            wait: WaitPolicy::Wait,
            strength,
        });
        self.transact_holding(alone, opts, move |tx| {
            let ops = ops.clone();
            Box::pin(async move {
                match atomic {
                    true => transactions::run_atomic(tx, &ops, lock).await?.reply(),
                    false => transactions::run_each(tx, &ops, lock).await?.reply(),
                }
            })
        })
        .await
    }

    /// [`Db::transact`] for a request that runs alone while `alone` keeps its rows from groups:
    /// released when the transaction has ended, even if the client left before.
    async fn transact_holding<F>(
        &self,
        alone: Option<Alone<Counters>>,
        opts: TxOptions,
        body: F,
    ) -> Result<Reply, ApiError>
    where
        F: for<'t> Fn(
                &'t super::Tx,
            )
                -> futures_util::future::LocalBoxFuture<'t, Result<Reply, ApiError>>
            + 'static,
    {
        let Some(alone) = alone else {
            return self.transact(opts, body).await;
        };
        let db = self.clone();
        actix_web::rt::spawn(async move {
            let reply = db.transact(opts, body).await;
            drop(alone);
            reply
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("transaction task failed: {e}")))?
    }

    /// The group executor, when a request with `opts` may share a group.
    fn group_for(&self, opts: &TxOptions) -> Option<&Arc<GroupCommit<Counters>>> {
        let alone =
            !opts.group || opts.isolation != Isolation::ReadCommitted || !opts.fences.is_empty();
        self.group.as_ref().filter(|_| !alone)
    }
}

fn grouped(
    work: Work,
    strength: Strength,
    mode: &'static str,
    opts: TxOptions,
) -> Request<Counters> {
    Request {
        work: Change {
            work,
            strength,
            mode,
            idempotency: opts.idempotency,
        },
        lock_timeout: opts
            .lock_timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
        request_id: opts.request_id,
    }
}
