//! The one transaction path every mutating request takes:
//! pooled connection → `BEGIN` → lock → mutate → `COMMIT`, or roll back entirely.
//!
//! Three properties matter more than anything else here:
//! - **A transaction always ends.** The work runs in its own task, so it finishes (commit or
//!   rollback) even when the HTTP client goes away and actix drops the handler; a connection is
//!   never handed back to the pool in the middle of a transaction.
//! - **A known outcome.** `BEGIN` and the per-request settings go first and read the
//!   transaction's id (and the server's crash mark); `COMMIT` is never sent before their answer
//!   is in hand, so when the connection breaks with a `COMMIT` in flight, rowlock asks the
//!   database what became of it ([`outcome`]) instead of guessing.
//! - **Few round trips.** The body's statements go out right behind the settings, without
//!   waiting for them (tokio-postgres pipelines requests issued without awaiting each other),
//!   and [`Tx::commit_with`] sends `COMMIT` as soon as the transaction's id has arrived, which is
//!   long before a statement's `COMMIT` could be: a request costs one round trip plus the
//!   client's turn-around, and a row is locked for the database's own work and that turn-around.
//! - **Bounded retries.** Serialization failures (40001) and deadlocks (40P01) run the whole
//!   transaction again, at most `max_retries` times, with jittered exponential backoff.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::statements;
use deadpool_postgres::Pool;
use futures_util::future::LocalBoxFuture;
use rand::Rng;
use tokio::sync::watch;

use super::admission::{Admission, Permit};
use super::citus;
use super::conn::TxConnection;
use super::fencing::{self, Fence};
use super::idempotency::{self, Idempotency, Reply};
use super::locking::Isolation;
use super::outcome::{self, TxIdentity};
use crate::error::ApiError;
use crate::metrics::Metrics;

mod open;
mod settings;

pub use open::Tx;

use settings::set_local;
pub use settings::{warm_up, SET_APPLICATION_NAME, SET_APPLICATION_NAME_AND_LOCK_TIMEOUT};

/// Per-request transaction settings.
#[derive(Debug, Clone, Default)]
pub struct TxOptions {
    /// `isolation=`: the level of the transaction's `BEGIN`.
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
    /// The request this transaction serves (it names the session in `pg_stat_activity`); set
    /// by the routes.
    pub request_id: Option<String>,
    /// The client lets the request share a group-commit transaction (it did not say
    /// `group=off`); [`super::plan`] decides whether it does.
    pub group: bool,
}

/// The database handle the routes share: the pool and the policies of the transaction path.
#[derive(Clone)]
pub struct Db {
    /// Where every transaction takes its connection.
    pub pool: Pool,
    /// How many times a transaction failing with 40001 or 40P01 runs again before the
    /// answer is 409.
    pub max_retries: u32,
    /// How long an idempotency key is remembered.
    pub idempotency_retention: Duration,
    /// The process's metrics, which the transaction path reports to (its retries among them).
    pub metrics: Arc<Metrics>,
    /// Per-row queues in front of the pool.
    pub admission: Arc<Admission>,
    /// The connections' default `lock_timeout`: also bounds the wait for admission.
    pub lock_timeout: Duration,
    /// The group-commit executor; `None` with `--group-commit off`.
    pub group: Option<Arc<super::group::GroupCommit<super::group::Counters>>>,
    /// The job group executor (acknowledgements and claims); `None` with `--group-commit off`.
    pub jobs: Option<Arc<super::group::GroupCommit<super::jobs::group::Jobs>>>,
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
        let request_id = opts.request_id.clone();
        // Its own task: dropping the handler (client gone) must not drop an open transaction.
        actix_web::rt::spawn(async move {
            // Held until the transaction ended.
            let _turn = match &opts.admit {
                Some(row) => Some(db.admit(row, opts.lock_timeout_ms).await?),
                None => None,
            };
            db.run_with_retries(opts, request_id, body).await
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
            match self.run_once(&opts, &application_name, &body).await {
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
        application_name: &str,
        body: &F,
    ) -> Result<Reply, ApiError>
    where
        F: for<'t> Fn(&'t Tx) -> LocalBoxFuture<'t, Result<Reply, ApiError>>,
    {
        let tx = Tx {
            client: TxConnection::new(self.pool.get().await?),
            finished: Cell::new(false),
            commit_unconfirmed: Cell::new(false),
            defer_commit: opts.idempotency.is_some(),
            identity_known: watch::Sender::new(None),
            started: Instant::now(),
            metrics: self.metrics.clone(),
        };
        // BEGIN and the settings, which read the transaction's identity; the body's statements
        // follow without waiting for them, its COMMIT does wait (see `Tx::commit_with`).
        let first_round = async {
            let lock_timeout = opts
                .lock_timeout_ms
                .map_or(self.lock_timeout, |ms| Duration::from_millis(u64::from(ms)));
            let begin_sql = citus::with_lock_timeout(
                statements::begin(opts.isolation.begin_sql()),
                lock_timeout,
            );
            let begin = tx.client.batch_execute(&begin_sql);
            let settings = set_local(&tx, application_name, opts.lock_timeout_ms);
            let (begun, set) = futures_util::join!(begin, settings);
            let identity = begun.map_err(ApiError::from).and(set);
            let _ = tx.identity_known.send_replace(Some(identity.is_ok()));
            identity
        };
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
        // Polled in this order, so sent in this order.
        let (identity, result) = futures_util::join!(first_round, work);
        let identity = match identity {
            Ok(identity) => identity,
            // No COMMIT was sent: nothing can have been applied.
            Err(e) => {
                if tx.client.batch_execute("ROLLBACK").await.is_ok() {
                    tx.client.ended();
                }
                return Err(e);
            }
        };
        if tx.finished.get() {
            let lost = tx.commit_unconfirmed.get()
                || (matches!(result, Err(ApiError::Unavailable(_))) && tx.client.is_closed());
            if lost {
                tx.client.discard();
                return self.after_lost_commit(&identity, result).await;
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
                    return self.after_lost_commit(&identity, result).await;
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
        identity: &TxIdentity,
        result: Result<Reply, ApiError>,
    ) -> Result<Reply, ApiError> {
        let timeout = self.pool.timeouts().wait.unwrap_or(Duration::from_secs(5));
        match outcome::resolve(&self.pool, identity, timeout).await {
            Some(true) => result.map_err(|_| outcome::committed_without_answer()),
            Some(false) => Err(outcome::rolled_back()),
            None => Err(outcome::unknown()),
        }
    }
}

/// Full jitter over an exponential ceiling: 10 ms, 20 ms, 40 ms … capped at 320 ms.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ceiling_ms = 10u64 << attempt.min(5);
    Duration::from_millis(rand::thread_rng().gen_range(1..=ceiling_ms))
}
