//! `rowlock bench` (hidden; run through `bench/run.sh`): rowlock against the best possible client
//! of the same database, in one run on this machine. Each benchmark is a subcommand:
//!
//! - `counters` (the default): one hot counter and 10,000 spread ones; for each `rowlock serve`
//!   (pool size × group-commit setting), workload and client count, pgbench with rowlock's own
//!   transaction (once), `rowlock hammer` (in-process) and `wrk` with the same workload,
//!   concurrency and duration ([`counters`]);
//! - `transfers`: transfers between random pairs of 1,000 accounts ([`transfer`]);
//! - `jobs`: job claims and completions ([`jobs`]);
//! - `pgbouncer`: one and three instances, directly and behind pgbouncer ([`scaleout`]);
//! - `scripts`: prints the pgbench scripts, built from rowlock's own statements ([`scripts`]).
//!
//! Every benchmark runs in a [`session::Session`] (a throwaway, durable PostgreSQL and a scratch
//! directory), runs its pgbench baseline through one runner ([`pgbench`]), and before every run
//! vacuums its tables and takes a checkpoint, so that no run inherits another's dead rows or pays
//! for its checkpoint.

pub(crate) mod counters;
pub(crate) mod cpu;
pub(crate) mod groups;
pub(crate) mod jobs;
pub(crate) mod measure;
pub(crate) mod pgbench;
pub(crate) mod scaleout;
pub(crate) mod scripts;
pub(crate) mod server;
pub(crate) mod session;
pub(crate) mod table;
pub(crate) mod targets;
pub(crate) mod transfer;
pub(crate) mod transfer_table;
pub(crate) mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use crate::hammer;

const DATABASE: &str = "rowlock_bench";
const HOT: &str = "hot";
const SPREAD_PREFIX: &str = "spread";
/// Spread counters; pgbench's `spread.sql` picks `random(0, 9999)`.
const SPREAD: u32 = 10_000;

/// The two workloads of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Workload {
    /// Every client increments the one counter `hot`.
    Hot,
    /// Each increment goes to a random one of `spread-0` … `spread-9999`.
    Spread,
}

impl Workload {
    /// The workload's name in the tables and the JSON rows, as on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Hot => "hot",
            Self::Spread => "spread",
        }
    }
}

/// `rowlock serve --group-commit on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum GroupSetting {
    /// Concurrent counter changes and job acknowledgements share transactions.
    On,
    /// Every request commits its own transaction.
    Off,
}

impl GroupSetting {
    /// The value of `rowlock serve --group-commit`.
    pub(crate) fn enabled(self) -> bool {
        self == Self::On
    }
}

/// The benchmarks of `rowlock bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Benchmark {
    /// Counter increments, hot and spread, against pgbench (the default).
    Counters,
    /// Transfers between random pairs of 1,000 accounts (`POST /transactions`) against pgbench.
    Transfers,
    /// Job claims and completions at limit 1 and 10 against pgbench's claim transaction.
    Jobs,
    /// Counters from one and three instances, directly and behind pgbouncer in transaction mode.
    Pgbouncer,
    /// Print the pgbench scripts, built from rowlock's own statements.
    Scripts,
}

/// Options of `rowlock bench` (given before or after the benchmark's name).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The benchmark to run; `None` runs the counters benchmark.
    #[command(subcommand)]
    pub benchmark: Option<Benchmark>,
    /// How long each pgbench and each hammer run lasts.
    #[arg(global = true, long, default_value = "10s", value_parser = hammer::args::parse_duration)]
    pub duration: Duration,
    /// Client counts (pgbench clients = hammer concurrency).
    #[arg(global = true, long, value_delimiter = ',', default_value = "1,8,64")]
    pub clients: Vec<usize>,
    /// Counter workloads (`counters` and `pgbouncer`).
    #[arg(
        global = true,
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "hot,spread"
    )]
    pub workloads: Vec<Workload>,
    /// rowlock pool sizes; each gets its own `rowlock serve` (a sweep when several are given).
    #[arg(global = true, long, value_delimiter = ',', default_value = "32")]
    pub pool_size: Vec<usize>,
    /// Group-commit settings of `rowlock serve`; each (pool size × setting) gets its own server
    /// (pgbench still runs once per workload and client count).
    #[arg(
        global = true,
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "on,off"
    )]
    pub group_commit: Vec<GroupSetting>,
    /// HTTP workers of `rowlock serve` (0: one per core).
    #[arg(global = true, long, default_value_t = 0)]
    pub workers: usize,
    /// Skip pgbench (for sweeps of rowlock's own settings).
    #[arg(global = true, long)]
    pub skip_pgbench: bool,
    /// Where the JSON results go.
    #[arg(global = true, long, default_value = "bench/results")]
    pub out: PathBuf,
    /// The rowlock binary to serve with (default: this one).
    #[arg(global = true, long)]
    pub rowlock_bin: Option<PathBuf>,
}

/// Runs the benchmark asked for, prints its table and writes its JSON; fails if any
/// verification failed.
pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    match args.benchmark.unwrap_or(Benchmark::Counters) {
        Benchmark::Counters => counters::run(&args).await,
        Benchmark::Transfers => transfer::run(&args).await,
        Benchmark::Jobs => jobs::run(&args).await,
        Benchmark::Pgbouncer => scaleout::run(&args).await,
        Benchmark::Scripts => {
            print!("{}", scripts::all());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The group-commit setting of servers that do not sweep it (jobs, pgbouncer): the first.
pub fn first_group_setting(args: &BenchArgs) -> bool {
    args.group_commit.first().is_none_or(|g| g.enabled())
}
