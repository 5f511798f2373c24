//! Where the CPU goes during a run: the machine's busy time (`/proc/stat`), `rowlock serve`'s
//! (`/proc/<pid>/stat`), this process's (the in-process hammer) and its waited-for children's
//! (pgbench), as microseconds per transaction. PostgreSQL's share is what remains of the
//! machine's busy time, so anything else running on the machine is counted as PostgreSQL.
//!
//! On a 2-core machine the benchmark is CPU-bound: every microsecond the HTTP server and the
//! load generator spend per request is taken from PostgreSQL, so these figures explain ratios.

use serde::{Deserialize, Serialize};

/// Cumulative CPU counters at one instant, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    machine_busy: u64,
    server: u64,
    this_process: u64,
    children: u64,
}

/// CPU per transaction during one run, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct PerTransaction {
    /// PostgreSQL (and anything else on the machine).
    pub postgres_us: f64,
    /// pgbench, or the hammer.
    pub client_us: f64,
    /// `rowlock serve` (0 for pgbench runs).
    pub server_us: f64,
}

impl Snapshot {
    /// Reads the counters now; `server_pid` is `rowlock serve`.
    pub(crate) fn take(server_pid: Option<u32>) -> Self {
        Self {
            machine_busy: machine_busy(),
            server: server_pid.map_or(0, process_ticks),
            this_process: rusage(libc::RUSAGE_SELF),
            children: rusage(libc::RUSAGE_CHILDREN),
        }
    }

    /// The split since `earlier` over `transactions`; the client is this process when
    /// `client_is_child` is false (the hammer), else the children (pgbench).
    pub(crate) fn since(
        &self,
        earlier: &Self,
        transactions: u64,
        client_is_child: bool,
    ) -> PerTransaction {
        let d = |now: u64, then: u64| now.saturating_sub(then) as f64;
        let busy = d(self.machine_busy, earlier.machine_busy);
        let server = d(self.server, earlier.server);
        let client = if client_is_child {
            d(self.children, earlier.children)
        } else {
            d(self.this_process, earlier.this_process)
        };
        let per = |us: f64| us / transactions.max(1) as f64;
        PerTransaction {
            postgres_us: per((busy - server - client).max(0.0)),
            client_us: per(client),
            server_us: per(server),
        }
    }
}

/// The fraction of the machine's CPU busy over the next `window` (before the benchmark starts:
/// anything busy then competes with what is measured).
pub(crate) async fn background_busy(window: std::time::Duration) -> f64 {
    let (busy, total) = (machine_busy(), machine_total());
    tokio::time::sleep(window).await;
    let d_total = machine_total().saturating_sub(total).max(1);
    machine_busy().saturating_sub(busy) as f64 / d_total as f64
}

fn machine_total() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let total: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks_to_us(total)
}

fn ticks_to_us(ticks: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1_000_000 / hz
}

/// Busy time of all CPUs, in microseconds: everything in the first line of /proc/stat but idle and iowait.
pub(crate) fn machine_busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: u64 = fields
        .iter()
        .enumerate()
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        .filter(|(i, _)| !matches!(i, 3 | 4) && *i < 8)
        .map(|(_, v)| v)
        .sum();
    ticks_to_us(busy)
}

/// utime + stime of `pid`, in microseconds (fields 14 and 15 of /proc/<pid>/stat, after the command name).
pub(crate) fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may contain spaces; the fields after it are unambiguous.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    ticks_to_us(fields.iter().sum())
}

/// utime + stime of this process (`RUSAGE_SELF`) or its waited-for children, in microseconds.
pub(crate) fn rusage(who: libc::c_int) -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and has no other effect.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}
