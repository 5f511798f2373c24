//! The benchmark's one table — printed, and written as JSON under `bench/results/` — and where
//! the CPU went. The targets checked against it are in [`super::targets`].

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::cpu::PerTransaction;
use super::groups;
use super::measure::ServerSide;
use super::pgbench::PgbenchResult;
use super::wrk::WrkResult;
use crate::hammer::Report;

/// One workload at one client count (and one rowlock pool size and group-commit setting).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Row {
    pub workload: String,
    pub clients: usize,
    pub pool_size: usize,
    /// `rowlock serve --group-commit on` (true) or `off`.
    pub group_commit: bool,
    pub pgbench: Option<PgbenchResult>,
    pub rowlock_rps: f64,
    pub rowlock_p50_ms: f64,
    pub rowlock_p99_ms: f64,
    /// rowlock req/s ÷ pgbench tps.
    pub ratio: Option<f64>,
    pub verification: String,
    /// Non-200 answers and transport errors during the rowlock run.
    pub rowlock_errors: u64,
    /// What `rowlock serve` did during the hammer run.
    #[serde(flatten)]
    pub server: ServerSide,
    /// wrk against the same server, after the hammer run (none: wrk is not installed).
    pub wrk: Option<WrkResult>,
    pub hammer: Report,
}

/// `-` for nothing, else `digits` decimals.
pub(crate) fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
}

/// `on` / `off`.
pub(crate) fn on_off(group_commit: bool) -> &'static str {
    if group_commit {
        "on"
    } else {
        "off"
    }
}

/// The wrk run's verdict, `-` when there was none.
pub(crate) fn wrk_verdict(wrk: Option<&WrkResult>) -> &str {
    wrk.map_or("-", |w| w.verification.as_str())
}

/// The rows as a fixed-width text table.
pub(crate) fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>7} {:>4} {:>5} {:>11} {:>13} {:>6} {:>9} {:>11} {:>11} {:>10} {}",
        "workload",
        "clients",
        "pool",
        "group",
        "pgbench tps",
        "rowlock req/s",
        "ratio",
        "wrk req/s",
        "pgbench p99",
        "rowlock p99",
        "wrk p99",
        last_headers("errors", 6)
    );
    for r in rows {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} ms"));
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>4} {:>5} {:>11} {:>13.0} {:>6} {:>9} {:>11} {:>11} {:>10} {}",
            r.workload,
            r.clients,
            r.pool_size,
            on_off(r.group_commit),
            opt(r.pgbench.as_ref().map(|p| p.tps), 0),
            r.rowlock_rps,
            opt(r.ratio, 2),
            opt(r.wrk.as_ref().map(|w| w.rps), 0),
            ms(r.pgbench.as_ref().map(|p| p.p99_ms)),
            ms(Some(r.rowlock_p99_ms)),
            ms(r.wrk.as_ref().map(|w| w.p99_ms)),
            last_columns(
                &r.server,
                &r.verification,
                r.wrk.as_ref(),
                (r.rowlock_errors, 6)
            ),
        );
    }
    out
}

/// The headers of [`last_columns`], the count's called `count` (`width` characters).
pub(crate) fn last_headers(count: &str, width: usize) -> String {
    format!(
        "{:>7} {:>7} {:>6} {:>6} {count:>width$} {:>7}",
        "grp p50", "grp p99", "verify", "wrk", "RSS MiB"
    )
}

/// The columns every table ends with: group sizes p50 and p99, the run's and wrk's verdicts, a
/// count (`count.0`, right-aligned in `count.1` characters) and the resident memory in MiB.
pub(crate) fn last_columns(
    server: &ServerSide,
    verdict: &str,
    wrk: Option<&WrkResult>,
    count: (u64, usize),
) -> String {
    let (count, width) = count;
    format!(
        "{:>7} {:>7} {verdict:>6} {:>6} {count:>width$} {:>7.1}",
        groups::show(server.group_size.map(|g| g.p50)),
        groups::show(server.group_size.map(|g| g.p99)),
        wrk_verdict(wrk),
        server.rowlock_rss_mib
    )
}

/// Where the CPU went, in microseconds per transaction (PostgreSQL's share includes anything
/// else running on the machine): one line per row, and under it one for its wrk run.
pub(crate) fn render_cpu(rows: &[Row]) -> String {
    let lines: Vec<CpuLine> = rows
        .iter()
        .map(|r| CpuLine {
            label: CpuLine::label(&r.workload, r.clients, r.pool_size, r.group_commit),
            pgbench: r.pgbench.as_ref().map(|p| p.cpu).unwrap_or_default(),
            rowlock: r.server.rowlock_cpu,
            wrk: r.wrk.as_ref().map(|w| w.cpu),
        })
        .collect();
    cpu_table("transaction", &lines)
}

/// One row of a CPU table.
pub(crate) struct CpuLine {
    pub label: String,
    pub pgbench: PerTransaction,
    pub rowlock: PerTransaction,
    pub wrk: Option<PerTransaction>,
}

impl CpuLine {
    /// `<workload> <clients> clients pool <size> group on|off`.
    pub(crate) fn label(
        workload: &str,
        clients: usize,
        pool_size: usize,
        group_commit: bool,
    ) -> String {
        format!(
            "{workload:<8} {clients:>3} clients pool {pool_size:>3} group {:<3}",
            on_off(group_commit)
        )
    }
}

/// `label   pgbench   |   rowlock`, and under it `wrk   |   wrk's` when there was a wrk run.
pub(crate) fn cpu_table(unit: &str, lines: &[CpuLine]) -> String {
    let mut out = format!(
        "CPU µs per {unit}: pgbench = postgres + pgbench   |   rowlock = postgres + serve + hammer \
         (next line: wrk = postgres + serve + wrk)\n"
    );
    let width = lines.iter().map(|l| l.label.chars().count()).max();
    let width = width.unwrap_or(0);
    for l in lines {
        let pg = l.pgbench;
        let _ = writeln!(
            out,
            "{:<width$}   {:>5.0} + {:>4.0} = {:>5.0}   |   {}",
            l.label,
            pg.postgres_us,
            pg.client_us,
            pg.postgres_us + pg.client_us,
            three(&l.rowlock)
        );
        if let Some(w) = &l.wrk {
            let _ = writeln!(out, "{:<width$}   {:>20}   |   {}", "", "wrk", three(w));
        }
    }
    out
}

/// `postgres + serve + client = total`.
pub(crate) fn three(c: &PerTransaction) -> String {
    format!(
        "{:>5.0} + {:>4.0} + {:>4.0} = {:>5.0}",
        c.postgres_us,
        c.server_us,
        c.client_us,
        c.postgres_us + c.server_us + c.client_us
    )
}
