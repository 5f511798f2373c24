//! Background housekeeping: expired idempotency keys, old completed jobs and old transaction
//! records are deleted, each in bounded batches so that no single statement holds locks on many
//! rows for long, and each on its own, so that one failing does not keep the others from running.

use std::time::Duration;

use crate::db::statements::Conn;
use crate::db::{idempotency, jobs, transactions};
use deadpool_postgres::Pool;

/// How often housekeeping runs, at most.
const INTERVAL: Duration = Duration::from_secs(60);
/// Most rows one statement deletes.
const BATCH: i64 = 10_000;

/// One purge: what it deletes (for the log) and its batched `DELETE`: `$1` is the batch size,
/// `$2` the retention in seconds for rows that do not carry their own expiry.
struct Purge {
    what: &'static str,
    sql: &'static str,
}

const PURGES: [Purge; 4] = [
    Purge {
        what: "expired idempotency keys",
        sql: idempotency::sql::PURGE,
    },
    Purge {
        what: "old completed jobs",
        sql: jobs::sql::PURGE_COMPLETED,
    },
    Purge {
        what: "old cancelled jobs",
        sql: jobs::sql::PURGE_CANCELLED,
    },
    Purge {
        what: "old transaction records",
        sql: transactions::sql::PURGE,
    },
];

/// How long things are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// How long an idempotency key's answer is kept (each key carries its own expiry; this
    /// only shortens the purge interval).
    pub idempotency_keys: Duration,
    /// How long a completed or cancelled job is kept after it finished.
    pub completed_jobs: Duration,
    /// How long the record of a committed transaction is kept.
    pub transactions: Duration,
}

impl Retention {
    /// The retention of each of [`PURGES`], in order.
    fn of(&self) -> [Duration; 4] {
        [
            self.idempotency_keys,
            self.completed_jobs,
            self.completed_jobs,
            self.transactions,
        ]
    }
}

/// Runs forever: once a minute, or once per retention period when that is shorter.
pub async fn run(pool: Pool, retention: Retention) {
    let every = retention.of().into_iter().fold(INTERVAL, Duration::min);
    let mut tick = tokio::time::interval(every);
    loop {
        let _ = tick.tick().await;
        for (purge, keep) in PURGES.iter().zip(retention.of()) {
            match once(&pool, purge, keep).await {
                Ok(0) => {}
                Ok(rows) => tracing::info!(rows, "deleted {}", purge.what),
                Err(e) => {
                    tracing::warn!(error = %e, "deleting {} failed; will try again", purge.what)
                }
            }
        }
    }
}

/// One purge, batch after batch; returns how many rows it deleted.
async fn once(pool: &Pool, purge: &Purge, keep: Duration) -> anyhow::Result<u64> {
    let pooled = pool.get().await?;
    let client = Conn::outside(&pooled);
    let secs = keep.as_secs_f64();
    let stmt = client.prepare(purge.sql).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&BATCH, &secs];
    // The keys' purge takes only the batch size.
    let params = &params[..stmt.param_count()];
    let mut rows = 0;
    loop {
        let deleted = client.execute(&stmt, params).await?;
        rows += deleted;
        if deleted < BATCH as u64 {
            return Ok(rows);
        }
    }
}
