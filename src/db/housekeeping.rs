//! Background housekeeping: expired idempotency keys and old completed jobs are deleted, in
//! bounded batches so that no single statement holds locks on many rows for long.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::idempotency;

/// How often housekeeping runs, at most.
const INTERVAL: Duration = Duration::from_secs(60);
/// Most completed jobs one statement deletes.
const JOB_BATCH: i64 = 10_000;

const PURGE_JOBS: &str = "DELETE FROM jobs WHERE id IN (
        SELECT id FROM jobs
         WHERE state = 'completed' AND finished_at < now() - make_interval(secs => $1)
         LIMIT $2)";

/// How long things are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub idempotency_keys: Duration,
    pub completed_jobs: Duration,
}

/// Runs forever: once a minute, or once per retention period when that is shorter.
pub async fn run(pool: Pool, retention: Retention) {
    let every = INTERVAL
        .min(retention.idempotency_keys)
        .min(retention.completed_jobs);
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match once(&pool, retention).await {
            Ok((0, 0)) => {}
            Ok((keys, jobs)) => {
                tracing::info!(
                    keys,
                    jobs,
                    "deleted expired idempotency keys and old completed jobs"
                )
            }
            Err(e) => tracing::warn!(error = %e, "housekeeping failed; will try again"),
        }
    }
}

/// One round; returns (keys, jobs) deleted.
async fn once(pool: &Pool, retention: Retention) -> anyhow::Result<(u64, u64)> {
    let client = pool.get().await?;
    let keys = idempotency::purge(&client).await?;
    let secs = retention.completed_jobs.as_secs_f64();
    let mut jobs = 0;
    loop {
        let deleted = client.execute(PURGE_JOBS, &[&secs, &JOB_BATCH]).await?;
        jobs += deleted;
        if deleted < JOB_BATCH as u64 {
            return Ok((keys, jobs));
        }
    }
}
