//! The group-commit issue's targets, checked on the `group=on` rows (the first pool size's when
//! several were swept). Each is judged on the hammer's figures; wrk's ratio is printed next to
//! them as a second opinion from a client that is not rowlock's own.

use serde::{Deserialize, Serialize};

use super::measure::ServerSide;
use super::table::Row;
use super::wrk::WrkResult;

/// Largest resident memory of `rowlock serve` allowed at any time.
pub(crate) const RSS_LIMIT_MIB: f64 = 64.0;

/// A target of the issue and whether the measured figures meet it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Target {
    pub name: String,
    pub measured: String,
    pub met: bool,
}

impl Target {
    /// `[met] name: measured` / `[NOT MET] …`.
    pub(crate) fn line(&self) -> String {
        let met = if self.met { "met" } else { "NOT MET" };
        format!("[{met}] {}: {}", self.name, self.measured)
    }
}

/// `12.31x (15012 vs 1220); wrk 11.02x (13440)`: rowlock against pgbench, and wrk's figure.
pub(crate) fn ratio_figure(rowlock: f64, pgbench: f64, wrk: Option<f64>) -> String {
    let pgbench = pgbench.max(1e-9);
    let mut text = format!("{:.2}x ({rowlock:.0} vs {pgbench:.0})", rowlock / pgbench);
    if let Some(w) = wrk {
        text += &format!("; wrk {:.2}x ({w:.0})", w / pgbench);
    }
    text
}

/// A throughput target: `rowlock ≥ factor × pgbench` at `clients`.
pub(crate) fn throughput(
    what: &str,
    clients: usize,
    factor: f64,
    rowlock: f64,
    pgbench: f64,
    wrk: Option<f64>,
) -> Target {
    Target {
        name: format!("{what}, {clients} clients, group=on: rowlock >= {factor}x pgbench tps"),
        measured: ratio_figure(rowlock, pgbench, wrk),
        met: rowlock >= factor * pgbench,
    }
}

/// Memory: VmRSS sampled during every run and VmHWM of every server at its end.
/// Memory target: the largest resident size sampled during any hammer or wrk run of `runs`, and
/// the peak over the whole benchmark.
pub(crate) fn memory<'a>(
    runs: impl Iterator<Item = (&'a ServerSide, Option<&'a WrkResult>)>,
    peak_mib: f64,
) -> Target {
    let sampled_mib = runs
        .flat_map(|(server, wrk)| [Some(server.rowlock_rss_mib), wrk.map(|w| w.rss_mib)])
        .flatten()
        .fold(0.0, f64::max);
    let most = sampled_mib.max(peak_mib);
    Target {
        name: format!("rowlock resident memory <= {RSS_LIMIT_MIB} MiB throughout"),
        measured: format!(
            "max VmRSS {sampled_mib:.1} MiB sampled during the runs; VmHWM {peak_mib:.1} MiB over the whole benchmark"
        ),
        met: most > 0.0 && most <= RSS_LIMIT_MIB,
    }
}

/// The counter benchmark's targets: hot and spread at `max_clients`, hot at one client, memory.
pub(crate) fn targets(rows: &[Row], max_clients: usize, rss_peak_mib: f64) -> Vec<Target> {
    let mut targets = Vec::new();
    let find = |workload: &str, clients: usize| {
        rows.iter().find(|r| {
            r.group_commit && r.workload == workload && r.clients == clients && r.pgbench.is_some()
        })
    };
    let pg_tps = |r: &Row| r.pgbench.as_ref().map_or(0.0, |p| p.tps);
    let wrk_rps = |r: &Row| r.wrk.as_ref().map(|w| w.rps);
    if let Some(r) = find("hot", max_clients) {
        let mut t = throughput(
            "hot, lock=wait",
            max_clients,
            10.0,
            r.rowlock_rps,
            pg_tps(r),
            wrk_rps(r),
        );
        let pg_p99 = r.pgbench.as_ref().map_or(0.0, |p| p.p99_ms);
        t.name += ", p99 <= pgbench's";
        t.measured += &format!("; p99 {:.2} ms vs {pg_p99:.2} ms", r.rowlock_p99_ms);
        if let Some(w) = &r.wrk {
            t.measured += &format!(" (wrk {:.2} ms)", w.p99_ms);
        }
        t.met &= r.rowlock_p99_ms <= pg_p99;
        targets.push(t);
    }
    if let Some(r) = find("spread", max_clients) {
        targets.push(throughput(
            "spread",
            max_clients,
            1.5,
            r.rowlock_rps,
            pg_tps(r),
            wrk_rps(r),
        ));
    }
    if let Some(r) = find("hot", 1) {
        targets.push(throughput(
            "hot, lock=wait",
            1,
            0.9,
            r.rowlock_rps,
            pg_tps(r),
            wrk_rps(r),
        ));
    }
    let runs = rows.iter().map(|r| (&r.server, r.wrk.as_ref()));
    targets.push(memory(runs, rss_peak_mib));
    targets
}
