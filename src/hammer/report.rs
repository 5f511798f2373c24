//! What every workload's report is made of: answers by status, latency percentiles and the
//! verdict.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Final answers by status. Every increment is counted exactly once, under its last answer
/// (an optimistic increment retried after 412s counts once, under 200 if it got through).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    /// 200: the request committed; the only answer that counts as acknowledged.
    #[serde(rename = "200")]
    pub ok: u64,
    /// 409: refused, nothing changed (a bound, a stale token, or a serialization failure or
    /// deadlock still failing after the server's retries).
    #[serde(rename = "409")]
    pub conflict: u64,
    /// 412: `If-Match` named a stale version (optimistic increments out of attempts).
    #[serde(rename = "412")]
    pub precondition_failed: u64,
    /// 423: the row was locked and the request asked not to wait (or its lock timeout ran out).
    #[serde(rename = "423")]
    pub locked: u64,
    /// 503: nothing was applied (database unreachable, or no pool connection in time).
    #[serde(rename = "503")]
    pub unavailable: u64,
    /// Any other status, total; broken down in `other_statuses`.
    pub other: u64,
    /// The answers counted in `other`, by status code; a 500 among them fails the run.
    pub other_statuses: BTreeMap<u16, u64>,
    /// No HTTP answer at all (connection refused or reset, timeout).
    pub transport_errors: u64,
    /// Increments that may or may not have committed: transport errors and unexpected 5xx
    /// answers on the increment itself.
    pub unknown_outcomes: u64,
}

impl StatusCounts {
    /// Counts one final answer; `None` is a transport error.
    pub fn record(&mut self, status: Option<u16>) {
        match status {
            Some(200) => self.ok += 1,
            Some(409) => self.conflict += 1,
            Some(412) => self.precondition_failed += 1,
            Some(423) => self.locked += 1,
            Some(503) => self.unavailable += 1,
            Some(other) => {
                self.other += 1;
                *self.other_statuses.entry(other).or_default() += 1;
            }
            None => self.transport_errors += 1,
        }
    }

    /// The tail of a report's statuses line: the other statuses and the transport errors.
    pub fn others(&self) -> String {
        let detail = if self.other_statuses.is_empty() {
            String::new()
        } else {
            format!(" {:?}", self.other_statuses)
        };
        format!(
            "other: {}{detail}  transport errors: {}",
            self.other, self.transport_errors
        )
    }

    /// Adds another client's (or worker's) counts to these.
    pub(crate) fn merge(&mut self, o: &Self) {
        self.ok += o.ok;
        self.conflict += o.conflict;
        self.precondition_failed += o.precondition_failed;
        self.locked += o.locked;
        self.unavailable += o.unavailable;
        self.other += o.other;
        for (status, n) in &o.other_statuses {
            *self.other_statuses.entry(*status).or_default() += n;
        }
        self.transport_errors += o.transport_errors;
        self.unknown_outcomes += o.unknown_outcomes;
    }

    /// Every increment issued.
    pub fn total(&self) -> u64 {
        self.ok
            + self.conflict
            + self.precondition_failed
            + self.locked
            + self.unavailable
            + self.other
            + self.transport_errors
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// The arithmetic mean; 0 when nothing was recorded, like every field.
    pub mean: f64,
    /// The median: half the requests took at most this long.
    pub p50: f64,
    /// 90 % of the requests took at most this long.
    pub p90: f64,
    /// 99 % of the requests took at most this long.
    pub p99: f64,
    /// 99.9 % of the requests took at most this long.
    pub p99_9: f64,
    /// The slowest request.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// Overall verdict of the verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Every check held: the database agrees exactly with the acknowledged requests.
    Pass,
    /// A check failed (an update was lost or invented, or rowlock answered 500): the exit code
    /// is 1.
    Fail,
    /// The sums differ by no more than the increments whose outcome is unknown.
    Inconclusive,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Inconclusive => "INCONCLUSIVE",
        })
    }
}

/// A report's `requests` line: how many were sent and how long the run took.
pub(crate) fn write_requests(f: &mut fmt::Formatter<'_>, requests: u64, secs: f64) -> fmt::Result {
    writeln!(f, "requests    {requests} in {secs:.2}s")
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            self.p50, self.p90, self.p99, self.p99_9, self.max
        )
    }
}
