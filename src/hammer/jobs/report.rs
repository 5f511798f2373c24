//! What a job run measured and concluded: printed, written as `--json`, judged by its verdict.

use serde::{Deserialize, Serialize};

use crate::hammer::report::Percentiles;
use crate::hammer::{workload, Verdict};

/// What a job run measured and concluded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsReport {
    /// The queue loaded (`--queue`, or the fresh `hammer-<random>` one).
    pub queue: String,
    /// Workers claiming at once (`--workers`).
    pub workers: u32,
    /// Jobs enqueued, each of which must be completed exactly once (`--jobs`).
    pub jobs: u64,
    /// Jobs one claim could take (`--claim-limit`).
    pub claim_limit: u32,
    /// Share of claimed jobs the workers abandoned on purpose (`--crash-rate`).
    pub crash_rate: f64,
    /// From the workers' start to the last completion answered 200.
    pub elapsed_secs: f64,
    /// Claim requests sent, empty and failed ones included.
    pub claim_requests: u64,
    /// Claims that returned at least one job, per second of `elapsed_secs`.
    pub claims_per_sec: f64,
    /// Completions answered 200, per second of `elapsed_secs`.
    pub jobs_per_sec: f64,
    /// Jobs handed out by claims, a job claimed again after a lost lease counting again.
    pub jobs_claimed: u64,
    /// Claimed jobs a worker dropped without heartbeat or completion (`--crash-rate`).
    pub abandoned: u64,
    /// Claimed jobs on their second attempt or later: taken again after their lease ran out.
    pub reclaimed: u64,
    /// Completions answered 409 `stale_token`: the work outlived its lease.
    pub stale_completions: u64,
    /// Claims that failed or whose answer did not parse, and completions answered neither 200
    /// nor 409, or not at all.
    pub errors: u64,
    /// Latency of the claims that returned jobs (long-polls that came back empty excluded).
    pub claim_latency_ms: Percentiles,
    /// From a job's enqueueing to the 200 of its completion.
    pub end_to_end_ms: Percentiles,
    /// Ids of the jobs completed with a 200 more than once; must be empty.
    pub completed_twice: Vec<i64>,
    /// Ids of the jobs enqueued but never completed with a 200; must be empty.
    pub lost: Vec<i64>,
    /// The server's counts for the queue after the run.
    pub server_counts: serde_json::Value,
    /// PASS when every job was completed exactly once and the server counts them all
    /// `completed` (none `queued`, `running` or `dead`).
    pub verdict: Verdict,
}

impl std::fmt::Display for JobsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "rowlock hammer — jobs on queue '{}'", self.queue)?;
        writeln!(
            f,
            "  {} workers, {} jobs, claim limit {}, crash rate {}",
            self.workers, self.jobs, self.claim_limit, self.crash_rate
        )?;
        writeln!(
            f,
            "  {:.2} s: {:.0} jobs/s, {:.0} claims/s ({} claim requests)",
            self.elapsed_secs, self.jobs_per_sec, self.claims_per_sec, self.claim_requests
        )?;
        writeln!(
            f,
            "  claimed {}, abandoned {}, reclaimed after a lost lease {}, stale completions {}, errors {}",
            self.jobs_claimed, self.abandoned, self.reclaimed, self.stale_completions, self.errors
        )?;
        writeln!(f, "  claim latency ms: {}", self.claim_latency_ms)?;
        writeln!(f, "  end-to-end ms:    {}", self.end_to_end_ms)?;
        writeln!(f, "  server counts: {}", self.server_counts)?;
        write!(
            f,
            "  exactly once: {} completed twice, {} lost → {}",
            self.completed_twice.len(),
            self.lost.len(),
            self.verdict
        )
    }
}

impl workload::Report for JobsReport {
    fn verdict(&self) -> Verdict {
        self.verdict
    }
}
