//! The counter workload's report: what was asked, what came back, how fast, and whether any
//! update was lost. The same structure is printed, written as JSON (`--json`) and read back by
//! tests and the benchmark.

use std::fmt::{self, Display};

use serde::{Deserialize, Serialize};

use super::linearizable::Linearizability;
use super::load::Second;
use super::verify::SumCheck;
use crate::hammer::report::{Percentiles, StatusCounts};
use crate::hammer::{HammerArgs, LockArg, Verdict};

/// The run's settings, as the report records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The instances' base URLs (`--url`), comma-separated.
    pub url: String,
    /// The hot counter's name, or the prefix of the spread counters (`--counter`).
    pub counter: String,
    /// Counters the increments were spread over (`--spread`); 1 is one hot counter.
    pub spread: u32,
    /// Virtual clients, i.e. increments in flight at once (`--concurrency`).
    pub concurrency: usize,
    /// `--requests` as given; `None` for a timed run, or for the default budget of 10,000.
    pub requests: Option<u64>,
    /// `--duration` in seconds; `None` when the run had a request budget instead.
    pub duration_secs: Option<f64>,
    /// How each increment locked its row (`--lock`).
    pub lock: LockArg,
    /// The amount each increment added (`--by`; negative decrements).
    pub by: i64,
    /// The `lock_timeout_ms` sent with `lock=wait` increments; `None` when none was sent.
    pub lock_timeout_ms: Option<u32>,
    /// Whether the history of the hot counter was checked for linearizability.
    pub check_linearizable: bool,
}

impl From<&HammerArgs> for Config {
    fn from(a: &HammerArgs) -> Self {
        Self {
            url: a.url.join(","),
            counter: a.counter.clone(),
            spread: a.spread,
            concurrency: a.concurrency,
            requests: a.requests,
            duration_secs: a.duration.map(|d| d.as_secs_f64()),
            lock: a.lock,
            by: a.by,
            lock_timeout_ms: a.lock_timeout_ms,
            check_linearizable: a.check_linearizable,
        }
    }
}

/// Both checks and the verdict they add up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The lost-update check: the counters' change against the acknowledged increments.
    pub sum: SumCheck,
    /// The history check; `None` unless `--check-linearizable` was given.
    pub linearizability: Option<Linearizability>,
    /// The run's verdict: the sum check's, unless the history is not linearizable or rowlock
    /// answered 500 at least once (then FAIL).
    pub verdict: Verdict,
}

impl Verification {
    /// `internal_errors`: 500 answers. A 500 is a bug in rowlock by contract, so any of them
    /// fails the run whatever the sums say.
    pub fn new(
        sum: SumCheck,
        linearizability: Option<Linearizability>,
        internal_errors: u64,
    ) -> Self {
        let verdict = match (&sum.verdict, &linearizability) {
            _ if internal_errors > 0 => Verdict::Fail,
            (_, Some(l)) if !l.linearizable => Verdict::Fail,
            (v, _) => *v,
        };
        Self {
            sum,
            linearizability,
            verdict,
        }
    }
}

/// One second of the run, for the chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the start of the run: this point covers `[second, second + 1)`.
    pub second: u64,
    /// Acknowledged increments completed during this second.
    pub acknowledged: u64,
    /// Increments that got their final answer during this second, whatever it was.
    pub completed: u64,
    /// The 99th percentile latency of those increments, in milliseconds.
    pub p99_ms: f64,
}

impl TimelinePoint {
    /// One point per second of the load's timeline, numbered from 0.
    pub(crate) fn of(timeline: &[Second]) -> Vec<Self> {
        timeline
            .iter()
            .enumerate()
            .map(|(i, s)| Self {
                second: i as u64,
                acknowledged: s.acknowledged,
                completed: s.completed,
                p99_ms: Percentiles::of(&s.latency).p99,
            })
            .collect()
    }
}

/// Everything `rowlock hammer` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The settings the run was made with.
    pub config: Config,
    /// From the first request sent to the last answer received.
    pub elapsed_secs: f64,
    /// Increments issued ([`StatusCounts::total`]), each counted once however often it was
    /// retried.
    pub requests: u64,
    /// Every increment's final answer, by status.
    pub statuses: StatusCounts,
    /// Increments answered 200: committed, so the counters must have moved by exactly these.
    pub acknowledged: u64,
    /// With `--lock optimistic`: attempts repeated after a 412 (an increment sent three times
    /// counts two).
    pub optimistic_retries: u64,
    /// Acknowledged increments per second of `elapsed_secs`.
    pub throughput: f64,
    /// Each increment's latency, all its attempts included.
    pub latency_ms: Percentiles,
    /// What the checks against the server's state found.
    pub verification: Verification,
    /// Second by second, for the chart (`--chart`).
    pub timeline: Vec<TimelinePoint>,
}

impl Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let s = &self.statuses;
        let target = if c.spread > 1 {
            format!("{} counters {}-0…{}", c.spread, c.counter, c.spread - 1)
        } else {
            format!("counter '{}'", c.counter)
        };
        writeln!(
            f,
            "{target}, lock={}, by {}, {} clients",
            c.lock.query_value().unwrap_or("optimistic"),
            c.by,
            c.concurrency
        )?;
        crate::hammer::report::write_requests(f, self.requests, self.elapsed_secs)?;
        writeln!(
            f,
            "statuses    200: {}  409: {}  412: {}  423: {}  503: {}  {}",
            s.ok,
            s.conflict,
            s.precondition_failed,
            s.locked,
            s.unavailable,
            s.others()
        )?;
        if c.lock == LockArg::Optimistic {
            writeln!(
                f,
                "retries     {} optimistic retries after 412",
                self.optimistic_retries
            )?;
        }
        writeln!(
            f,
            "throughput  {:.1} acknowledged increments/s",
            self.throughput
        )?;
        writeln!(f, "latency ms  {}", self.latency_ms)?;
        let sum = &self.verification.sum;
        writeln!(
            f,
            "sum check   {}: {} counters changed by {}, acknowledged increments add up to {}{}",
            sum.verdict,
            sum.counters,
            sum.observed_delta,
            sum.expected_delta,
            if sum.unknown_outcomes > 0 {
                format!(" ({} increments of unknown outcome)", sum.unknown_outcomes)
            } else {
                String::new()
            }
        )?;
        if let Some(lin) = &self.verification.linearizability {
            writeln!(
                f,
                "linearizable {}: {} increments, {} duplicate values, {} real-time order violations",
                if lin.linearizable { "PASS" } else { "FAIL" },
                lin.operations,
                lin.duplicate_values,
                lin.order_violations
            )?;
            if let Some(example) = &lin.example {
                writeln!(f, "             e.g. {example}")?;
            }
        }
        write!(f, "verdict     {}", self.verification.verdict)
    }
}
