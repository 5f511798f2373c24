//! The baseline, the one pgbench runner of every benchmark: pgbench running a script (rowlock's
//! own transaction, [`super::scripts`], or the job claim) straight against PostgreSQL,
//! `-n -M prepared -T <duration> -j 2`.
//!
//! pgbench prints its throughput but no percentiles, so every transaction is logged (`-l`) and
//! the p99 is computed from those logs with the same HDR histogram the hammer uses.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use super::Workload;

/// What one pgbench run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PgbenchResult {
    pub tps: f64,
    pub transactions: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The counters' total change (to compare with `transactions`).
    pub delta: i64,
    /// CPU per transaction during the run.
    pub cpu: super::cpu::PerTransaction,
}

/// Where pgbench connects.
pub(crate) struct Target<'a> {
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    pub database: &'a str,
}

/// The pgbench binary of the cluster's own version when there is one, else the one on PATH.
pub(crate) fn binary() -> PathBuf {
    crate::local_cluster::find_bin_dir()
        .map(|dir| dir.join("pgbench"))
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// Runs `workload` with `clients` clients for `duration`; `work_dir` holds scripts and logs.
pub(crate) async fn run(
    target: &Target<'_>,
    workload: Workload,
    clients: usize,
    duration: Duration,
    work_dir: &Path,
) -> Result<PgbenchResult> {
    let sql = match workload {
        Workload::Hot => super::scripts::hot(),
        Workload::Spread => super::scripts::spread(),
    };
    run_script(target, workload.name(), &sql, clients, duration, work_dir).await
}

/// Runs the script `sql` (called `name` in file names) with `clients` clients for `duration`.
pub(crate) async fn run_script(
    target: &Target<'_>,
    name: &str,
    sql: &str,
    clients: usize,
    duration: Duration,
    work_dir: &Path,
) -> Result<PgbenchResult> {
    let script = work_dir.join(format!("{name}.sql"));
    std::fs::write(&script, sql)?;
    let logs = work_dir.join(format!("log-{name}-{clients}"));
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let threads = clients.min(2);
    let out = Command::new(binary())
        .args(["-n", "-M", "prepared", "-l"])
        .arg(format!("--log-prefix={}", logs.join("tx").display()))
        .args(["-T", &duration.as_secs().max(1).to_string()])
        .args(["-j", &threads.to_string(), "-c", &clients.to_string()])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &target.port.to_string(),
            "-U",
            target.user,
        ])
        .arg("-f")
        .arg(&script)
        .arg(target.database)
        .env("PGPASSWORD", target.password)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run pgbench (is it installed?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {}{}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let tps = field(&stdout, "tps = ").context("pgbench printed no tps")?;
    let transactions =
        field(&stdout, "number of transactions actually processed: ").unwrap_or(0.0) as u64;
    let failed = field(&stdout, "number of failed transactions: ").unwrap_or(0.0) as u64;
    let latency = latency_from_logs(&logs)?;
    let _ = std::fs::remove_dir_all(&logs);
    Ok(PgbenchResult {
        tps,
        transactions,
        failed,
        p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
        delta: 0,
        cpu: Default::default(),
    })
}

/// The number after `prefix` on the first line that starts with it.
fn field(stdout: &str, prefix: &str) -> Option<f64> {
    stdout.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(prefix)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Per-transaction logs: `client_id transaction_no time_us script_no epoch epoch_us …`.
fn latency_from_logs(dir: &Path) -> Result<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new(3)?;
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            // A failed transaction logs "failed" instead of its time: it is not a latency.
            if let Some(micros) = line
                .split_whitespace()
                .nth(2)
                .and_then(|t| t.parse::<u64>().ok())
            {
                histogram.record(micros.max(1))?;
            }
        }
    }
    Ok(histogram)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tps_and_counts_are_read_from_pgbench_output() {
        let out = "transaction type: hot.sql\nnumber of transactions actually processed: 21000\n\
                   number of failed transactions: 0 (0.000%)\nlatency average = 3.0 ms\n\
                   tps = 2100.512 (without initial connection time)\n";
        assert_eq!(field(out, "tps = "), Some(2100.512));
        assert_eq!(
            field(out, "number of transactions actually processed: "),
            Some(21000.0)
        );
        assert_eq!(field(out, "number of failed transactions: "), Some(0.0));
    }
}
