//! The options of `rowlock hammer`, and the few value types they parse into.
//!
//! Every option is also an environment variable (`ROWLOCK_HAMMER_*`), like the rest of the
//! binary. [`HammerArgs::new`] gives the same defaults (the command line's own) to tests and the
//! benchmark, which call the hammer in-process.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

mod parse;

use super::jobs::JobsArgs;
use super::transfer::TransferArgs;
pub use parse::parse_duration;
use parse::{parse_by, parse_concurrency};

/// Used when neither `--requests` nor `--duration` is given.
pub const DEFAULT_REQUESTS: u64 = 10_000;

/// What `rowlock hammer` loads: counters (the default), the job queue, or multi-row
/// transactions (transfers between accounts, orders taking stock; see [`super::transfer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// Increments of one hot counter or of spread ones, checked for lost updates.
    #[default]
    Counters,
    /// Jobs enqueued, claimed and completed, checked to be completed exactly once.
    Jobs,
    /// Transfers between two accounts in one transaction; the accounts' sum must not move.
    Transfer,
    /// Orders taking stock from several items in one transaction, never below zero.
    Order,
}

/// How each increment protects itself: the server's `lock=` modes, or `If-Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockArg {
    /// `SELECT … FOR UPDATE`, waiting for the row.
    Wait,
    /// `FOR UPDATE NOWAIT`: 423 when the row is locked.
    Nowait,
    /// `FOR UPDATE SKIP LOCKED`: 423 when the row is locked.
    SkipLocked,
    /// One atomic `UPDATE … RETURNING`.
    None,
    /// `If-Match` with the last seen version; on 412 re-read and retry.
    Optimistic,
}

impl LockArg {
    /// The `lock=` query value; `None` for optimistic, where `If-Match` decides.
    pub fn query_value(self) -> Option<&'static str> {
        match self {
            Self::Wait => Some("wait"),
            Self::Nowait => Some("nowait"),
            Self::SkipLocked => Some("skip_locked"),
            Self::None => Some("none"),
            Self::Optimistic => None,
        }
    }
}

/// Options of `rowlock hammer`.
#[derive(Debug, Clone, Args)]
pub struct HammerArgs {
    /// Base URL of the rowlock to hammer. Given several times (or comma-separated), requests go
    /// to the instances in turn and one verification covers them all.
    #[arg(
        long,
        env = "ROWLOCK_URL",
        default_value = "http://127.0.0.1:8080",
        value_delimiter = ','
    )]
    pub url: Vec<String>,

    /// Counter to increment (created with value 0 if missing). With --spread K the counters are
    /// NAME-0 … NAME-{K-1}.
    #[arg(long, env = "ROWLOCK_HAMMER_COUNTER", default_value = "hammer")]
    pub counter: String,

    /// Spread the increments uniformly over this many counters instead of one hot counter.
    #[arg(long, env = "ROWLOCK_HAMMER_SPREAD", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub spread: u32,

    /// Virtual clients: requests in flight at once, each on its own task.
    #[arg(long, short = 'c', env = "ROWLOCK_HAMMER_CONCURRENCY", default_value_t = 16,
          value_parser = parse_concurrency)]
    pub concurrency: usize,

    /// Send exactly this many increments (default 10000 unless --duration is given).
    #[arg(long, short = 'n', env = "ROWLOCK_HAMMER_REQUESTS", conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Issue increments for this long (e.g. 10s, 500ms, 2m), then wait for those in flight.
    #[arg(long, short = 'd', env = "ROWLOCK_HAMMER_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// How each increment locks: wait, nowait, skip_locked, none, or optimistic (If-Match).
    #[arg(long, env = "ROWLOCK_HAMMER_LOCK", value_enum, default_value_t = LockArg::Wait)]
    pub lock: LockArg,

    /// Amount added by each increment (negative decrements).
    #[arg(long, env = "ROWLOCK_HAMMER_BY", default_value_t = 1, allow_negative_numbers = true,
          value_parser = parse_by)]
    pub by: i64,

    /// `lock_timeout_ms` sent with every `lock=wait` increment.
    #[arg(long, env = "ROWLOCK_HAMMER_LOCK_TIMEOUT_MS",
          value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub lock_timeout_ms: Option<u32>,

    /// Record every acknowledged increment on the hot counter and check the history is
    /// linearizable (needs --spread 1).
    #[arg(long, env = "ROWLOCK_HAMMER_CHECK_LINEARIZABLE")]
    pub check_linearizable: bool,

    /// Write the whole report as JSON to this file.
    #[arg(long, env = "ROWLOCK_HAMMER_JSON")]
    pub json: Option<PathBuf>,

    /// Write an SVG of throughput and p99 latency per second to this file.
    #[arg(long, env = "ROWLOCK_HAMMER_CHART")]
    pub chart: Option<PathBuf>,

    /// Give up on one HTTP request after this long (counted as a transport error).
    #[arg(long, env = "ROWLOCK_HAMMER_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// With --lock optimistic: attempts per increment before it is given up as a 412.
    #[arg(long, env = "ROWLOCK_HAMMER_MAX_ATTEMPTS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// Hide the live progress bar.
    #[arg(long, env = "ROWLOCK_HAMMER_NO_PROGRESS")]
    pub no_progress: bool,

    /// Allow a target that is not a loopback address (the hammer is a load generator: by
    /// default it refuses to point at anything but this machine).
    #[arg(long, env = "ROWLOCK_HAMMER_ALLOW_REMOTE")]
    pub allow_remote: bool,

    /// What to load: `counters` (the options above), `jobs` (the job queue), or `transfer` /
    /// `order` (multi-row transactions; see below).
    #[arg(long, env = "ROWLOCK_HAMMER_WORKLOAD", value_enum, default_value_t = WorkloadKind::Counters)]
    pub workload: WorkloadKind,

    /// The options of `--workload jobs`.
    #[command(flatten)]
    pub jobs: JobsArgs,

    /// The options of `--workload transfer` and `--workload order`.
    #[command(flatten)]
    pub transfer: TransferArgs,
}

impl HammerArgs {
    /// The instances' base URLs, taken in turn by the requests of a run.
    pub fn bases(&self) -> super::client::Bases {
        super::client::Bases::new(&self.url)
    }

    /// The command line's defaults, aimed at `url`, without a progress bar.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: vec![url.into()],
            no_progress: true,
            ..crate::cli::defaults()
        }
    }

    /// Connections the HTTP client keeps alive: one per virtual client (two per job worker, which
    /// claims and enqueues).
    pub fn connections(&self) -> usize {
        match self.workload {
            WorkloadKind::Jobs => self.jobs.workers as usize * 2,
            _ => self.concurrency,
        }
    }

    /// The names of the counters this run touches.
    pub fn counter_names(&self) -> Vec<String> {
        if self.spread <= 1 {
            vec![self.counter.clone()]
        } else {
            (0..self.spread)
                .map(|i| format!("{}-{i}", self.counter))
                .collect()
        }
    }

    /// Checks what clap cannot: a usable, loopback URL and a consistent combination.
    pub fn validate(&self) -> Result<()> {
        if self.url.is_empty() {
            bail!("--url names no rowlock");
        }
        for text in &self.url {
            let url =
                reqwest::Url::parse(text).with_context(|| format!("--url {text} is not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") {
                bail!("--url must be http:// or https://");
            }
            if !self.allow_remote && !is_loopback(&url) {
                bail!(
                    "--url {text} is not a loopback address; pass --allow-remote to load another \
                     machine"
                );
            }
        }
        let valid_name = |n: &str| {
            (1..=128).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if self.counter_names().iter().any(|n| !valid_name(n)) {
            bail!("--counter must be 1–128 characters of A-Z a-z 0-9 . _ - (with its -K suffix)");
        }
        if self.check_linearizable && self.spread > 1 {
            bail!("--check-linearizable checks one hot counter: it needs --spread 1");
        }
        if self.by == 0 {
            bail!("--by must not be 0");
        }
        Ok(())
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted_by_default() {
        let mut args = HammerArgs::new("http://10.1.2.3:8080");
        assert!(args.validate().is_err());
        args.allow_remote = true;
        assert!(args.validate().is_ok());
        assert!(HammerArgs::new("http://localhost:1").validate().is_ok());
        assert!(HammerArgs::new("http://[::1]:1").validate().is_ok());
    }

    #[test]
    fn new_gives_the_command_lines_defaults_without_a_progress_bar() {
        let args = HammerArgs::new("http://127.0.0.1:1");
        assert_eq!(args.url, ["http://127.0.0.1:1"]);
        assert!(args.no_progress);
        assert_eq!(
            (args.concurrency, args.max_attempts, args.timeout),
            (16, 100, Duration::from_secs(60))
        );
        assert_eq!(args.workload, WorkloadKind::Counters);
        assert_eq!((args.jobs.workers, args.jobs.jobs), (16, 10_000));
        assert_eq!(
            (args.transfer.accounts, args.transfer.initial),
            (100, 1_000)
        );
    }

    #[test]
    fn spread_counters_are_numbered() {
        let mut args = HammerArgs::new("http://127.0.0.1:8080");
        assert_eq!(args.counter_names(), ["hammer"]);
        args.counter = "c".into();
        args.spread = 3;
        assert_eq!(args.counter_names(), ["c-0", "c-1", "c-2"]);
    }
}
