//! Forward-only, numbered migrations from `sql/`, embedded in the binary.
//!
//! All pending migrations run in one transaction that first takes a transaction-scoped advisory
//! lock, so several rowlock instances can start at once: one migrates, the others wait and then
//! find nothing left to do.

use anyhow::{Context, Result};

/// `(version, name, sql)`, in order. Append only: an applied migration is never edited.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "counters", include_str!("../../sql/0001_counters.sql")),
    (
        2,
        "idempotency",
        include_str!("../../sql/0002_idempotency.sql"),
    ),
    (
        3,
        "transactions",
        include_str!("../../sql/0003_transactions.sql"),
    ),
    (4, "jobs", include_str!("../../sql/0004_jobs.sql")),
    (5, "locks", include_str!("../../sql/0005_locks.sql")),
    (
        6,
        "jobs_completed_index",
        include_str!("../../sql/0006_jobs_completed_index.sql"),
    ),
    (
        7,
        "counter_versions",
        include_str!("../../sql/0007_counter_versions.sql"),
    ),
    (
        8,
        "job_error_history",
        include_str!("../../sql/0008_job_error_history.sql"),
    ),
    (
        9,
        "jobs_unique_cancel_limits",
        include_str!("../../sql/0009_jobs_unique_cancel_limits.sql"),
    ),
];

/// Arbitrary but fixed: the advisory lock key that serialises migrations.
pub(crate) const MIGRATION_LOCK_KEY: i64 = 0x726f_776c_6f63_6b00; // "rowlock\0"

/// Applies every pending migration; returns how many were applied.
pub async fn run(client: &mut tokio_postgres::Client) -> Result<usize> {
    let server = super::server::identify(client).await?;
    let tx = client.transaction().await?;
    let _ = tx
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get("version"))
        .collect();
    let mut count = 0;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("migration {version:04}_{name} failed"))?;
        let _ = tx
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
        tracing::info!(version, name, "applied migration");
        count += 1;
    }
    tx.commit().await?;
    if let super::server::Server::Citus { citus, .. } = &server {
        let distributed = super::citus::distribute(client).await?;
        tracing::info!(citus = %citus, distributed, "Citus is installed");
    }
    Ok(count)
}
