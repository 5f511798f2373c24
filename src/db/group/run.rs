//! One group's transaction, in two round trips:
//!
//! 1. `BEGIN`, the session's settings (and `txid_current()`, so the transaction's id is in hand
//!    before `COMMIT` is ever sent), the idempotency keys' advisory locks and stored answers, one
//!    `SELECT … WHERE name = ANY($1) ORDER BY name FOR UPDATE` over every row of the group (in
//!    key order, so groups never deadlock with each other or with single transactions), and the
//!    versions and transaction ids the group may hand out — reserved while its rows are locked,
//!    so they are larger than any a row has seen;
//! 2. after [`apply`] ran every request on the locked values in memory: one statement writing
//!    every changed row once, the `transactions` records and the idempotency records, with
//!    `COMMIT` right behind it.
//!
//! Only after `COMMIT` succeeded is any request answered. If the connection breaks after
//! `COMMIT` was sent, the outcome is asked of the database on another connection
//! (`txid_status`): committed → the answers rowlock holds; aborted → 503 (nothing applied);
//! unknown → 504 `outcome_unknown`.

mod round_one;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;

use super::apply::{Applied, Writes};
use super::{expire, Change, Kind, Lane, Member};
use crate::db::conn::TxConnection;
use crate::db::idempotency::Reply;
use crate::db::outcome;
use crate::db::statements::Conn;
use crate::db::tx::backoff;
use crate::error::ApiError;
use crate::metrics::Metrics;
use round_one::{lock_and_apply, Write};

/// Counter changes, as a [`Kind`] of grouped work: the rows are counters' names, and a group's
/// members may share rows (they are applied one after another in memory).
pub struct Counters {
    /// Where each group takes its connection.
    pub pool: Pool,
    /// Where groups report their size, lock waits and retries.
    pub metrics: Arc<Metrics>,
    /// How many times a group that failed with 40001 or 40P01 runs again before its members
    /// get the error.
    pub max_retries: u32,
    /// How long the idempotency keys written by a group are kept, in seconds.
    pub idempotency_retention_secs: f64,
    /// How long rowlock tries to learn the fate of a `COMMIT` whose answer was lost.
    pub resolve_timeout: Duration,
}

impl Kind for Counters {
    type Work = Change;
    type Answer = Reply;
    /// A counter group starts whenever a slot is free: its rows decide who waits.
    const COMPANY: usize = 0;

    fn start(lane: Lane<Self>, members: Vec<Member<Self>>) {
        // Detached: the group answers each member itself, and its lane frees the rows on drop.
        drop(tokio::spawn(group(lane, members)));
    }

    fn queued(&self, n: usize) {
        self.metrics.group_queued(n);
    }
}

/// Why an attempt at the group's transaction failed (nothing of it was applied).
enum Failed {
    /// The group's lock timeout ran out: its members past their deadline are answered 423, the
    /// others try again.
    LockTimeout,
    /// 40001 / 40P01: the whole group runs again (bounded, with jitter).
    Retryable(ApiError),
    /// Every member gets this answer.
    Final(ApiError),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(&SqlState::LOCK_NOT_AVAILABLE) => Self::LockTimeout,
            _ => match ApiError::from(e) {
                retry if retry.is_retryable() => Self::Retryable(retry),
                other => Self::Final(other),
            },
        }
    }
}

impl From<ApiError> for Failed {
    fn from(e: ApiError) -> Self {
        Self::Final(e)
    }
}

/// Runs one group to its end and answers every member; dropping `lane` lets the next start.
async fn group(lane: Lane<Counters>, mut members: Vec<Member<Counters>>) {
    let executor = &lane.executor().kind;
    let started = Instant::now();
    executor.metrics.group(
        members
            .iter()
            .map(|m| started.saturating_duration_since(m.enqueued)),
    );
    let application_name = format!("rowlock/group-{}", lane.id());
    let (mut retries, mut timeouts) = (0, 0);
    loop {
        members = expire(members);
        if members.is_empty() {
            break;
        }
        match attempt(executor, &application_name, &members).await {
            Ok(answers) => {
                for (member, answer) in members.into_iter().zip(answers) {
                    member.answer(answer);
                }
                break;
            }
            // The timeout was the shortest member's remaining budget: it has expired now. The
            // bound only guards against a lock timeout that came from elsewhere.
            Err(Failed::LockTimeout) if timeouts < members.len() + 2 => timeouts += 1,
            Err(Failed::Retryable(e)) if retries < executor.max_retries => {
                tracing::debug!(retries, code = e.code(), "retrying group");
                executor.metrics.retry(e.code());
                tokio::time::sleep(backoff(retries)).await;
                retries += 1;
            }
            Err(failed) => {
                let error = match failed {
                    Failed::LockTimeout => ApiError::LockNotAvailable(
                        "the rows stayed locked by other transactions".into(),
                    ),
                    Failed::Retryable(e) | Failed::Final(e) => e,
                };
                for member in members {
                    member.answer(Err(error.duplicate()));
                }
                break;
            }
        }
    }
    drop(lane);
}

/// One attempt at the group's transaction: each member's answer, once committed.
async fn attempt(
    executor: &Counters,
    application_name: &str,
    members: &[Member<Counters>],
) -> Result<Vec<Result<Reply, ApiError>>, Failed> {
    // Closed rather than pooled if this ends (or panics) before the transaction did.
    let client = TxConnection::new(executor.pool.get().await.map_err(ApiError::from)?);
    let (txid, applied) =
        match lock_and_apply(&executor.metrics, &client, application_name, members).await {
            Ok(done) => done,
            Err(failed) => {
                if client.batch_execute("ROLLBACK").await.is_ok() {
                    client.ended();
                }
                return Err(failed);
            }
        };
    let (write_stmt, Applied { answers, writes }) = applied;
    // Prepared in round 1: a statement still to be prepared here would go out after the
    // `COMMIT` below, as a transaction of its own.
    let write = async {
        if writes.is_empty() {
            return Ok(0);
        }
        let conn = Conn::inside(&client);
        let params = write_params(&writes, executor);
        match &write_stmt {
            Write::Joined(write) => conn.execute(write, &params).await,
            Write::PerRow { row, records } => {
                // Polled in order, so sent in order, in the same pipeline as the COMMIT.
                let each: Vec<_> = (0..writes.names.len())
                    .map(|i| params_of_row(&writes, i))
                    .collect();
                let rows =
                    futures_util::future::join_all(each.iter().map(|p| conn.execute(row, p)));
                let (rows, recorded) =
                    futures_util::join!(rows, conn.execute(records, &params[..9]));
                let mut written = 0;
                for row in rows {
                    written += row?;
                }
                let _ = recorded?;
                Ok(written)
            }
        }
    };
    let (written, committed) = futures_util::join!(write, client.batch_execute("COMMIT"));
    match (written, committed) {
        (Ok(_), Ok(())) => {
            client.ended();
            Ok(answers)
        }
        // The write failed in the database: the transaction was aborted and COMMIT rolled it
        // back, so nothing was applied.
        (Err(e), Ok(())) if e.code().is_some() => {
            client.ended();
            Err(e.into())
        }
        (Err(e), _) if e.code().is_some() => Err(e.into()),
        _ => {
            client.discard();
            match outcome::resolve(&executor.pool, &txid, executor.resolve_timeout).await {
                Some(true) => Ok(answers),
                Some(false) => Err(Failed::Final(outcome::rolled_back())),
                None => Err(Failed::Final(outcome::unknown())),
            }
        }
    }
}

fn params_of_row(w: &Writes, i: usize) -> [&(dyn tokio_postgres::types::ToSql + Sync); 3] {
    [&w.names[i], &w.values[i], &w.versions[i]]
}

fn write_params<'a>(
    w: &'a Writes,
    executor: &'a Counters,
) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 12] {
    let retention: &'a f64 = &executor.idempotency_retention_secs;
    [
        &w.transaction_ids,
        &w.transaction_ops,
        &w.transaction_results,
        &w.keys,
        &w.hashes,
        &w.statuses,
        &w.headers,
        &w.bodies,
        retention,
        &w.names,
        &w.values,
        &w.versions,
    ]
}
