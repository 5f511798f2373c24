//! `rowlock hammer --workload transfer` and `--workload order`: multi-row transactions
//! (`POST /transactions`) under load, verified.
//!
//! - **transfer**: `--accounts K` balances `account-0` … `account-{K-1}`, each reset to
//!   `--initial` with `min: 0`; every request moves a random amount (1 … `--max-amount`) between
//!   a random pair of distinct accounts. At the end the sum of the balances must be unchanged,
//!   no balance negative, and each account's change must equal the acknowledged transfers'.
//! - **order**: `--items K` stock levels `item-0` … `item-{K-1}` (`--initial`, `min: 0`); every
//!   request is an order of `--lines L` distinct random items, each taking 1 … `--max-amount`.
//!   At the end no stock may be negative and, for every item, initial − final must equal the
//!   quantities of the acknowledged (200) orders containing it.
//!
//! A 409 `bound_violation` is a refusal, not an error: it must have changed nothing, which the
//! per-counter check proves. A request whose answer never came (or was an unexpected 5xx) may or
//! may not have committed; when such requests can explain a difference the verdict is
//! INCONCLUSIVE, as for the counter workload.
//!
//! [`accounts`] sets up and reads the counters, [`load`] sends the transactions, [`check`] holds
//! the invariants.

pub(crate) mod accounts;
pub mod check;
pub(crate) mod load;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::args::{LockArg, WorkloadKind};
use super::load::Budget;
use super::report::{Percentiles, StatusCounts};
use super::workload;
use super::{HammerArgs, Verdict};
use check::Checks;

/// Options of the transfer and order workloads.
#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// --workload transfer: accounts `account-0` … `account-{K-1}` (at least 2).
    #[arg(long, env = "ROWLOCK_HAMMER_ACCOUNTS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    pub accounts: u32,
    /// --workload order: items `item-0` … `item-{K-1}`.
    #[arg(long, env = "ROWLOCK_HAMMER_ITEMS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub items: u32,
    /// --workload order: distinct items per order (at most --items, at most 100).
    #[arg(long, env = "ROWLOCK_HAMMER_LINES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub lines: u32,
    /// Balance / stock every account or item is reset to (with `min: 0`) before the run.
    #[arg(long, env = "ROWLOCK_HAMMER_INITIAL", default_value_t = 1_000,
          value_parser = clap::value_parser!(i64).range(0..=1_000_000_000_000))]
    pub initial: i64,
    /// Largest transfer amount / order line quantity; each is random in 1 … this
    /// (default 100 for transfers, 5 for orders).
    #[arg(long, env = "ROWLOCK_HAMMER_MAX_AMOUNT",
          value_parser = clap::value_parser!(i64).range(1..=1_000_000_000))]
    pub max_amount: Option<i64>,
}

impl Default for TransferArgs {
    /// The command line's defaults.
    fn default() -> Self {
        crate::cli::defaults()
    }
}

impl TransferArgs {
    /// The counters the workload touches.
    pub fn names(&self, workload: WorkloadKind) -> Vec<String> {
        let (prefix, n) = match workload {
            WorkloadKind::Order => ("item", self.items),
            _ => ("account", self.accounts),
        };
        (0..n).map(|i| format!("{prefix}-{i}")).collect()
    }

    /// The largest amount one op moves.
    pub fn max_amount(&self, workload: WorkloadKind) -> i64 {
        let default = if workload == WorkloadKind::Order {
            5
        } else {
            100
        };
        self.max_amount.unwrap_or(default)
    }
}

/// What a transfer or order run measured and concluded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferReport {
    /// `transfer` or `order`.
    pub workload: WorkloadKind,
    /// Accounts (transfers) or items (orders) the transactions moved amounts between.
    pub counters: u32,
    /// Counters each transaction changes: 2 for a transfer, `--lines` for an order.
    pub lines: u32,
    /// Balance or stock every counter was reset to before the run (`--initial`).
    pub initial: i64,
    /// Largest amount one transfer or order line moved; each is random in 1 … this.
    pub max_amount: i64,
    /// Virtual clients, i.e. transactions in flight at once (`--concurrency`).
    pub concurrency: usize,
    /// From the first request sent to the last answer received.
    pub elapsed_secs: f64,
    /// Transactions issued ([`StatusCounts::total`]).
    pub requests: u64,
    /// Every transaction's answer, by status.
    pub statuses: StatusCounts,
    /// 409 `bound_violation`: refused, nothing changed (part of `statuses.409`).
    pub refusals: u64,
    /// Acknowledged (200) transactions per second.
    pub throughput: f64,
    /// Transactions that ran to an answer of 200 or 409 `bound_violation`, per second.
    pub completed_per_sec: f64,
    /// Each transaction's latency, from its request to its answer.
    pub latency_ms: Percentiles,
    /// What the checks against the counters' balances found.
    pub checks: Checks,
    /// The checks' verdict.
    pub verdict: Verdict,
}

impl std::fmt::Display for TransferReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.statuses;
        let what = match self.workload {
            WorkloadKind::Order => format!(
                "orders of {} lines over {} items",
                self.lines, self.counters
            ),
            _ => format!("transfers between {} accounts", self.counters),
        };
        writeln!(
            f,
            "{what}, initial {} each, amounts 1…{}, {} clients",
            self.initial, self.max_amount, self.concurrency
        )?;
        crate::hammer::report::write_requests(f, self.requests, self.elapsed_secs)?;
        writeln!(
            f,
            "statuses    200: {}  409: {} ({} bound_violation)  423: {}  503: {}  {}",
            s.ok,
            s.conflict,
            self.refusals,
            s.locked,
            s.unavailable,
            s.others()
        )?;
        writeln!(
            f,
            "throughput  {:.1} acknowledged transactions/s ({:.1}/s with refusals)",
            self.throughput, self.completed_per_sec
        )?;
        writeln!(f, "latency ms  {}", self.latency_ms)?;
        writeln!(f, "{}", self.checks)?;
        write!(f, "verdict     {}", self.verdict)
    }
}

/// The accounts or items of a run, their balances before it, and what each transaction does.
pub struct Transfers {
    names: Vec<String>,
    client: load::Client,
    before: Vec<i64>,
    plan: load::Plan,
}

impl workload::Workload for Transfers {
    type Output = load::RunOutput;
    type Report = TransferReport;

    async fn prepare(args: &HammerArgs, http: &reqwest::Client) -> Result<Self> {
        let workload = args.workload;
        let t = &args.transfer;
        if !matches!(workload, WorkloadKind::Transfer | WorkloadKind::Order) {
            bail!("not a transaction workload: {workload:?}");
        }
        if workload == WorkloadKind::Order && t.lines > t.items {
            bail!("--lines {} is more than --items {}", t.lines, t.items);
        }
        if args.lock == LockArg::Optimistic {
            bail!("--lock optimistic applies to single counters, not to transactions");
        }
        let names = t.names(workload);
        let client = load::Client::new(args, http.clone())?;
        let before = accounts::reset_and_read(&client, &names, t.initial)
            .await
            .context("cannot set up the counters before the run")?;
        let plan = load::Plan {
            workload,
            counters: names.len(),
            lines: t.lines as usize,
            max_amount: t.max_amount(workload),
        };
        Ok(Self {
            names,
            client,
            before,
            plan,
        })
    }

    async fn load(&self, args: &HammerArgs, budget: Budget) -> Result<load::RunOutput> {
        load::run(
            &self.client,
            self.plan,
            &self.names,
            args.concurrency,
            budget,
        )
        .await
    }

    async fn verify(self, args: &HammerArgs, out: load::RunOutput) -> Result<TransferReport> {
        let (workload, t) = (args.workload, &args.transfer);
        let after = accounts::read_all(&self.client, &self.names)
            .await
            .context("cannot read the counters after the run")?;
        let checks = Checks::new(workload, &self.names, &self.before, &after, &out);
        let elapsed_secs = out.elapsed.as_secs_f64().max(1e-9);
        Ok(TransferReport {
            workload,
            counters: self.names.len() as u32,
            lines: if workload == WorkloadKind::Order {
                t.lines
            } else {
                2
            },
            initial: t.initial,
            max_amount: self.plan.max_amount,
            concurrency: args.concurrency,
            elapsed_secs,
            requests: out.statuses.total(),
            refusals: out.refusals,
            throughput: out.statuses.ok as f64 / elapsed_secs,
            completed_per_sec: (out.statuses.ok + out.refusals) as f64 / elapsed_secs,
            latency_ms: Percentiles::of(&out.latency),
            verdict: checks.verdict,
            checks,
            statuses: out.statuses,
        })
    }
}

impl workload::Report for TransferReport {
    fn verdict(&self) -> Verdict {
        self.verdict
    }
}

/// Runs the transfer or order workload and its verification and returns the report.
pub async fn execute(args: &HammerArgs) -> Result<TransferReport> {
    workload::execute::<Transfers>(args).await
}
