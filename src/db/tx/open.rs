//! An open transaction ([`Tx`]): its statements, and `COMMIT` sent right behind the last one.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::db::conn::TxConnection;
use crate::db::statements::{Conn, Stmt};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// An open transaction, handed to the body of [`Db::transact`].
pub struct Tx {
    /// Closed rather than pooled if dropped before the transaction is seen to end (a panic).
    pub(super) client: TxConnection,
    /// Set once `COMMIT` has been sent by [`Tx::commit_with`].
    pub(super) finished: Cell<bool>,
    /// The connection broke after `COMMIT` was sent by [`Tx::commit_with`], before its answer.
    pub(super) commit_unconfirmed: Cell<bool>,
    /// Something still has to be written after the body (the idempotency record), so the body
    /// must not commit early.
    pub(super) defer_commit: bool,
    /// The answer of the first round trip (`BEGIN` and the settings, which read the
    /// transaction's identity): `Some(true)` once in hand, `Some(false)` if it failed. `COMMIT`
    /// waits for it.
    pub(super) identity_known: watch::Sender<Option<bool>>,
    pub(super) started: Instant,
    pub(super) metrics: Arc<Metrics>,
}

impl Tx {
    /// The connection, for statements inside the transaction.
    pub fn client(&self) -> Conn<'_> {
        Conn::inside(&self.client)
    }

    /// `sql`, ready to run in this transaction (see [`Conn::prepare`]). Prepare every statement
    /// of a pipeline *before* issuing it: a statement that still needs its own round trip would
    /// be sent late.
    pub async fn prepare(&self, sql: &'static str) -> Result<Stmt, ApiError> {
        Ok(self.client().prepare(sql).await?)
    }

    /// Records that the target rows of `resource` are now locked (the lock-wait histogram).
    pub fn locked(&self, resource: &str, mode: &str) {
        self.metrics
            .lock_wait(resource, mode, self.started.elapsed());
    }

    /// Runs `last` and `COMMIT` without waiting for `last`'s answer in between, releasing row
    /// locks one round trip earlier; `COMMIT` only waits for the transaction's identity (see
    /// the module documentation). `last` must already be built from prepared statements. If
    /// `last` (or anything before it) failed, the transaction is aborted and PostgreSQL answers
    /// the `COMMIT` with a rollback, so nothing is half-applied; the statement's own error is
    /// returned.
    pub async fn commit_with<T>(
        &self,
        last: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, ApiError> {
        if self.defer_commit {
            return Ok(last.await?);
        }
        let commit = async {
            let mut known = self.identity_known.subscribe();
            if !matches!(
                known.wait_for(Option::is_some).await.as_deref(),
                Ok(Some(true))
            ) {
                // Never committed: `run_once` rolls back and answers the first round's error.
                return None;
            }
            self.finished.set(true);
            Some(self.client.batch_execute("COMMIT").await)
        };
        let (result, commit) = futures_util::future::join(last, commit).await;
        let value = result?;
        match commit {
            Some(Ok(())) => Ok(value),
            // No SQLSTATE: the answer was lost with the connection, not refused. Whether it
            // committed is learned after the transaction (see `Db::run_once`).
            Some(Err(e)) if e.code().is_none() => {
                self.commit_unconfirmed.set(true);
                Ok(value)
            }
            Some(Err(e)) => Err(e.into()),
            None => Err(ApiError::Unavailable(
                "the transaction could not begin; nothing was applied".into(),
            )),
        }
    }
}
