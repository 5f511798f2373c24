//! The transfer benchmark's rows, its table, where the CPU went, and its targets.

use std::fmt::Write;

use serde::Serialize;

use super::measure::ServerSide;
use super::pgbench::PgbenchResult;
use super::table::{cpu_table, last_columns, last_headers, on_off, opt, CpuLine};
use super::targets::{self, Target};
use super::wrk::WrkResult;
use crate::hammer::transfer::TransferReport;
use crate::hammer::Verdict;

/// The target: rowlock ≥ this × pgbench at the largest client count, group commit on.
pub(crate) const TARGET_RATIO: f64 = 2.0;

/// One client count and group-commit setting, both sides.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub clients: usize,
    pub pool_size: usize,
    /// `rowlock serve --group-commit on` (true) or `off`.
    pub group_commit: bool,
    pub pgbench: PgbenchResult,
    /// pgbench's transfers that committed (the rest were refused by the bound).
    pub pgbench_committed: i64,
    /// The balances' sum did not move and none went negative during pgbench's run.
    pub pgbench_verified: bool,
    /// rowlock transactions answered 200 or 409 `bound_violation`, per second.
    pub rowlock_tps: f64,
    pub ratio: f64,
    pub verification: Verdict,
    /// What `rowlock serve` did during the hammer run.
    #[serde(flatten)]
    pub server: ServerSide,
    /// wrk against the same server, after the hammer run (none: wrk is not installed); its
    /// verification: the balances' sum did not move and none is negative.
    pub wrk: Option<WrkResult>,
    pub hammer: TransferReport,
}

impl Row {
    /// pgbench's, the hammer's and wrk's verifications all passed.
    pub(crate) fn passed(&self) -> bool {
        self.verification == Verdict::Pass
            && self.pgbench_verified
            && self.wrk.as_ref().is_none_or(|w| w.verification == "PASS")
    }
}

/// The rows as a fixed-width text table.
pub(crate) fn render(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<8} {:>7} {:>4} {:>5} {:>11} {:>11} {:>6} {:>9} {:>11} {:>11} {:>10} {}\n",
        "workload",
        "clients",
        "pool",
        "group",
        "pgbench tps",
        "rowlock tps",
        "ratio",
        "wrk tps",
        "pgbench p99",
        "rowlock p99",
        "wrk p99",
        last_headers("refusals", 8)
    );
    for r in rows {
        let verify = if r.verification == Verdict::Pass && r.pgbench_verified {
            "PASS"
        } else {
            "FAIL"
        };
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>4} {:>5} {:>11.0} {:>11.0} {:>6.2} {:>9} {:>8.2} ms {:>8.2} ms {:>10} {}",
            "transfer",
            r.clients,
            r.pool_size,
            on_off(r.group_commit),
            r.pgbench.tps,
            r.rowlock_tps,
            r.ratio,
            opt(r.wrk.as_ref().map(|w| w.rps), 0),
            r.pgbench.p99_ms,
            r.hammer.latency_ms.p99,
            r.wrk.as_ref().map_or("-".into(), |w| format!("{:.2} ms", w.p99_ms)),
            last_columns(&r.server, verify, r.wrk.as_ref(), (r.hammer.refusals, 8)),
        );
    }
    out
}

/// CPU per transfer: pgbench's run, the hammer's and, under it, wrk's.
pub(crate) fn render_cpu(rows: &[Row]) -> String {
    let lines: Vec<CpuLine> = rows
        .iter()
        .map(|r| CpuLine {
            label: CpuLine::label("transfer", r.clients, r.pool_size, r.group_commit),
            pgbench: r.pgbench.cpu,
            rowlock: r.server.rowlock_cpu,
            wrk: r.wrk.as_ref().map(|w| w.cpu),
        })
        .collect();
    cpu_table("transfer", &lines)
}

/// Transfers at the largest client count with group commit on, and memory throughout.
pub(crate) fn targets(rows: &[Row], rss_peak_mib: f64) -> Vec<Target> {
    let mut targets = Vec::new();
    let max = rows
        .iter()
        .filter(|r| r.group_commit)
        .max_by_key(|r| r.clients);
    match max {
        Some(r) => {
            let mut t = targets::throughput(
                "transfer",
                r.clients,
                TARGET_RATIO,
                r.rowlock_tps,
                r.pgbench.tps,
                r.wrk.as_ref().map(|w| w.rps),
            );
            t.measured += &format!(
                "; p99 {:.2} ms vs {:.2} ms",
                r.hammer.latency_ms.p99, r.pgbench.p99_ms
            );
            targets.push(t);
        }
        None => targets.push(Target {
            name: format!("transfer, group=on: rowlock >= {TARGET_RATIO}x pgbench tps"),
            measured: "no group=on rows".into(),
            met: false,
        }),
    }
    let runs = rows.iter().map(|r| (&r.server, r.wrk.as_ref()));
    targets.push(targets::memory(runs, rss_peak_mib));
    targets
}
