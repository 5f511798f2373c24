//! The benchmark's one table — printed, and written as JSON under `bench/results/` — and the
//! targets of issue 3 checked against it.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::pgbench::PgbenchResult;
use crate::hammer::Report;

/// One workload at one client count (and one rowlock pool size).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub workload: String,
    pub clients: usize,
    pub pool_size: usize,
    pub pgbench: Option<PgbenchResult>,
    pub rowlock_rps: f64,
    pub rowlock_p50_ms: f64,
    pub rowlock_p99_ms: f64,
    /// rowlock req/s ÷ pgbench tps.
    pub ratio: Option<f64>,
    pub verification: String,
    /// Non-200 answers and transport errors during the rowlock run.
    pub rowlock_errors: u64,
    /// Largest VmRSS of `rowlock serve` sampled during this run.
    pub rowlock_rss_mib: f64,
    /// CPU per request during the rowlock run.
    pub rowlock_cpu: super::cpu::PerTransaction,
    pub hammer: Report,
}

/// A target of the issue and whether the measured figures meet it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub measured: String,
    pub met: bool,
}

/// The rows as a fixed-width text table.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>7} {:>5} {:>12} {:>13} {:>6} {:>13} {:>13} {:>8} {:>8} {:>9}",
        "workload",
        "clients",
        "pool",
        "pgbench tps",
        "rowlock req/s",
        "ratio",
        "pgbench p99",
        "rowlock p99",
        "verify",
        "errors",
        "RSS MiB"
    );
    for r in rows {
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>5} {:>12} {:>13.0} {:>6} {:>10} ms {:>10.2} ms {:>8} {:>8} {:>9.1}",
            r.workload,
            r.clients,
            r.pool_size,
            opt(r.pgbench.as_ref().map(|p| p.tps), 0),
            r.rowlock_rps,
            opt(r.ratio, 2),
            opt(r.pgbench.as_ref().map(|p| p.p99_ms), 2),
            r.rowlock_p99_ms,
            r.verification,
            r.rowlock_errors,
            r.rowlock_rss_mib
        );
    }
    out
}

/// Where the CPU went, in microseconds per transaction (PostgreSQL's share includes anything
/// else running on the machine).
pub fn render_cpu(rows: &[Row]) -> String {
    let mut out = String::from(
        "CPU µs per transaction   pgbench: postgres + pgbench   |   rowlock: postgres + serve + hammer\n",
    );
    for r in rows {
        let pg = r.pgbench.as_ref().map(|p| p.cpu).unwrap_or_default();
        let c = r.rowlock_cpu;
        let _ = writeln!(
            out,
            "{:<8} {:>3} clients pool {:>3}   {:>5.0} + {:>4.0} = {:>5.0}   |   {:>5.0} + {:>4.0} + {:>4.0} = {:>5.0}",
            r.workload,
            r.clients,
            r.pool_size,
            pg.postgres_us,
            pg.client_us,
            pg.postgres_us + pg.client_us,
            c.postgres_us,
            c.server_us,
            c.client_us,
            c.postgres_us + c.server_us + c.client_us
        );
    }
    out
}

/// The targets, for the rows that measure them (the default pool size's rows).
pub fn targets(rows: &[Row], max_clients: usize, rss_peak_mib: f64) -> Vec<Target> {
    let mut targets = Vec::new();
    let find = |workload: &str| {
        rows.iter()
            .find(|r| r.workload == workload && r.clients == max_clients && r.pgbench.is_some())
    };
    if let Some(r) = find("hot") {
        let pg = r.pgbench.as_ref().map_or(0.0, |p| p.p99_ms);
        let ratio = r.ratio.unwrap_or(0.0);
        targets.push(Target {
            name: format!("hot, lock=wait, {max_clients} clients: rowlock >= 1.5x pgbench tps, p99 below pgbench's"),
            measured: format!(
                "{ratio:.2}x ({:.0} vs {:.0}); p99 {:.2} ms vs {pg:.2} ms",
                r.rowlock_rps,
                r.pgbench.as_ref().map_or(0.0, |p| p.tps),
                r.rowlock_p99_ms
            ),
            met: ratio >= 1.5 && r.rowlock_p99_ms < pg,
        });
    }
    if let Some(r) = find("spread") {
        let ratio = r.ratio.unwrap_or(0.0);
        targets.push(Target {
            name: format!("spread, {max_clients} clients: rowlock >= 0.8x pgbench tps"),
            measured: format!(
                "{ratio:.2}x ({:.0} vs {:.0})",
                r.rowlock_rps,
                r.pgbench.as_ref().map_or(0.0, |p| p.tps)
            ),
            met: ratio >= 0.8,
        });
    }
    let rss_64 = rows
        .iter()
        .filter(|r| r.clients == max_clients)
        .map(|r| r.rowlock_rss_mib)
        .fold(0.0, f64::max);
    targets.push(Target {
        name: format!("rowlock resident memory under {max_clients} clients <= 64 MiB"),
        measured: format!(
            "max VmRSS {rss_64:.1} MiB during the {max_clients}-client runs; VmHWM {rss_peak_mib:.1} MiB over the whole benchmark"
        ),
        met: rss_64 > 0.0 && rss_64 <= 64.0,
    });
    targets
}
