//! `rowlock hammer --workload counters` (the default): concurrent increments of one hot counter
//! or `--spread K` counters, verified.
//!
//! It reads every counter it may touch (creating the missing ones), hammers them with concurrent
//! increments, waits for every answer, reads the counters again and checks that their total
//! change equals the increments the server acknowledged — and, with `--check-linearizable`, that
//! the values a hot counter returned form a linearizable history.
//!
//! [`load`]: the virtual clients; [`verify`] and [`linearizable`]: the two checks; [`report`]
//! and [`chart`]: the outputs.

pub(crate) mod chart;
pub mod linearizable;
pub(crate) mod load;
pub mod report;
pub mod verify;

use std::sync::Arc;

use anyhow::{Context, Result};

use super::client::Api;
use super::load::Budget;
use super::report::Percentiles;
use super::workload::{self, Workload};
use super::{HammerArgs, Verdict};
use report::{Config, Report, TimelinePoint, Verification};

/// The counters of a run and their values before it.
pub struct Counters {
    names: Vec<String>,
    api: Arc<Api>,
    before: Vec<i64>,
}

impl Workload for Counters {
    type Output = load::RunOutput;
    type Report = Report;

    async fn prepare(args: &HammerArgs, http: &reqwest::Client) -> Result<Self> {
        let names = args.counter_names();
        let api = Arc::new(Api::new(args, http.clone(), &names)?);
        let before = verify::read_or_create_all(&api, &names)
            .await
            .context("cannot read the counters before the run")?;
        Ok(Self { names, api, before })
    }

    async fn load(&self, args: &HammerArgs, budget: Budget) -> Result<load::RunOutput> {
        load::run(args, self.api.clone(), budget).await
    }

    async fn verify(self, args: &HammerArgs, out: load::RunOutput) -> Result<Report> {
        let after = verify::read_all(&self.api, &self.names)
            .await
            .context("cannot read the counters after the run")?;
        let acknowledged = out.statuses.ok;
        let sum = verify::sum_check(
            &self.before,
            &after,
            acknowledged,
            args.by,
            out.statuses.unknown_outcomes,
        );
        let linearizability = args
            .check_linearizable
            .then(|| linearizable::check(&out.history, args.by.signum()));
        let elapsed_secs = out.elapsed.as_secs_f64();
        Ok(Report {
            config: Config::from(args),
            elapsed_secs,
            requests: out.statuses.total(),
            acknowledged,
            optimistic_retries: out.optimistic_retries,
            throughput: acknowledged as f64 / elapsed_secs.max(1e-9),
            latency_ms: Percentiles::of(&out.latency),
            verification: Verification::new(
                sum,
                linearizability,
                out.statuses.other_statuses.get(&500).copied().unwrap_or(0),
            ),
            timeline: TimelinePoint::of(&out.timeline),
            statuses: out.statuses,
        })
    }
}

impl workload::Report for Report {
    fn verdict(&self) -> Verdict {
        self.verification.verdict
    }

    fn chart(&self, args: &HammerArgs) -> Option<String> {
        let title = format!(
            "rowlock hammer: {} clients, lock={}, {}",
            args.concurrency,
            args.lock.query_value().unwrap_or("optimistic"),
            if args.spread > 1 {
                format!("{} counters", args.spread)
            } else {
                format!("counter '{}'", args.counter)
            }
        );
        Some(chart::svg(&title, &self.timeline))
    }
}
