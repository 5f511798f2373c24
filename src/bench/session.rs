//! What every benchmark runs in: the rowlock binary to serve with, a scratch directory and a
//! throwaway, durable PostgreSQL — started before the first measurement and stopped (the
//! directory removed) after the last one, whatever happened in between — and where its results
//! go.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use super::pgbench;
use super::server::Server;
use super::BenchArgs;
use crate::local_cluster::{Durability, LocalCluster, SUPERUSER};

/// One benchmark's processes and files.
pub(crate) struct Session {
    /// The `rowlock` binary each `rowlock serve` runs.
    pub binary: PathBuf,
    /// Scripts, logs and per-run files; removed at the end.
    pub dir: PathBuf,
    pub cluster: LocalCluster,
    /// HTTP workers of each `rowlock serve` (0: one per core).
    workers: usize,
}

impl Session {
    /// Starts `rowlock serve` on `database_url` with `pool_size` connections and group commit on
    /// or off, logging to `<name>.log` in the scratch directory, with `env` added.
    pub(crate) async fn serve(
        &self,
        database_url: &str,
        pool_size: usize,
        group_commit: bool,
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<Server> {
        let log = self.dir.join(format!("{name}.log"));
        Server::start(
            &self.binary,
            database_url,
            pool_size,
            self.workers,
            group_commit,
            &log,
            env,
        )
        .await
    }

    /// Where pgbench connects to reach `database` on the session's PostgreSQL.
    pub(crate) fn pgbench_target<'a>(&'a self, database: &'a str) -> pgbench::Target<'a> {
        pgbench::Target {
            port: self.cluster.port(),
            user: SUPERUSER,
            password: self.cluster.password(),
            database,
        }
    }

    /// A fresh, migrated `database` on the session's PostgreSQL, and an admin connection to it.
    pub(crate) async fn database(&self, database: &str) -> Result<tokio_postgres::Client> {
        let url = self.cluster.url(database);
        crate::db::ensure_database(&self.cluster.url("postgres"), database).await?;
        let _applied = crate::startup::migrate(&url).await?;
        crate::db::connect(&url).await
    }
}

/// Runs `body` in a new session named `what` (its scratch directory's name), and stops the
/// session's PostgreSQL and removes its directory afterwards, also when `body` failed.
pub(crate) async fn run_in<T>(
    args: &BenchArgs,
    what: &str,
    body: impl AsyncFnOnce(&Session) -> Result<T>,
) -> Result<T> {
    let binary = match &args.rowlock_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("cannot locate the rowlock binary")?,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let dir = std::env::temp_dir().join(format!("rowlock-bench-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    eprintln!("starting a throwaway PostgreSQL …");
    let cluster =
        tokio::task::spawn_blocking(|| LocalCluster::start_throwaway(Durability::Durable))
            .await??;
    let session = Session {
        binary,
        dir,
        cluster,
        workers: args.workers,
    };
    let outcome = body(&session).await;
    let Session { dir, cluster, .. } = session;
    tokio::task::spawn_blocking(move || cluster.stop()).await?;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// Seconds since the Unix epoch: the name of a results file.
pub(crate) fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `results` as `<prefix>-<unix time>.json` and `<prefix>-latest.json` under `out`.
pub(crate) fn write_results(
    out: &Path,
    prefix: &str,
    unix_time: u64,
    results: &impl Serialize,
) -> Result<()> {
    let json = serde_json::to_string_pretty(results)? + "\n";
    let path = out.join(format!("{prefix}-{unix_time}.json"));
    std::fs::write(&path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::write(out.join(format!("{prefix}-latest.json")), &json)?;
    println!("results written to {}", path.display());
    Ok(())
}

/// The benchmark's exit code: success only when every verification passed.
pub(crate) fn exit_code(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
