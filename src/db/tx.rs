//! The one transaction path every mutating request takes:
//! pooled connection → `BEGIN` → lock → mutate → `COMMIT`, or roll back entirely.
//!
//! Three properties matter more than anything else here:
//! - **A transaction always ends.** The work runs in its own task, so it finishes (commit or
//!   rollback) even when the HTTP client goes away and actix drops the handler; a connection is
//!   never handed back to the pool in the middle of a transaction.
//! - **Few round trips while a lock is held.** `BEGIN` and the per-request settings travel with
//!   the first statement, and [`Tx::commit_with`] sends `COMMIT` right behind the last one:
//!   tokio-postgres pipelines requests issued without awaiting each other, so a hot row is held
//!   for the database's own work, not for network and scheduling latency.
//! - **Bounded retries.** Serialization failures (40001) and deadlocks (40P01) run the whole
//!   transaction again, at most `max_retries` times, with jittered exponential backoff.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures_util::future::LocalBoxFuture;
use rand::Rng;
use tokio_postgres::Statement;

use super::admission::{Admission, Permit};
use super::conn::TxConnection;
use super::fencing::{self, Fence};
use super::idempotency::{self, Idempotency, Reply};
use super::locking::Isolation;
use super::outcome;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Per-request transaction settings.
#[derive(Debug, Clone, Default)]
pub struct TxOptions {
    pub isolation: Isolation,
    /// `SET LOCAL lock_timeout`, overriding the connection's default for this transaction.
    pub lock_timeout_ms: Option<u32>,
    /// Store the reply under this key in the same transaction (and replay a stored one).
    pub idempotency: Option<Idempotency>,
    /// `Fencing-Token`s that must still be current for the mutation to go ahead.
    pub fences: Vec<Fence>,
    /// The lease the transaction changes (the lock routes): locked with the fences, see
    /// [`fencing::check`].
    pub lease: Option<String>,
    /// The row this transaction waits its turn for before taking a connection (see
    /// [`super::admission`]); `None` for requests that must not wait (`nowait`, `skip_locked`).
    pub admit: Option<String>,
    /// The body can run as one statement that applies the request's settings itself
    /// ([`Tx::application_name`], [`Tx::lock_timeout`]). When nothing else shares its
    /// transaction (read committed, no idempotency key, no fencing token) and its row is not
    /// already held by another of rowlock's transactions, it is sent without `BEGIN` and
    /// `COMMIT` ([`Tx::is_implicit`]): PostgreSQL runs it as a transaction of its own.
    ///
    /// Why not when contended: a statement that waited for a row lock must re-check every later
    /// step against the row's newer version (EvalPlanQual), which on a hot row costs more than
    /// the round trip saved; two statements in one transaction give the write a fresh snapshot.
    pub one_statement: bool,
    /// The request this transaction serves (it names the session); read from the request's
    /// task when unset.
    pub request_id: Option<String>,
    /// The client lets the request share a group-commit transaction (it did not say
    /// `group=off`); [`super::plan`] decides whether it does.
    pub group: bool,
}

/// The database handle the routes share: the pool and the policies of the transaction path.
#[derive(Clone)]
pub struct Db {
    pub pool: Pool,
    pub max_retries: u32,
    /// How long an idempotency key is remembered.
    pub idempotency_retention: Duration,
    pub metrics: Arc<Metrics>,
    /// Per-row queues in front of the pool.
    pub admission: Arc<Admission>,
    /// The connections' default `lock_timeout`: also bounds the wait for admission.
    pub lock_timeout: Duration,
    /// The group-commit executor; `None` with `--group-commit off`.
    pub group: Option<Arc<super::group::GroupCommit>>,
}

/// An open transaction, handed to the body of [`Db::transact`].
pub struct Tx {
    /// Closed rather than pooled if dropped before the transaction is seen to end (a panic).
    client: TxConnection,
    /// Set once `COMMIT` has been sent by [`Tx::commit_with`] (from the start when implicit).
    finished: Cell<bool>,
    /// The connection broke after `COMMIT` was sent by [`Tx::commit_with`], before its answer.
    commit_unconfirmed: Cell<bool>,
    /// Something still has to be written after the body (the idempotency record), so the body
    /// must not commit early.
    defer_commit: bool,
    /// No `BEGIN` was sent: the body's one statement is its own (implicit) transaction.
    implicit: bool,
    application_name: String,
    lock_timeout: String,
    started: Instant,
    metrics: Arc<Metrics>,
}

impl Tx {
    /// The connection, for statements inside the transaction.
    pub fn client(&self) -> &deadpool_postgres::ClientWrapper {
        &self.client
    }

    /// Prepares `sql` once per connection. Prepare every statement of a pipeline *before*
    /// issuing it: a statement that still needs its own prepare round trip would be sent late.
    pub async fn prepare(&self, sql: &'static str) -> Result<Statement, ApiError> {
        Ok(self.client.prepare_cached(sql).await?)
    }

    /// Whether the body must run exactly one statement, as its own transaction: no `BEGIN` was
    /// sent (see [`TxOptions::one_statement`]).
    pub fn is_implicit(&self) -> bool {
        self.implicit
    }

    /// The `application_name` the transaction runs under: `rowlock/<request id>`.
    pub fn application_name(&self) -> &str {
        &self.application_name
    }

    /// The transaction's `lock_timeout`, as a setting value (`"5000ms"`).
    pub fn lock_timeout(&self) -> &str {
        &self.lock_timeout
    }

    /// Records that the target rows of `resource` are now locked (the lock-wait histogram).
    pub fn locked(&self, resource: &str, mode: &str) {
        self.metrics
            .lock_wait(resource, mode, self.started.elapsed());
    }

    /// Runs `last` and `COMMIT` without waiting in between, releasing row locks one round trip
    /// earlier. `last` must already be built from prepared statements. If `last` (or anything
    /// before it) failed, the transaction is aborted and PostgreSQL answers the `COMMIT` with a
    /// rollback, so nothing is half-applied; the statement's own error is returned.
    pub async fn commit_with<T>(
        &self,
        last: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, ApiError> {
        if self.defer_commit || self.implicit {
            return Ok(last.await?);
        }
        self.finished.set(true);
        let (result, commit) =
            futures_util::future::join(last, self.client.batch_execute("COMMIT")).await;
        let value = result?;
        match commit {
            Ok(()) => Ok(value),
            // No SQLSTATE: the answer was lost with the connection, not refused. Whether it
            // committed is learned after the transaction (see `Db::run_once`).
            Err(e) if e.code().is_none() => {
                self.commit_unconfirmed.set(true);
                Ok(value)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Db {
    /// Runs `body` in one transaction with `opts`, committing on `Ok` and rolling back on `Err`,
    /// and runs it again on 40001/40P01 up to `max_retries` times. With an idempotency key the
    /// reply is stored before the commit, or a stored one is replayed without running `body`.
    pub async fn transact<F>(&self, opts: TxOptions, body: F) -> Result<Reply, ApiError>
    where
        F: for<'t> Fn(&'t Tx) -> LocalBoxFuture<'t, Result<Reply, ApiError>> + 'static,
    {
        let db = self.clone();
        let request_id = opts
            .request_id
            .clone()
            .or_else(crate::routes::current_request_id);
        // Its own task: dropping the handler (client gone) must not drop an open transaction.
        actix_web::rt::spawn(async move {
            let turn = match &opts.admit {
                Some(row) => Some(db.admit(row, opts.lock_timeout_ms).await?),
                None => None,
            };
            let contended = turn.as_ref().is_some_and(|t| t.contended);
            db.run_with_retries(opts, contended, request_id, body).await
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("transaction task failed: {e}")))?
    }

    /// Waits for `row`'s turn, as long as the request would wait for its row lock.
    async fn admit(&self, row: &str, lock_timeout_ms: Option<u32>) -> Result<Permit, ApiError> {
        let timeout =
            lock_timeout_ms.map_or(self.lock_timeout, |ms| Duration::from_millis(u64::from(ms)));
        self.admission.enter(row, timeout).await.ok_or_else(|| {
            ApiError::LockNotAvailable(format!(
                "{row} stayed locked by other transactions for {} ms",
                timeout.as_millis()
            ))
        })
    }

    async fn run_with_retries<F>(
        &self,
        opts: TxOptions,
        contended: bool,
        request_id: Option<String>,
        body: F,
    ) -> Result<Reply, ApiError>
    where
        F: for<'t> Fn(&'t Tx) -> LocalBoxFuture<'t, Result<Reply, ApiError>>,
    {
        // Shown in pg_stat_activity (and /debug/locks) while the transaction runs.
        let application_name = match request_id {
            Some(id) => format!("rowlock/{id}"),
            None => "rowlock".to_owned(),
        };
        let mut attempt = 0;
        loop {
            match self
                .run_once(&opts, contended, &application_name, &body)
                .await
            {
                Err(e) if e.is_retryable() && attempt < self.max_retries => {
                    tracing::debug!(attempt, code = e.code(), "retrying transaction");
                    self.metrics.retry(e.code());
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn run_once<F>(
        &self,
        opts: &TxOptions,
        contended: bool,
        application_name: &str,
        body: &F,
    ) -> Result<Reply, ApiError>
    where
        F: for<'t> Fn(&'t Tx) -> LocalBoxFuture<'t, Result<Reply, ApiError>>,
    {
        let implicit = opts.one_statement
            && !contended
            && opts.isolation == Isolation::ReadCommitted
            && opts.idempotency.is_none()
            && opts.fences.is_empty();
        let lock_timeout_ms = opts
            .lock_timeout_ms
            .map_or(self.lock_timeout.as_millis(), u128::from);
        let tx = Tx {
            client: TxConnection::new(self.pool.get().await?),
            finished: Cell::new(implicit),
            commit_unconfirmed: Cell::new(false),
            defer_commit: opts.idempotency.is_some(),
            implicit,
            application_name: application_name.to_owned(),
            lock_timeout: format!("{lock_timeout_ms}ms"),
            started: Instant::now(),
            metrics: self.metrics.clone(),
        };
        if implicit {
            let result = body(&tx).await;
            // The statement was its own transaction: if the connection broke with it in flight,
            // it may have committed, and without a transaction id there is no asking.
            if result.is_err() && tx.client.is_closed() {
                return Err(outcome::unknown());
            }
            tx.client.ended();
            return result;
        }
        let work = async {
            let Some(idem) = &opts.idempotency else {
                fencing::check(&tx, &opts.fences, opts.lease.as_deref()).await?;
                return body(&tx).await;
            };
            // A replay answers what was done when the fence was checked the first time.
            if let Some(stored) = idempotency::claim(&tx, idem).await? {
                return Ok(stored);
            }
            fencing::check(&tx, &opts.fences, opts.lease.as_deref()).await?;
            let mut reply = body(&tx).await?;
            idempotency::record(&tx, idem, &mut reply).await?;
            Ok(reply)
        };
        // Polled in this order, so sent in this order, without waiting for each other.
        let begin = tx.client.batch_execute(opts.isolation.begin_sql());
        let settings = set_local(&tx, application_name, opts.lock_timeout_ms);
        let (begun, set, result) = futures_util::join!(begin, settings, work);
        let txid = set.as_ref().ok().copied();
        let result = begun.map_err(ApiError::from).and(set).and(result);
        if tx.finished.get() {
            let lost = tx.commit_unconfirmed.get()
                || (matches!(result, Err(ApiError::Unavailable(_))) && tx.client.is_closed());
            if lost {
                tx.client.discard();
                return self.after_lost_commit(txid, result).await;
            }
            tx.client.ended();
            return result;
        }
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        match tx.client.batch_execute(end).await {
            Ok(()) => {
                tx.client.ended();
                result
            }
            Err(e) => {
                // The connection is in an unknown state: never hand it to another request.
                tx.client.discard();
                if result.is_ok() && e.code().is_none() {
                    return self.after_lost_commit(txid, result).await;
                }
                result.and(Err(e.into()))
            }
        }
    }

    /// The answer for a transaction whose `COMMIT` was sent but whose connection broke before
    /// it was confirmed: `result` if it committed (when rowlock holds it), 503 if it rolled
    /// back, 504 `outcome_unknown` when that cannot be learned.
    async fn after_lost_commit(
        &self,
        txid: Option<i64>,
        result: Result<Reply, ApiError>,
    ) -> Result<Reply, ApiError> {
        let Some(txid) = txid else {
            return Err(outcome::unknown());
        };
        let timeout = self.pool.timeouts().wait.unwrap_or(Duration::from_secs(5));
        match outcome::resolve(&self.pool, txid, timeout).await {
            Some(true) => result.map_err(|_| outcome::committed_without_answer()),
            Some(false) => Err(outcome::rolled_back()),
            None => Err(outcome::unknown()),
        }
    }
}

/// `SET LOCAL` of the request's settings, as parameters (`SET` cannot take one,
/// `set_config(…, is_local => true)` can); they revert by themselves at COMMIT or ROLLBACK.
/// Prepared on every new connection ([`warm_up`]), so they go out in the pipeline at once.
/// Both also read the transaction's id, ahead of every other statement, so that a `COMMIT`
/// whose answer is lost can be looked up ([`outcome`]).
pub const SET_APPLICATION_NAME: &str =
    "SELECT txid_current(), set_config('application_name', $1, true)";
pub const SET_APPLICATION_NAME_AND_LOCK_TIMEOUT: &str = "SELECT txid_current(), \
     set_config('application_name', $1, true), set_config('lock_timeout', $2, true)";

/// Applies the settings; returns the transaction's id.
async fn set_local(
    tx: &Tx,
    application_name: &str,
    lock_timeout_ms: Option<u32>,
) -> Result<i64, ApiError> {
    let rows = match lock_timeout_ms {
        None => {
            let stmt = tx.prepare(SET_APPLICATION_NAME).await?;
            tx.client.query(&stmt, &[&application_name]).await?
        }
        Some(ms) => {
            let stmt = tx.prepare(SET_APPLICATION_NAME_AND_LOCK_TIMEOUT).await?;
            let timeout = format!("{ms}ms");
            tx.client
                .query(&stmt, &[&application_name, &timeout])
                .await?
        }
    };
    rows.first().map(|row| row.get(0)).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("the settings statement answered no row"))
    })
}

/// Prepares, on a new connection, the statements that must never cost a round trip of their
/// own in the middle of a pipeline.
pub async fn warm_up(
    client: &deadpool_postgres::ClientWrapper,
) -> Result<(), tokio_postgres::Error> {
    for sql in [SET_APPLICATION_NAME, SET_APPLICATION_NAME_AND_LOCK_TIMEOUT] {
        client.prepare_cached(sql).await?;
    }
    Ok(())
}

/// Full jitter over an exponential ceiling: 10 ms, 20 ms, 40 ms … capped at 320 ms.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ceiling_ms = 10u64 << attempt.min(5);
    Duration::from_millis(rand::thread_rng().gen_range(1..=ceiling_ms))
}
