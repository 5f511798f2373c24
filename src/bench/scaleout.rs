//! `rowlock bench pgbouncer`: what a transaction pooler costs, and that nothing is lost behind
//! it. In one run on one throwaway PostgreSQL, for each workload and client count, the hammer
//! drives in turn
//!
//! - one `rowlock serve` directly on PostgreSQL (prepared statements, startup options),
//! - three directly on PostgreSQL (what more instances cost without a pooler),
//! - one behind pgbouncer in transaction mode (`--statement-cache off`), and
//! - three behind the same pgbouncer, the hammer spreading its clients over them round-robin,
//!
//! and verifies every run (each counter changed by exactly its acknowledged increments). CPU per
//! request is split between PostgreSQL, pgbouncer, the rowlock processes and the hammer, so the
//! pooler's price per request can be read off the table.

use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::counters::{create_counters, hammer_args, settle};
use super::server::Server;
use super::session::{self, Session};
use super::{cpu, first_group_setting, BenchArgs, DATABASE};
use crate::hammer::{self, Verdict};
use crate::local_cluster::Pgbouncer;

/// pgbouncer's server connections: as many as one instance's pool.
const POOLER_CONNECTIONS: usize = 32;
/// Each instance's pool (behind pgbouncer these are client connections of pgbouncer).
const INSTANCE_POOL: usize = 32;

/// How the hammer reaches PostgreSQL.
#[derive(Debug, Clone, Copy, Serialize)]
enum Setup {
    Direct,
    ThreeDirect,
    OneBehindPgbouncer,
    ThreeBehindPgbouncer,
}

impl Setup {
    const ALL: [Self; 4] = [
        Self::Direct,
        Self::ThreeDirect,
        Self::OneBehindPgbouncer,
        Self::ThreeBehindPgbouncer,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Direct => "1 direct",
            Self::ThreeDirect => "3 direct",
            Self::OneBehindPgbouncer => "1 via pgbouncer",
            Self::ThreeBehindPgbouncer => "3 via pgbouncer",
        }
    }
}

/// One setup, workload and client count.
#[derive(Debug, Serialize)]
struct Row {
    setup: Setup,
    workload: &'static str,
    clients: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Answers other than 200, and transport errors.
    errors: u64,
    verification: String,
    /// CPU per request, in microseconds.
    postgres_us: f64,
    pgbouncer_us: f64,
    rowlock_us: f64,
    hammer_us: f64,
}

/// The processes of one setup.
struct Instances {
    setup: Setup,
    servers: Vec<Server>,
}

/// Runs the scale-out benchmark and prints its table; fails if any verification failed.
pub(super) async fn run(args: &BenchArgs) -> Result<ExitCode> {
    let rows = session::run_in(args, "pgbouncer", async |s| measure_all(args, s).await).await?;
    println!("\n{}", render(&rows));
    session::write_results(&args.out, "scaleout", session::unix_time(), &rows)?;
    let passed = rows
        .iter()
        .all(|r| r.verification == Verdict::Pass.to_string());
    Ok(session::exit_code(passed))
}

async fn measure_all(args: &BenchArgs, session: &Session) -> Result<Vec<Row>> {
    let admin = create_counters(session).await?;
    let url = session.cluster.url(DATABASE);
    let url = url.as_str();
    let bouncer = Pgbouncer::start(url, POOLER_CONNECTIONS).await?;
    let group_commit = first_group_setting(args);
    let mut setups = Vec::new();
    for setup in Setup::ALL {
        let (count, database_url, pooled) = match setup {
            Setup::Direct => (1, url, false),
            Setup::ThreeDirect => (3, url, false),
            Setup::OneBehindPgbouncer => (1, bouncer.url(), true),
            Setup::ThreeBehindPgbouncer => (3, bouncer.url(), true),
        };
        // Behind the pooler: no prepared statements, and LISTEN on a direct connection.
        let env: &[(&str, &str)] = if pooled {
            &[
                ("ROWLOCK_STATEMENT_CACHE", "off"),
                ("ROWLOCK_LISTEN_DATABASE_URL", url),
            ]
        } else {
            &[]
        };
        let mut servers = Vec::new();
        for i in 0..count {
            let name = format!("serve-{}-{i}", setups.len());
            servers.push(
                session
                    .serve(database_url, INSTANCE_POOL, group_commit, &name, env)
                    .await?,
            );
        }
        setups.push(Instances { setup, servers });
    }

    let mut rows = Vec::new();
    for &workload in &args.workloads {
        for &clients in &args.clients {
            for instances in &setups {
                settle(&admin).await?;
                eprintln!(
                    "rowlock  {:<6} {clients:>3} clients, {} …",
                    workload.name(),
                    instances.setup.label()
                );
                let urls: Vec<String> = instances.servers.iter().map(|s| s.url.clone()).collect();
                let mut h = hammer_args(&urls[0], workload, clients, args);
                h.url = urls;
                let pids: Vec<u32> = instances.servers.iter().map(Server::pid).collect();
                let before = Sample::take(&pids, bouncer.pid());
                let report = hammer::execute(&h).await?;
                let after = Sample::take(&pids, bouncer.pid());
                // The hammer also reads every counter before and after the run.
                let requests = report.requests + 2 * report.verification.sum.counters;
                let per = |us: u64| us as f64 / requests.max(1) as f64;
                let d = after.since(&before);
                rows.push(Row {
                    setup: instances.setup,
                    workload: workload.name(),
                    clients,
                    rps: report.throughput,
                    p50_ms: report.latency_ms.p50,
                    p99_ms: report.latency_ms.p99,
                    errors: report.requests - report.statuses.ok,
                    verification: report.verification.verdict.to_string(),
                    postgres_us: per(d.busy.saturating_sub(d.pgbouncer + d.rowlock + d.hammer)),
                    pgbouncer_us: per(d.pgbouncer),
                    rowlock_us: per(d.rowlock),
                    hammer_us: per(d.hammer),
                });
            }
        }
    }
    for instances in setups {
        for server in instances.servers {
            server.stop().await?;
        }
    }
    Ok(rows)
}

/// Cumulative CPU time, in microseconds.
#[derive(Clone, Copy)]
struct Sample {
    busy: u64,
    pgbouncer: u64,
    rowlock: u64,
    hammer: u64,
}

impl Sample {
    fn take(rowlock: &[u32], pgbouncer: u32) -> Self {
        Self {
            busy: cpu::machine_busy(),
            pgbouncer: cpu::process_ticks(pgbouncer),
            rowlock: rowlock.iter().map(|&p| cpu::process_ticks(p)).sum(),
            hammer: cpu::rusage(libc::RUSAGE_SELF),
        }
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            busy: self.busy.saturating_sub(earlier.busy),
            pgbouncer: self.pgbouncer.saturating_sub(earlier.pgbouncer),
            rowlock: self.rowlock.saturating_sub(earlier.rowlock),
            hammer: self.hammer.saturating_sub(earlier.hammer),
        }
    }
}

fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| setup | workload | clients | req/s | × direct | p50 ms | p99 ms | errors | verified | \
         CPU µs/req: PostgreSQL + pgbouncer + rowlock + hammer |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let direct = rows
            .iter()
            .find(|r| {
                matches!(r.setup, Setup::Direct)
                    && r.workload == row.workload
                    && r.clients == row.clients
            })
            .map_or(f64::NAN, |d| row.rps / d.rps);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {direct:.2} | {:.2} | {:.2} | {} | {} | {:.0} + {:.0} + {:.0} + {:.0} |",
            row.setup.label(),
            row.workload,
            row.clients,
            row.rps,
            row.p50_ms,
            row.p99_ms,
            row.errors,
            row.verification,
            row.postgres_us,
            row.pgbouncer_us,
            row.rowlock_us,
            row.hammer_us,
        );
    }
    out
}
