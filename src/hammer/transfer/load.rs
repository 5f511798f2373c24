//! The transaction workloads' load: one task per virtual client, each sending random transfers or
//! orders to `POST /transactions` until the budget is spent or the deadline passes, and keeping
//! per counter what the acknowledged transactions added and what the unknown ones may have.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde::Deserialize;

use crate::hammer::args::WorkloadKind;
use crate::hammer::client::Bases;
use crate::hammer::load::{run_clients, Budget, Tickets};
use crate::hammer::report::StatusCounts;
use crate::hammer::{HammerArgs, LockArg};

/// The HTTP client of a run and its prebuilt URLs.
pub(crate) struct Client {
    pub http: reqwest::Client,
    /// The instances, taken in turn by the reads.
    pub bases: Bases,
    /// The transactions URL on each instance; worker `i` uses `tx_urls[i % n]`.
    tx_urls: Vec<reqwest::Url>,
}

impl Client {
    /// The transactions URLs for `args`, on `http`.
    pub(crate) fn new(args: &HammerArgs, http: reqwest::Client) -> Result<Self> {
        let bases = args.bases();
        let mut query = format!("?lock={}", args.lock.query_value().unwrap_or("wait"));
        if let (Some(ms), LockArg::Wait) = (args.lock_timeout_ms, args.lock) {
            query.push_str(&format!("&lock_timeout_ms={ms}"));
        }
        let tx_urls = bases
            .all()
            .iter()
            .map(|base| reqwest::Url::parse(&format!("{base}/transactions{query}")))
            .collect::<Result<_, _>>()
            .context("cannot build the transactions URL")?;
        Ok(Self {
            http,
            bases,
            tx_urls,
        })
    }
}

/// What each transaction looks like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub workload: WorkloadKind,
    /// Accounts or items.
    pub counters: usize,
    /// Order lines (transfers always have two ops).
    pub lines: usize,
    pub max_amount: i64,
}

impl Plan {
    /// A random transaction: (counter index, by) per op.
    fn draw(&self, rng: &mut StdRng) -> Vec<(usize, i64)> {
        let amount = |rng: &mut StdRng| rng.gen_range(1..=self.max_amount);
        if self.workload == WorkloadKind::Order {
            rand::seq::index::sample(rng, self.counters, self.lines)
                .into_iter()
                .map(|i| (i, -amount(rng)))
                .collect()
        } else {
            let from = rng.gen_range(0..self.counters);
            // Any other account: an offset of 1 … K-1 never lands on `from`.
            let to = (from + rng.gen_range(1..self.counters)) % self.counters;
            let a = amount(rng);
            vec![(from, -a), (to, a)]
        }
    }
}

/// What the load produced, before verification.
pub(crate) struct RunOutput {
    pub elapsed: Duration,
    pub statuses: StatusCounts,
    pub refusals: u64,
    pub latency: Histogram<u64>,
    /// Per counter: the sum of `by` over acknowledged transactions.
    pub acknowledged: Vec<i64>,
    /// Per counter: the most the unknown-outcome transactions may have taken / added.
    pub unknown_low: Vec<i64>,
    pub unknown_high: Vec<i64>,
    /// 200 answers whose results contradict the request or a bound.
    pub inconsistent: u64,
    pub inconsistent_example: Option<String>,
}

impl RunOutput {
    pub(crate) fn empty(counters: usize) -> Result<Self> {
        Ok(Self {
            elapsed: Duration::ZERO,
            statuses: StatusCounts::default(),
            refusals: 0,
            latency: Histogram::new(3)?,
            acknowledged: vec![0; counters],
            unknown_low: vec![0; counters],
            unknown_high: vec![0; counters],
            inconsistent: 0,
            inconsistent_example: None,
        })
    }

    fn merge(&mut self, o: &Self) -> Result<()> {
        self.statuses.merge(&o.statuses);
        self.refusals += o.refusals;
        self.latency.add(&o.latency)?;
        for i in 0..self.acknowledged.len() {
            self.acknowledged[i] += o.acknowledged[i];
            self.unknown_low[i] += o.unknown_low[i];
            self.unknown_high[i] += o.unknown_high[i];
        }
        self.inconsistent += o.inconsistent;
        if self.inconsistent_example.is_none() {
            self.inconsistent_example
                .clone_from(&o.inconsistent_example);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Committed {
    results: Vec<OpResult>,
}

#[derive(Deserialize)]
struct OpResult {
    counter: String,
    applied: bool,
    value: Option<i64>,
    previous: Option<i64>,
}

#[derive(Deserialize)]
struct ProblemCode {
    code: Option<String>,
}

/// Runs the load with `concurrency` clients until `stop`; `names` are the plan's counters.
pub(crate) async fn run(
    client: &Client,
    plan: Plan,
    names: &[String],
    concurrency: usize,
    budget: Budget,
) -> Result<RunOutput> {
    let Budget { stop, progress } = budget;
    let names = Arc::new(names.to_vec());
    let tickets = Arc::new(Tickets::new(stop));
    let started = Instant::now();
    let outs = run_clients(concurrency, |i| {
        let url = client.tx_urls[i % client.tx_urls.len()].clone();
        let http = client.http.clone();
        let (names, tickets, progress) = (names.clone(), tickets.clone(), progress.clone());
        async move {
            let mut out = RunOutput::empty(plan.counters)?;
            let mut rng = StdRng::from_entropy();
            while tickets.next() {
                let ops = plan.draw(&mut rng);
                let began = Instant::now();
                let answer = send(&http, &url, &names, &ops).await;
                let micros = began.elapsed().as_micros().max(1) as u64;
                let _ = out.latency.record(micros);
                progress.record(record(&mut out, &names, &ops, answer));
            }
            anyhow::Ok(out)
        }
    })
    .await?;
    let mut all = RunOutput::empty(plan.counters)?;
    for out in &outs {
        all.merge(out)?;
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

/// One answer: its status and whole body (read so that the connection can be reused), or `None`
/// when no answer came.
type Answer = Option<(u16, Vec<u8>)>;

async fn send(
    http: &reqwest::Client,
    url: &reqwest::Url,
    names: &[String],
    ops: &[(usize, i64)],
) -> Answer {
    let ops_json: Vec<String> = ops
        .iter()
        .map(|(i, by)| format!("{{\"counter\":\"{}\",\"by\":{by}}}", names[*i]))
        .collect();
    let body = format!("{{\"atomic\":true,\"ops\":[{}]}}", ops_json.join(","));
    let response = http
        .post(url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.bytes().await.ok()?;
    Some((status, body.to_vec()))
}

/// Accounts for one answer; true when it was acknowledged.
fn record(out: &mut RunOutput, names: &[String], ops: &[(usize, i64)], answer: Answer) -> bool {
    let Some((status, body)) = answer else {
        out.statuses.record(None);
        unknown(out, ops);
        return false;
    };
    out.statuses.record(Some(status));
    match status {
        200 => {
            for (i, by) in ops {
                out.acknowledged[*i] += by;
            }
            if let Err(why) = consistent(names, ops, &body) {
                out.inconsistent += 1;
                let _ = out.inconsistent_example.get_or_insert(why);
            }
            return true;
        }
        409 => {
            let problem = serde_json::from_slice::<ProblemCode>(&body).ok();
            if problem.and_then(|p| p.code).as_deref() == Some("bound_violation") {
                out.refusals += 1;
            }
        }
        // 503 is rowlock's "nothing was done"; any other 5xx may or may not have committed.
        s if s >= 500 && s != 503 => unknown(out, ops),
        _ => {}
    }
    false
}

fn unknown(out: &mut RunOutput, ops: &[(usize, i64)]) {
    out.statuses.unknown_outcomes += 1;
    for (i, by) in ops {
        if *by < 0 {
            out.unknown_low[*i] += by;
        } else {
            out.unknown_high[*i] += by;
        }
    }
}

/// A 200's results must name the request's counters in order, all applied, each value its
/// previous plus `by`, none below the `min: 0` bound.
fn consistent(names: &[String], ops: &[(usize, i64)], body: &[u8]) -> Result<(), String> {
    let committed: Committed = serde_json::from_slice(body)
        .map_err(|e| format!("a 200 whose body is not a committed transaction: {e}"))?;
    if committed.results.len() != ops.len() {
        return Err(format!(
            "{} ops answered with {} results",
            ops.len(),
            committed.results.len()
        ));
    }
    for ((i, by), r) in ops.iter().zip(&committed.results) {
        let name = &names[*i];
        let arithmetic = matches!((r.previous, r.value),
            (Some(p), Some(v)) if p.checked_add(*by) == Some(v) && v >= 0);
        if r.counter != *name || !r.applied || !arithmetic {
            return Err(format!(
                "op {{{name} by {by}}} answered {{{} applied {} previous {:?} value {:?}}}",
                r.counter, r.applied, r.previous, r.value
            ));
        }
    }
    Ok(())
}
